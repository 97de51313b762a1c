"""How far past the drawn lesion border the image is still abnormal, and the dilation rule built on it.

A manual lesion mask stops where the rater saw the edge, but partial volume and oedema leave a rim
of intermediate intensity outside it. A filler that keeps that rim as "known" context copies lesion
signal back in, so the planner dilates masks by about the rim's width. The width is measured from
the mean intensity on shells at signed distances from the border (negative inside the lesion): it is
the distance outside the border at which the profile has gone ``fraction`` (default 90 %) of the way
from the lesion-interior level to the far-away normal-appearing-WM level. The measure is
independent of intensity scale and polarity, so FLAIR (bright lesions) and T1 (dark) both work.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ldiff.masks.geometry import Spacing, bounding_box, padded_box, spacing_for_array

# Radius used when no boundary width could be measured: the thesis's 3x3x3 dilation.
DEFAULT_DILATION_RADIUS_VOXELS = 1


def signed_border_distance_mm(mask: np.ndarray, spacing: Spacing | None = None) -> np.ndarray:
    """Signed distance (mm, float64, same shape) of each voxel centre to the lesion border.

    Negative inside the lesion, positive outside, never zero. For a voxel v, take the nearest voxel
    centre u of the other side (Euclidean, in mm) and subtract the part of the segment v-u that lies
    inside u's voxel box: on an isotropic 1 mm grid a face neighbour of the lesion is at +0.5 mm, the
    first layer inside at -0.5 mm, and a neighbour across a thick slice is correctly farther away.
    On digitised spheres this is within about 0.2 mm of the true distance to the surface. When two
    voxels of the other side are equally near, the one taken may not be the one whose box is nearer,
    which can add up to half a voxel; averaged over a shell this hardly matters.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.all() or not mask.any():
        raise ValueError("the signed distance needs both lesion and non-lesion voxels")
    axis_spacing = spacing_for_array(spacing, mask.ndim)
    per_axis = axis_spacing.reshape((-1,) + (1,) * mask.ndim)
    grid = np.indices(mask.shape)

    def distance_to_border(features: np.ndarray) -> np.ndarray:
        # features: the voxels of the other side (the zeros of the EDT input).
        _, nearest = ndimage.distance_transform_edt(~features, sampling=axis_spacing, return_indices=True)
        offset = np.abs(nearest - grid) * per_axis
        length = np.sqrt((offset**2).sum(axis=0))
        # The segment leaves u's box where it first crosses a face: at the smallest fraction
        # (spacing_i / 2) / |offset_i| over the axes it moves along.
        with np.errstate(divide="ignore"):
            exit_fraction = np.where(offset > 0, (per_axis / 2) / offset, np.inf).min(axis=0)
        return length * (1.0 - np.minimum(exit_fraction, 1.0))

    return np.where(mask, -distance_to_border(~mask), distance_to_border(mask))


def boundary_profile(
    image_channel: np.ndarray,
    lesion_mask: np.ndarray,
    spacing: Spacing | None = None,
    wm_mask: np.ndarray | None = None,
    inner_mm: float = 3.0,
    outer_mm: float = 6.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean intensity on shells around the lesions: (distance_mm, mean_intensity, voxel_count).

    Shells are bins of width b = min(spacing) covering about [-inner_mm, outer_mm); a shell's
    distance is the mean signed distance of its voxels (more faithful than the bin centre, because
    voxel distances are not spread evenly within a bin). Outside the lesion only ``wm_mask`` voxels
    count when it is given, so cortex and CSF do not pose as normal tissue. Empty shells are left out;
    the arrays are sorted from inside to outside (1D, same length).
    """
    lesion = np.asarray(lesion_mask, dtype=bool)
    image = np.asarray(image_channel)
    if image.shape != lesion.shape:
        raise ValueError(f"image shape {image.shape} differs from lesion mask shape {lesion.shape}")
    axis_spacing = spacing_for_array(spacing, lesion.ndim)
    bin_mm = float(axis_spacing.min())
    inner_bins = max(1, round(inner_mm / bin_mm))
    outer_bins = max(2, round(outer_mm / bin_mm))
    box = bounding_box(lesion)
    if box is None:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=int)
    # Only voxels within the outermost shell matter; cropping keeps the distance transform cheap.
    pad = [math.ceil((outer_bins + 1) * bin_mm / s) for s in axis_spacing]
    region = padded_box(box, pad, lesion.shape)
    lesion = lesion[region]
    image = image[region].astype(float)
    if lesion.all():
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=int)
    distance = signed_border_distance_mm(lesion, axis_spacing[::-1])
    usable = lesion.copy()
    usable |= np.asarray(wm_mask, dtype=bool)[region] if wm_mask is not None else ~lesion
    shell = np.floor(distance / bin_mm).astype(int)
    usable &= (shell >= -inner_bins) & (shell < outer_bins)
    index = shell[usable] + inner_bins
    n_bins = inner_bins + outer_bins
    counts = np.bincount(index, minlength=n_bins)
    sum_distance = np.bincount(index, weights=distance[usable], minlength=n_bins)
    sum_intensity = np.bincount(index, weights=image[usable], minlength=n_bins)
    present = counts > 0
    return (
        sum_distance[present] / counts[present],
        sum_intensity[present] / counts[present],
        counts[present],
    )


def boundary_width_from_intensity(
    image_channel: np.ndarray,
    lesion_mask: np.ndarray,
    spacing: Spacing | None = None,
    wm_mask: np.ndarray | None = None,
    fraction: float = 0.9,
    inner_mm: float = 3.0,
    outer_mm: float = 6.0,
    min_relative_contrast: float = 0.02,
) -> float | None:
    """Width (mm, >= 0) of the abnormal rim outside the lesion border, or None if not measurable.

    ``image_channel``: (Z, Y, X) intensities, any scale. ``lesion_mask``: same shape, nonzero =
    lesion. The interior level is the innermost shell's mean (about ``inner_mm`` deep, or as deep as
    the lesions go), the NAWM level the outermost shell's (about ``outer_mm`` out). The width is
    where the profile, walked from inside out, first gets ``fraction`` of the way from the first
    level to the second, linearly interpolated between shells and clipped at 0.

    A perfectly sharp edge gives a little under half a voxel (the crossing falls between the first
    shells inside and outside). A planar step edge blurred by a Gaussian of sigma s gives about
    1.28 s (fraction 0.9). Small convex lesions blurred the same way measure less, because their
    intensity really does return sooner. Widths beyond about half of ``outer_mm`` are
    underestimated because the far level is not reached.

    None when there are no lesions, no shells outside, or the lesion-to-NAWM contrast is below
    ``min_relative_contrast`` of the image's 1-99 percentile range.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    distance, intensity, _ = boundary_profile(
        image_channel, lesion_mask, spacing, wm_mask, inner_mm, outer_mm
    )
    if distance.size < 2 or distance[-1] <= 0 or distance[0] >= 0:
        return None
    interior, far = intensity[0], intensity[-1]
    low, high = np.percentile(np.asarray(image_channel, dtype=float), [1, 99])
    if abs(far - interior) <= min_relative_contrast * max(high - low, 1e-12):
        return None
    target = interior + fraction * (far - interior)
    direction = np.sign(far - interior)
    reached = np.flatnonzero((intensity - target) * direction >= 0)
    first = int(reached[0])  # exists: the last shell is the far level itself
    if first == 0:
        return 0.0
    x0, x1 = distance[first - 1], distance[first]
    y0, y1 = intensity[first - 1], intensity[first]
    crossing = x0 + (target - y0) / (y1 - y0) * (x1 - x0)
    return float(max(crossing, 0.0))


def dilation_radius_voxels(boundary_width_mm: float | None, spacing: Spacing | None = None) -> int:
    """The planner's rule: dilation radius = ceil(boundary width / finest spacing) voxels, at least 1.

    The radius counts voxels along the finest axis, matching :func:`dilate_mask` given the same
    spacing, so the dilated mask reaches at least ``boundary_width_mm`` in every direction. Without a
    measurement (None) the thesis's radius of 1 voxel is used.
    """
    if boundary_width_mm is None:
        return DEFAULT_DILATION_RADIUS_VOXELS
    if boundary_width_mm < 0 or not math.isfinite(boundary_width_mm):
        raise ValueError(f"boundary width must be finite and >= 0, got {boundary_width_mm}")
    finest = 1.0 if spacing is None else float(min(spacing))
    if finest <= 0:
        raise ValueError(f"spacing must be positive, got {tuple(spacing)}")
    # The small tolerance keeps e.g. a width of exactly 2 mm on a 1 mm grid at radius 2, not 3.
    return max(DEFAULT_DILATION_RADIUS_VOXELS, math.ceil(boundary_width_mm / finest - 1e-9))
