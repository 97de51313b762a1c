"""The tissue around lesions: normal-appearing white matter (NAWM), rings and the lesions' contrast.

A real scan has no lesion-free twin, so the benchmark judges lesions against the NAWM around them:

* :func:`tissue_classes`: a three-class intensity split (k-means) of a T1-weighted channel inside
  the brain, lesions left out of the clustering (0 = background, 1 = darkest (CSF), 2 = GM, 3 = WM).
* :func:`~ldiff.masks.rings.lesion_rings`: every 26-connected lesion with the NAWM voxels between ``inner_mm`` and
  ``outer_mm`` of it (other lesions and their own surroundings excluded).
* :func:`residual_contrast`: mean intensity inside each lesion against the median of its ring, in %
  of that median: about 0 for a perfect fill, the lesion contrast for the unfilled scan.
* :func:`per_lesion_contrast`: the same for each lesion on its own, with where it lies and how much of
  the tissue right beside it is not white matter (a lesion against grey matter or a ventricle need not
  be filled with the white matter's level, and the volume-weighted summary cannot say which it is).

The ring starts 2 mm out by default: the first millimetres outside a drawn lesion still carry
partial-volume lesion signal, which would pull the reference towards the lesion.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from ldiff.masks.geometry import Spacing, spacing_for_array
from ldiff.masks.rings import (MIN_RING_VOXELS, RING_MM, LesionRing, lesion_rings, ring_contrasts,  # noqa: F401
                               usable_rings)  # (re-exported)
from ldiff.preprocessing.brain_masks import assign_to_centres, derive_brain_mask, kmeans_1d

WM_CLASS = 3


def tissue_centres(t1: np.ndarray, lesion: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Sorted k-means centres (CSF, GM, WM) of ``t1`` in the brain, lesions left out of the clustering
    (dark T1 lesions would pull the classes)."""
    sample = np.asarray(brain, dtype=bool) & ~np.asarray(lesion, dtype=bool)
    if np.count_nonzero(sample) < 3:
        raise ValueError("the brain holds too few voxels outside the lesions for a three-class split")
    return kmeans_1d(np.asarray(t1, dtype=np.float64)[sample], classes=3)


def tissue_classes(t1: np.ndarray, lesion: np.ndarray, brain: np.ndarray | None = None,
                   centres: np.ndarray | None = None) -> np.ndarray:
    """uint8 (Z, Y, X): 0 background, 1 CSF, 2 GM, 3 WM, each brain voxel by its nearest centre.

    Lesion voxels are classified like any voxel. ``brain`` defaults to :func:`derive_brain_mask` of
    ``t1``; ``centres`` to :func:`tissue_centres`.
    """
    t1 = np.asarray(t1, dtype=np.float64)
    lesion = np.asarray(lesion, dtype=bool)
    brain = derive_brain_mask(t1, lesion) if brain is None else np.asarray(brain, dtype=bool)
    centres = tissue_centres(t1, lesion, brain) if centres is None else centres
    classes = np.zeros(t1.shape, np.uint8)
    classes[brain] = assign_to_centres(t1[brain], centres).astype(np.uint8) + 1
    return classes


@dataclass(frozen=True)
class ContrastSummary:
    """Residual contrast of the lesions of one scan channel.

    ``per_lesion``: (voxels, contrast %) of every lesion with a usable ring; ``weighted_abs``: mean of
    |contrast| weighted by lesion volume (0 is ideal); ``weighted_signed``: the same without the
    absolute value (its sign says whether fills are too dark or too bright on average).
    """

    per_lesion: tuple[tuple[int, float], ...]
    weighted_abs: float
    weighted_signed: float


def residual_contrast(channel: np.ndarray, lesion: np.ndarray, nawm: np.ndarray, spacing: Spacing | None,
                      ring_mm: tuple[float, float] = RING_MM) -> ContrastSummary:
    """Contrast (%) of each lesion's mean intensity against the median of its NAWM ring.

    ``channel``: (Z, Y, X) intensities of a filled (or unfilled) scan; ``lesion``: the filled region;
    ``nawm``: where rings may lie. Lesions whose ring holds fewer than :data:`MIN_RING_VOXELS` voxels
    or whose ring median is not positive are left out. NaN summaries when no lesion is usable.
    """
    rows = [(voxels, 100.0 * float(fraction[0]))
            for voxels, fraction in ring_contrasts(np.asarray(channel)[None], lesion, nawm, spacing, ring_mm)]
    return summarise_contrasts(rows)


def summarise_contrasts(rows: Sequence[tuple[int, float]]) -> ContrastSummary:
    """:class:`ContrastSummary` of ``(voxels, contrast %)`` per lesion."""
    if not rows:
        return ContrastSummary((), float("nan"), float("nan"))
    weights = np.array([voxels for voxels, _ in rows], dtype=np.float64)
    values = np.array([value for _, value in rows])
    return ContrastSummary(tuple(rows), float(np.average(np.abs(values), weights=weights)),
                           float(np.average(values, weights=weights)))


def per_lesion_contrast(channel: np.ndarray, lesion: np.ndarray, nawm: np.ndarray, classes: np.ndarray,
                        spacing: Spacing | None, ring_mm: tuple[float, float] = RING_MM) -> list[dict]:
    """One dict per lesion with a usable ring (as :func:`residual_contrast`; :func:`summarise_contrasts` of
    their ``(voxels, contrast_pct)`` is its summary): ``voxels``, ``centre_zyx`` (voxel indices of its centre
    of mass), ``contrast_pct`` (mean inside against the ring's median, %) and ``non_wm_beside_pct``: the
    share of brain voxels within ``ring_mm[0]`` outside the lesion that ``classes`` (:func:`tissue_classes`)
    does not call WM (other lesions count as WM).
    """
    channel = np.asarray(channel, dtype=np.float64)
    lesion = np.asarray(lesion, dtype=bool)
    axis_spacing = spacing_for_array(spacing, lesion.ndim)
    rows = []
    for found, levels in usable_rings(channel[None], lesion, nawm, spacing, ring_mm):
        level = float(levels[0])
        beside = ndimage.distance_transform_edt(~found.inside, sampling=axis_spacing) <= ring_mm[0]
        beside &= ~found.inside & (classes[found.box] > 0)
        tissue = np.where(lesion[found.box], WM_CLASS, classes[found.box])[beside]
        centre = [int(round(c + s.start)) for c, s in zip(ndimage.center_of_mass(found.inside), found.box)]
        rows.append({"voxels": int(np.count_nonzero(found.inside)), "centre_zyx": centre,
                     "contrast_pct": 100.0 * (float(channel[found.box][found.inside].mean()) - level) / level,
                     "non_wm_beside_pct": 100.0 * float(np.mean(tissue != WM_CLASS)) if tissue.size else float("nan")})
    return rows


def wm_fraction(t1: np.ndarray, filled_region: np.ndarray, centres: np.ndarray) -> float:
    """Fraction of ``filled_region`` voxels of ``t1`` nearest to the WM centre of ``centres`` (the unfilled
    scan's :func:`tissue_centres`, so every filler is judged by the same split)."""
    values = np.asarray(t1, dtype=np.float64)[np.asarray(filled_region, dtype=bool)]
    return float(np.mean(assign_to_centres(values, centres) == 2)) if values.size else float("nan")


def distance_from(mask: np.ndarray, spacing: Spacing | None) -> np.ndarray:
    """Distance (mm, float64) of every voxel to the nearest voxel of ``mask`` (0 on it; inf if empty)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.full(mask.shape, np.inf)
    return ndimage.distance_transform_edt(~mask, sampling=spacing_for_array(spacing, mask.ndim))


def normal_appearing_wm(classes: np.ndarray, lesion: np.ndarray, spacing: Sequence[float] | None,
                        lesion_margin_mm: float = 0.0, tissue_margin_mm: float = 0.0) -> np.ndarray:
    """WM voxels at least ``tissue_margin_mm`` from any non-WM tissue and ``lesion_margin_mm`` from lesions.

    ``classes`` from :func:`tissue_classes`; lesion voxels count as WM for the tissue margin (a lesion
    in WM is not cortex) but never as NAWM.
    """
    lesion = np.asarray(lesion, dtype=bool)
    wm_or_lesion = (classes == WM_CLASS) | lesion
    nawm = wm_or_lesion & ~lesion
    if tissue_margin_mm > 0:
        nawm &= distance_from(~wm_or_lesion, spacing) >= tissue_margin_mm
    if lesion_margin_mm > 0:
        nawm &= distance_from(lesion, spacing) >= lesion_margin_mm
    return nawm
