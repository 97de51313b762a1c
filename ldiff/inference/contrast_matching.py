"""Lesion-contrast matching: synthetic lesions exactly as much darker or brighter than their surroundings
as asked.

A conditional synthesis model paints a lesion's shape, texture and partial-volume edge well, but its
level only roughly: the shipped model paints FLAIR lesions at about half the real contrast, and none
of the models follows a scan's own lesion contrast closely (documentation/results/synthesis_real_training/).
Lesion contrast is one number per channel that a user can state or measure (the scan's own lesions,
or the training data's), so prediction sets it explicitly after sampling, per channel and for the
whole case at once (each synthetic lesion keeps its contrast relative to the others):

1. **Scale** the model's change to the healthy input, ``painted - healthy``, by the factor that gives
   the asked contrast, within :data:`SCALE_LIMITS` (the change keeps its shape: a rim stays a rim,
   texture stays texture, the edge still fades into the dilated border).
2. **Shift** what the bounded scale leaves over (a model that painted almost nothing, or the wrong
   way): added with :func:`lesion_profile`, 1 inside the lesion mask and fading over the dilated
   border, so no step appears at the edge.

Contrast is measured as for a scan's own lesions (:func:`ldiff.inference.lesion_intensity.own_lesion_shell`):
the mean inside the lesion mask minus the median of the tissue 2-5 mm around it, here taken from the
healthy input (the shell lies outside the painted region, so output and input agree there).

By default (a training fingerprint with ``lesion_contrast_by_volume``) each synthetic lesion is matched
on its own (:func:`match_each_lesion`) to the training lesions' contrast for its volume, against the
white matter 2-5 mm around it: as the fingerprint measured the training lesions and as
:mod:`ldiff.evaluation.synthesis_realism` scores synthetic ones (:mod:`ldiff.masks.rings`). Real
lesions' contrast grows with their size (small ones about half as dark on T1w), which one contrast
for the whole case cannot give.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage

from ldiff.masks.components import label_components
from ldiff.masks.geometry import padded_box, spacing_for_array
from ldiff.masks.rings import MIN_RING_VOXELS, RING_MM

# Bounds of the factor applied to the model's change: beyond them the model's own pattern would be
# more noise than lesion (scaled up) or vanish (scaled down); the remainder is shifted instead.
SCALE_LIMITS = (0.25, 4.0)
# Width (voxels) over which the shifted part fades out across the dilated border of the mask.
PROFILE_SIGMA_VOXELS = 0.75


@dataclass(frozen=True)
class ContrastMatch:
    """What matching did, per channel (C,): the contrast the model painted, the contrast asked for and
    reached (mean in the lesion mask minus the surroundings' median, in the image's units), the factor
    applied to the model's change and the shift added on top of it."""

    painted: np.ndarray
    target: np.ndarray
    reached: np.ndarray
    scale: np.ndarray
    shift: np.ndarray

    def as_dict(self) -> dict[str, list[float]]:
        return {name: [round(float(v), 6) for v in getattr(self, name)]
                for name in ("painted", "target", "reached", "scale", "shift")}


def lesion_profile(lesions: np.ndarray, paint: np.ndarray, sigma: float = PROFILE_SIGMA_VOXELS) -> np.ndarray:
    """float32 (Z, Y, X): 1 on ``lesions``, a Gaussian fall-off (``sigma`` voxels) on the rest of
    ``paint``, 0 outside ``paint``."""
    smooth = ndimage.gaussian_filter(lesions.astype(np.float32), sigma)
    return np.where(lesions, 1.0, np.where(paint, smooth, 0.0)).astype(np.float32)


def match_lesion_contrast(healthy: np.ndarray, painted: np.ndarray, lesions: np.ndarray, paint: np.ndarray,
                          shell: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, ContrastMatch]:
    """``painted`` with its change to ``healthy`` rescaled (and shifted) so that each channel's lesion
    contrast is ``target`` (module docstring).

    Args:
        healthy: (C, Z, Y, X), the image the lesions were synthesised into.
        painted: (C, Z, Y, X), the model's output; equal to ``healthy`` outside ``paint``.
        lesions: bool (Z, Y, X), the lesion mask (inside ``paint``; not empty).
        paint: bool (Z, Y, X), the voxels the model painted (the mask dilated).
        shell: bool (Z, Y, X), the surrounding tissue the contrast is taken against (not empty).
        target: (C,), the contrast asked for, in the image's units (negative = darker).

    Returns:
        the adjusted image (C, Z, Y, X) float32, equal to ``painted`` (bit for bit) outside ``paint``,
        and a :class:`ContrastMatch`.
    """
    if not lesions.any() or not shell.any():
        raise ValueError("lesion contrast needs a non-empty lesion mask and surroundings")
    result = painted.astype(np.float32, copy=True)
    profile = lesion_profile(lesions, paint)
    painted_contrast, reached, scales, shifts = [], [], [], []
    for channel in range(healthy.shape[0]):
        surroundings = float(np.median(healthy[channel][shell]))
        change = painted[channel][paint].astype(np.float64) - healthy[channel][paint]
        base = float(healthy[channel][lesions].mean()) - surroundings  # the healthy tissue's own "contrast"
        mean_change = float((painted[channel][lesions] - healthy[channel][lesions]).mean())
        wanted = float(target[channel]) - base  # mean change inside the lesions that gives the target
        scale = 1.0
        if mean_change * wanted > 0:
            scale = float(np.clip(wanted / mean_change, *SCALE_LIMITS))
        shift = wanted - scale * mean_change
        values = healthy[channel][paint] + scale * change + shift * profile[paint]
        result[channel][paint] = values.astype(np.float32)
        painted_contrast.append(base + mean_change)
        reached.append(float(result[channel][lesions].mean()) - surroundings)
        scales.append(scale)
        shifts.append(shift)
    report = ContrastMatch(*(np.asarray(v, dtype=np.float64) for v in
                             (painted_contrast, np.asarray(target, dtype=np.float64), reached, scales, shifts)))
    return result, report


def relative_to_model_space(relative: np.ndarray, surroundings: np.ndarray, properties: dict) -> np.ndarray:
    """Contrasts given as fractions of the surroundings' level in the scan's own units, (C,), in the
    model's [-1, 1] space: the surroundings' level ``s`` there is ``low + (s + 1) (high - low) / 2`` in
    the scan's units (the case's normaliser), and a contrast ``r`` times that level is
    ``2 r level / (high - low)`` in the model's space."""
    from ldiff.preprocessing import PercentileNormalizer

    targets = []
    for channel, (ratio, level) in enumerate(zip(relative, surroundings)):
        normalizer = PercentileNormalizer.from_dict(properties["normalization"][channel])
        span = normalizer.high - normalizer.low
        targets.append(2.0 * float(ratio) * (normalizer.low + (float(level) + 1.0) * span / 2.0) / span)
    return np.asarray(targets, dtype=np.float64)


def match_each_lesion(image: np.ndarray, painted: np.ndarray, lesions: np.ndarray, paint: np.ndarray,
                      surroundings: np.ndarray, fallback: np.ndarray, properties: dict,
                      fraction_for_volume: Callable[[float], np.ndarray]) -> tuple[np.ndarray, ContrastMatch | None]:
    """:func:`match_lesion_contrast` per 26-connected lesion, each to the contrast its volume asks for.

    Args:
        image, painted: (C, Z, Y, X) the preprocessed input and the model's output (model space).
        lesions, paint: bool (Z, Y, X), the lesions and the voxels painted; each painted voxel belongs
            to its nearest lesion.
        surroundings: bool (Z, Y, X), where a lesion's reference may lie (white matter outside ``paint``);
            a lesion with fewer than :data:`MIN_RING_VOXELS` such voxels 2-5 mm around it takes the
            ``fallback`` voxels (any brain tissue outside ``paint``) of that ring instead.
        properties: the case's preprocessing properties (spacing; normaliser per channel).
        fraction_for_volume: lesion volume (mm^3) -> (C,) contrast as a fraction of the reference level
            in the scan's own units.

    Returns:
        the adjusted output, equal to ``painted`` outside ``paint``, and the lesions' reports averaged
        with their volumes as weights (None where no lesion had any reference voxel).
    """
    spacing = tuple(float(v) for v in (properties.get("target_spacing") or properties.get("spacing") or (1, 1, 1)))
    axis_spacing = spacing_for_array(spacing, lesions.ndim)
    voxel_mm3 = float(np.prod(spacing))
    labels, _ = label_components(lesions)
    # Each painted voxel belongs to its nearest lesion (the dilated border between two lesions is split);
    # searched within the painted region's bounding box, which holds every lesion.
    owner = np.zeros(labels.shape, np.int32)
    extent = ndimage.find_objects(paint.astype(np.uint8))
    if extent and extent[0] is not None:
        near = labels[extent[0]]
        _, nearest = ndimage.distance_transform_edt(near == 0, sampling=axis_spacing, return_indices=True)
        owner[extent[0]] = np.where(paint[extent[0]], near[tuple(nearest)], 0)
    pad = [int(np.ceil(RING_MM[1] / s)) + 2 for s in axis_spacing]
    result = painted.astype(np.float32, copy=True)
    reports, weights = [], []
    for index, tight in enumerate(ndimage.find_objects(owner), start=1):
        if tight is None:
            continue
        box = padded_box(tight, pad, lesions.shape)
        lesion, region = labels[box] == index, owner[box] == index
        distance = ndimage.distance_transform_edt(~lesion, sampling=axis_spacing)
        ring = (distance >= RING_MM[0]) & (distance <= RING_MM[1]) & ~region
        shell = ring & surroundings[box]
        if np.count_nonzero(shell) < MIN_RING_VOXELS:
            shell = ring & fallback[box]
        if not lesion.any() or not shell.any():
            continue
        levels = np.median(image[(slice(None),) + box][:, shell], axis=1)
        target = relative_to_model_space(fraction_for_volume(np.count_nonzero(lesion) * voxel_mm3), levels, properties)
        adjusted, report = match_lesion_contrast(image[(slice(None),) + box], painted[(slice(None),) + box],
                                                 lesion, region, shell, target)
        result[(slice(None),) + box][:, region] = adjusted[:, region]
        reports.append(report)
        weights.append(np.count_nonzero(lesion))
    if not reports:
        return painted, None
    averaged = [np.average(np.stack([getattr(r, name) for r in reports]), axis=0, weights=weights)
                for name in ("painted", "target", "reached", "scale", "shift")]
    return result, ContrastMatch(*averaged)


def match_case_contrast(image: np.ndarray, painted: np.ndarray, mask: np.ndarray, paint: np.ndarray,
                        brain: np.ndarray, properties: dict, target: np.ndarray,
                        relative_target: np.ndarray | None = None,
                        fraction_for_volume: Callable[[float], np.ndarray] | None = None,
                        wm_channel: int | None = None) -> tuple[np.ndarray, ContrastMatch | None]:
    """:func:`match_lesion_contrast` for one preprocessed case.

    Args:
        image, painted: (C, Z', Y', X') the preprocessed input and the model's output on it.
        mask: bool (Z, Y, X), the lesion mask on the input grid (before dilation), carried onto the
            preprocessed grid (voxels at least half covered, inside ``paint``).
        paint, brain: bool (Z', Y', X').
        properties: the case's preprocessing properties.
        target: (C,) contrast in the preprocessed [-1, 1] space.
        relative_target: (C,) or None: when given, it replaces ``target``: the contrast as a fraction
            of the surroundings' level in the scan's own units (-0.25 = 25 % darker than the tissue
            around the lesions), converted with :func:`relative_to_model_space`.
        fraction_for_volume: when given, it replaces both: each lesion is matched on its own
            (:func:`match_each_lesion`) to this fraction for its volume, against the white matter
            around it (a three-class split of channel ``wm_channel``; the whole brain when None).

    Returns:
        the adjusted output, and the report; ``painted`` unchanged and None where the mask carries onto
        no voxel or has no surroundings in the brain (nothing to measure against).
    """
    from ldiff.inference.lesion_intensity import own_lesion_shell
    from ldiff.inference.roi import coverage_in_preprocessed_space

    lesions = (coverage_in_preprocessed_space(mask.astype(bool), properties) >= 0.5) & paint
    if not lesions.any():  # lesions thinner than half a voxel of the model's grid: their painted region
        lesions = paint
    if fraction_for_volume is not None:
        from ldiff.preprocessing import derive_wm_mask

        tissue = brain & ~paint
        white = tissue if wm_channel is None else derive_wm_mask(image[wm_channel], tissue) & tissue
        return match_each_lesion(image, painted, lesions, paint, white, tissue, properties, fraction_for_volume)
    shell = own_lesion_shell(lesions, properties) & brain & ~paint
    if not shell.any():
        return painted, None
    if relative_target is not None:
        target = relative_to_model_space(relative_target, np.median(image[:, shell], axis=1), properties)
    return match_lesion_contrast(image, painted, lesions, paint, shell, target)
