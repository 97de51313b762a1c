"""Each lesion with the ring of normal-appearing white matter (NAWM) around it, and its contrast to that ring.

A lesion's contrast is its mean intensity against the median of the NAWM between 2 and 5 mm out: the
first millimetres outside a drawn lesion still carry partial-volume lesion signal, which would pull
the reference towards the lesion. One definition serves the benchmark (the residual contrast of a
fill, :mod:`ldiff.evaluation.benchmark.lesion_context`), the synthesis realism score
(:mod:`ldiff.evaluation.synthesis_realism`), the training fingerprint's lesion contrast by lesion size
(:mod:`ldiff.planning.fingerprint`) and the contrast that synthesis is matched to
(:mod:`ldiff.inference.contrast_matching`), so that what is asked for is what is measured.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from scipy import ndimage

from ldiff.masks.components import label_components
from ldiff.masks.geometry import Spacing, padded_box, spacing_for_array

RING_MM = (2.0, 5.0)
# A ring with fewer NAWM voxels than this gives no reliable reference level; the lesion is skipped.
MIN_RING_VOXELS = 10


@dataclass(frozen=True)
class LesionRing:
    """One lesion seen through a crop: ``box`` (slices of the volume), ``inside`` and ``ring`` (bool crops)."""

    box: tuple[slice, ...]
    inside: np.ndarray
    ring: np.ndarray


def lesion_rings(lesion: np.ndarray, nawm: np.ndarray, spacing: Spacing | None,
                 ring_mm: tuple[float, float] = RING_MM, avoid: np.ndarray | None = None) -> Iterator[LesionRing]:
    """Each 26-connected lesion of ``lesion`` with its NAWM ring.

    ``nawm``: bool (Z, Y, X), the tissue a ring may use. ``avoid``: voxels never in a ring besides
    the lesions themselves (e.g. the real lesions of a scan whose transplanted lesions are ringed).
    Voxels within ``ring_mm[0]`` of any lesion are excluded, so a neighbour's rim is not NAWM either.
    """
    lesion = np.asarray(lesion, dtype=bool)
    axis_spacing = spacing_for_array(spacing, lesion.ndim)
    labels, count = label_components(lesion)
    boxes = ndimage.find_objects(labels)
    pad = [int(np.ceil(ring_mm[1] / s)) + 1 for s in axis_spacing]
    blocked = lesion if avoid is None else lesion | np.asarray(avoid, dtype=bool)
    for index, tight in enumerate(boxes, start=1):
        if tight is None:
            continue
        box = padded_box(tight, pad, lesion.shape)
        inside = labels[box] == index
        distance = ndimage.distance_transform_edt(~inside, sampling=axis_spacing)
        near_any = ndimage.distance_transform_edt(~blocked[box], sampling=axis_spacing) < ring_mm[0]
        ring = (distance >= ring_mm[0]) & (distance <= ring_mm[1]) & nawm[box] & ~near_any
        yield LesionRing(box, inside, ring)


def usable_rings(channels: np.ndarray, lesion: np.ndarray, nawm: np.ndarray, spacing: Spacing | None,
                 ring_mm: tuple[float, float] = RING_MM) -> Iterator[tuple[LesionRing, np.ndarray]]:
    """Each lesion of :func:`lesion_rings` whose ring gives a reference level, with that level: the ring's
    median per channel ((C,) float64). ``channels`` (C, Z, Y, X); a lesion is skipped when its ring holds
    fewer than :data:`MIN_RING_VOXELS` voxels or its median is not positive on every channel."""
    channels = np.asarray(channels, dtype=np.float64)
    for found in lesion_rings(lesion, nawm, spacing, ring_mm):
        if np.count_nonzero(found.ring) < MIN_RING_VOXELS:
            continue
        levels = np.median(channels[(slice(None),) + found.box][:, found.ring], axis=1)
        if np.all(levels > 0):
            yield found, levels


def ring_contrasts(channels: np.ndarray, lesion: np.ndarray, nawm: np.ndarray, spacing: Spacing | None,
                   ring_mm: tuple[float, float] = RING_MM) -> list[tuple[int, np.ndarray]]:
    """Per lesion, its voxel count and its contrast on every channel as a fraction of its ring's level.

    Args:
        channels: (C, Z, Y, X) intensities in a scan's own (positive) units.
        lesion: bool (Z, Y, X); nawm: bool (Z, Y, X), where rings may lie.

    Returns:
        ``(voxels, (mean inside - ring median) / ring median)`` with a (C,) float64 array, for every
        lesion of :func:`usable_rings` (-0.25 = 25 % darker than its ring).
    """
    channels = np.asarray(channels, dtype=np.float64)
    rows = []
    for found, levels in usable_rings(channels, lesion, nawm, spacing, ring_mm):
        inside = channels[(slice(None),) + found.box][:, found.inside]
        rows.append((int(np.count_nonzero(found.inside)), (inside.mean(axis=1) - levels) / levels))
    return rows
