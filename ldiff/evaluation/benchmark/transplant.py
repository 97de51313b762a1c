"""Test cases with known truth inside real scans: lesion shapes moved into normal-appearing WM.

No real patient has a lesion-free twin. A transplanted case is the real scan with lesion shapes
(its own, or another dataset's) placed in its normal-appearing white matter and painted with the
scan's own lesion appearance; the truth under each painted lesion is the real tissue that was there.

1. **Where.** :func:`allowed_region`: WM of a three-class split of the T1-weighted channel, at least
   ``tissue_margin_mm`` from CSF and cortex and ``lesion_margin_mm`` from every real lesion. Shapes
   are placed whole inside it (never clipped), each at least ``separation_mm`` from the others.
2. **Appearance.** :func:`measure_appearance`, per channel from the real lesions: the ratio of each
   lesion voxel to the median of its lesion's NAWM ring (:mod:`lesion_context`), kept as quantiles;
   and the partial-volume rim: how far outside the drawn border the intensity still deviates, as a
   weight in [0, 1] per millimetre of distance (real lesion signal reaches beyond the mask, which
   is why fillers dilate; a benchmark without that rim favours fillers that trust the mask edge).
3. **Painting.** :func:`paint_lesions`: a smooth random severity field u in (0, 1) (white noise
   smoothed over ``smoothness_mm`` and rank-transformed) is mapped through each channel's ratio
   quantiles (u -> darker on a hypointense channel, brighter on a hyperintense one, so channels agree
   on which voxels are most abnormal), multiplied by the ring median of the placed lesion, and
   blended with the true tissue by the rim weight: ``(1 - w) * truth + w * ratio * level``, w = 1
   inside the shape.

Scoring happens inside the shape (dilated as the fillers dilate it); the painted rim lies outside
the drawn shape, as it does around real lesions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import ndimage

from ldiff.evaluation.benchmark.lesion_context import (MIN_RING_VOXELS, RING_MM, distance_from, lesion_rings,
                                                        normal_appearing_wm, tissue_classes)
from ldiff.masks.components import lesion_components
from ldiff.masks.geometry import Spacing, bounding_box, padded_box, spacing_for_array
from ldiff.masks.placement import deepest_voxel

QUANTILES = np.linspace(0.0, 1.0, 101)
RIM_BINS_MM = (1.0, 2.0, 3.0)  # outer edges of the rim shells; beyond the last the weight is 0
MIN_WM_SHARE = 0.8  # lesions whose surroundings beyond the rim are at least this much NAWM give the rim


@dataclass(frozen=True)
class TransplantSettings:
    """How transplanted cases are made (defaults are the documented benchmark settings)."""

    count: int = 20               # lesions placed per case (fewer when no more fit)
    min_voxels: int = 10          # smaller shapes are noise-level and not used
    tissue_margin_mm: float = 3.0
    lesion_margin_mm: float = 5.0
    separation_mm: float = 4.0
    smoothness_mm: float = 1.5
    tries_per_shape: int = 200


@dataclass(frozen=True)
class ChannelAppearance:
    """The lesion appearance of one channel: ratio quantiles (101 values, ratio = voxel / ring median)
    and the rim weight at the outer edge distances of :data:`RIM_BINS_MM` (non-increasing, in [0, 1])."""

    ratio_quantiles: np.ndarray
    rim_weight: np.ndarray

    @property
    def hypointense(self) -> bool:
        return float(self.ratio_quantiles[50]) < 1.0

    def to_dict(self) -> dict:
        return {"ratio_median": float(self.ratio_quantiles[50]), "ratio_p10": float(self.ratio_quantiles[10]),
                "ratio_p90": float(self.ratio_quantiles[90]), "rim_weight_at_mm": dict(zip(
                    [f"{edge:g}" for edge in RIM_BINS_MM], [round(float(w), 4) for w in self.rim_weight]))}


def measure_appearance(channel: np.ndarray, lesion: np.ndarray, nawm: np.ndarray, classes: np.ndarray,
                       spacing: Spacing | None) -> ChannelAppearance | None:
    """The appearance of the real lesions of ``lesion`` in ``channel`` (see the module docstring).

    ``nawm``: where the reference rings may lie; ``classes``: the three-class split
    (:func:`~ldiff.evaluation.benchmark.lesion_context.tissue_classes`). The rim is measured on GM or
    WM voxels (the rim of a T1 lesion is dark enough that the split often calls it GM, so NAWM alone
    would miss it; CSF is left out so that ventricles do not pose as a rim), and only around lesions
    whose surroundings beyond the rim are mostly NAWM (:data:`MIN_WM_SHARE` of the brain voxels 3-5 mm
    out): next to cortex or deep grey matter, the darker grey matter would pose as a wide rim. When no
    lesion qualifies, all are used. None when no lesion has a usable ring (none inside WM).
    """
    channel = np.asarray(channel, dtype=np.float64)
    lesion, classes = np.asarray(lesion, dtype=bool), np.asarray(classes)
    ratios = []
    rim = {True: [np.zeros(len(RIM_BINS_MM)), np.zeros(len(RIM_BINS_MM))],
           False: [np.zeros(len(RIM_BINS_MM)), np.zeros(len(RIM_BINS_MM))]}
    inner_sum = inner_count = 0.0
    edges = np.concatenate([[0.0], RIM_BINS_MM])
    for found in lesion_rings(lesion, nawm, spacing):
        values = channel[found.box]
        ring = values[found.ring]
        if ring.size < MIN_RING_VOXELS or np.median(ring) <= 0:
            continue
        relative = values / float(np.median(ring))
        ratios.append(relative[found.inside])
        inner_sum, inner_count = inner_sum + relative[found.inside].sum(), inner_count + found.inside.sum()
        outside = distance_from(found.inside, spacing)  # a face neighbour is one voxel spacing away
        crop_classes = classes[found.box]
        beyond = (outside > RIM_BINS_MM[-1]) & (outside <= RING_MM[1]) & (crop_classes > 0)
        in_wm = bool(beyond.any()) and float(nawm[found.box][beyond].mean()) >= MIN_WM_SHARE
        usable = (crop_classes >= 2) & ~lesion[found.box]
        sums, counts = rim[in_wm]
        for index in range(len(RIM_BINS_MM)):
            shell = usable & (outside > edges[index]) & (outside <= edges[index + 1])
            sums[index] += relative[shell].sum()
            counts[index] += shell.sum()
    rim_sums, rim_counts = rim[True] if rim[True][1].sum() > 0 else (rim[True][0] + rim[False][0],
                                                                      rim[True][1] + rim[False][1])
    if not ratios:
        return None
    all_ratios = np.concatenate(ratios)
    inner = inner_sum / inner_count
    with np.errstate(invalid="ignore", divide="ignore"):
        rim_mean = np.where(rim_counts > 0, rim_sums / np.maximum(rim_counts, 1), 1.0)
        weight = (rim_mean - 1.0) / (inner - 1.0) if abs(inner - 1.0) > 1e-6 else np.zeros_like(rim_mean)
    weight = np.minimum.accumulate(np.clip(np.nan_to_num(weight), 0.0, 1.0))
    return ChannelAppearance(np.quantile(all_ratios, QUANTILES), weight)


def allowed_region(classes: np.ndarray, lesion: np.ndarray, spacing: Spacing | None,
                   settings: TransplantSettings) -> np.ndarray:
    """Where transplanted shapes may lie: NAWM away from CSF, cortex and the real lesions."""
    return normal_appearing_wm(classes, lesion, spacing, settings.lesion_margin_mm, settings.tissue_margin_mm)


def shapes_of(mask: np.ndarray, spacing: Spacing | None, min_voxels: int) -> list[np.ndarray]:
    """The 26-connected lesions of ``mask`` with at least ``min_voxels`` voxels, as bool crops."""
    return [component.mask for component in lesion_components(mask, spacing, min_voxels=min_voxels)]


def place_shapes(shapes: Sequence[np.ndarray], allowed: np.ndarray, spacing: Spacing | None,
                 rng: np.random.Generator, settings: TransplantSettings) -> np.ndarray:
    """Place up to ``settings.count`` shapes whole inside ``allowed``, apart from each other.

    Shapes are tried in a random order; each anchors its deepest voxel on a random allowed voxel and
    is accepted when every voxel lies in ``allowed`` and is at least ``separation_mm`` from the
    shapes placed before. Returns int32 labels (0 = none, k = k-th placed shape).
    """
    labels = np.zeros(allowed.shape, np.int32)
    free = np.asarray(allowed, dtype=bool).copy()
    candidates = np.flatnonzero(free)
    axis_spacing = spacing_for_array(spacing, allowed.ndim)
    reach = [int(np.ceil(settings.separation_mm / s)) for s in axis_spacing]
    placed = 0
    for order in rng.permutation(len(shapes)):
        if placed >= settings.count or candidates.size == 0:
            break
        shape = shapes[order]
        anchor = deepest_voxel(shape)
        for _ in range(settings.tries_per_shape):
            centre = np.unravel_index(int(candidates[rng.integers(candidates.size)]), allowed.shape)
            start = [int(c) - a for c, a in zip(centre, anchor)]
            if any(s < 0 or s + n > limit for s, n, limit in zip(start, shape.shape, allowed.shape)):
                continue
            box = tuple(slice(s, s + n) for s, n in zip(start, shape.shape))
            if not np.all(free[box][shape]):
                continue
            placed += 1
            labels[box][shape] = placed
            # Block the shape and a separation margin around it for the next shapes.
            grown_box = padded_box(box, reach, allowed.shape)
            grown = np.zeros(tuple(s.stop - s.start for s in grown_box), bool)
            grown[tuple(slice(b.start - g.start, b.stop - g.start) for b, g in zip(box, grown_box))] = shape
            near = ndimage.distance_transform_edt(~grown, sampling=axis_spacing) <= settings.separation_mm
            free[grown_box] &= ~near
            candidates = candidates[free.ravel()[candidates]]
            break
    return labels


def severity_field(region: np.ndarray, spacing: Spacing | None, smoothness_mm: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Smooth random values in (0, 1) on ``region`` (uniform ranks of smoothed white noise), 0 elsewhere."""
    sigma = [smoothness_mm / s for s in spacing_for_array(spacing, region.ndim)]
    noise = ndimage.gaussian_filter(rng.standard_normal(region.shape), sigma)
    values = noise[region]
    ranks = np.empty(values.size)
    ranks[np.argsort(values, kind="stable")] = np.arange(values.size)
    field = np.zeros(region.shape)
    field[region] = (ranks + 0.5) / max(values.size, 1)
    return field


def paint_lesions(images: np.ndarray, labels: np.ndarray, appearances: Sequence[ChannelAppearance],
                  nawm: np.ndarray, spacing: Spacing | None, smoothness_mm: float,
                  rng: np.random.Generator) -> np.ndarray:
    """``images`` (C, Z, Y, X) with the shapes of ``labels`` painted in (module docstring, step 3)."""
    painted = np.asarray(images, dtype=np.float64).copy()
    shapes = labels > 0
    box = bounding_box(shapes)
    if box is None:
        return painted
    axis_spacing = spacing_for_array(spacing, shapes.ndim)
    box = padded_box(box, [int(np.ceil(RIM_BINS_MM[-1] / s)) + 1 for s in axis_spacing], shapes.shape)
    inside = shapes[box]
    outside_distance = distance_from(inside, spacing)
    nearest = ndimage.distance_transform_edt(~inside, return_distances=False, return_indices=True)
    owner = labels[box][tuple(nearest)]  # each rim voxel belongs to its nearest shape
    reach = inside | (outside_distance <= RIM_BINS_MM[-1])
    severity = severity_field(reach, spacing, smoothness_mm, rng)
    levels = _ring_levels(images, labels, nawm, spacing)
    for channel, appearance in enumerate(appearances):
        weight = np.where(inside, 1.0, np.interp(outside_distance, RIM_BINS_MM, appearance.rim_weight, right=0.0))
        weight[~reach] = 0.0
        u = 1.0 - severity if appearance.hypointense else severity
        ratio = np.interp(u, QUANTILES, appearance.ratio_quantiles)
        level = levels[channel][owner]
        crop = painted[channel][box]
        crop[reach] = ((1.0 - weight) * crop + weight * ratio * level)[reach]
    return painted


def _ring_levels(images: np.ndarray, labels: np.ndarray, nawm: np.ndarray, spacing: Spacing | None) -> np.ndarray:
    """(C, K + 1): median of each placed shape's NAWM ring per channel (index 0 unused)."""
    count = int(labels.max())
    levels = np.zeros((images.shape[0], count + 1))
    for found in lesion_rings(labels > 0, nawm, spacing):
        label = int(np.max(labels[found.box][found.inside]))
        for channel in range(images.shape[0]):
            ring = images[channel][found.box][found.ring]
            levels[channel, label] = np.median(ring) if ring.size else np.median(images[channel][found.box][found.inside])
    return levels


@dataclass(frozen=True, eq=False)
class TransplantedCase:
    """A scan with transplanted lesions.

    ``images``: (C, Z, Y, X) float64, the painted scan (the fillers' input); ``truth``: the real scan
    (what was there); ``mask``: bool (Z, Y, X), the placed shapes (what a rater would draw);
    ``appearances``: per channel, measured on the real lesions; ``placed`` / ``available``: shapes.
    """

    images: np.ndarray
    truth: np.ndarray
    mask: np.ndarray
    appearances: tuple[ChannelAppearance, ...]
    placed: int
    available: int
    info: dict = field(default_factory=dict)


def make_transplanted_case(images: np.ndarray, lesion: np.ndarray, spacing: Spacing, rng: np.random.Generator,
                           t1_channel: int = 0, shapes: Sequence[np.ndarray] | None = None,
                           settings: TransplantSettings = TransplantSettings()) -> TransplantedCase:
    """Move lesion shapes into ``images``' NAWM and paint them (module docstring).

    Args:
        images: (C, Z, Y, X) real scan, any units; ``lesion``: bool (Z, Y, X), its real lesions.
        spacing: (x, y, z) mm. ``rng``: every random choice. ``t1_channel``: the channel whose
            three-class split gives WM (WM brightest). ``shapes``: bool crops to place (default: the
            scan's own lesions of at least ``settings.min_voxels`` voxels).

    Raises:
        ValueError: no shapes, no real lesion to measure the appearance from, or no room in WM.
    """
    images = np.asarray(images, dtype=np.float64)
    lesion = np.asarray(lesion, dtype=bool)
    if shapes is None:
        shapes = shapes_of(lesion, spacing, settings.min_voxels)
    if not shapes:
        raise ValueError(f"no lesion shape of at least {settings.min_voxels} voxels to move (give other shapes)")
    classes = tissue_classes(images[t1_channel], lesion)
    nawm_for_rings = normal_appearing_wm(classes, lesion, spacing)
    appearances = []
    for channel in range(images.shape[0]):
        appearance = measure_appearance(images[channel], lesion, nawm_for_rings, classes, spacing)
        if appearance is None:
            raise ValueError("no real lesion with normal-appearing white matter around it to measure the lesion "
                             "appearance from")
        appearances.append(appearance)
    allowed = allowed_region(classes, lesion, spacing, settings)
    labels = place_shapes(shapes, allowed, spacing, rng, settings)
    if not labels.any():
        raise ValueError("no lesion shape fits in the normal-appearing white matter (no room in WM)")
    nawm_outside = nawm_for_rings & (labels == 0)
    painted = paint_lesions(images, labels, appearances, nawm_outside, spacing, settings.smoothness_mm, rng)
    info = {"wm_voxels_allowed": int(allowed.sum()), "real_lesion_voxels": int(lesion.sum()),
            "placed_voxels": int((labels > 0).sum())}
    return TransplantedCase(painted, images, labels > 0, tuple(appearances), int(labels.max()), len(shapes), info)

