"""Exact, deterministic dilation of boolean masks by a ball (ellipsoid in voxels) or a cube.

Lesion masks are dilated before filling because the visible abnormality extends past the drawn
border (partial volume, oedema); the thesis used a 3x3x3 cube, ldiff defaults to a ball whose radius
the planner derives from the measured boundary width.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage

from ldiff.masks.geometry import Spacing, bounding_box, padded_box, spacing_for_array

KernelShape = Literal["ball", "cube"]

# Distances between voxel centres are square roots of sums of squares; this tolerance makes e.g. a
# radius of exactly sqrt(2) include the diagonal neighbours despite rounding.
_DISTANCE_TOLERANCE = 1e-9


def _reach(
    ndim: int, radius_voxels: float | None, radius_mm: float | None, spacing: Spacing | None
) -> tuple[float, np.ndarray, np.ndarray]:
    """Resolve the radius to (radius in mm, per-axis spacing, per-axis half-width in voxels).

    Without a spacing, voxels are taken as 1 mm cubes, so "mm" are simply voxel units.
    """
    if (radius_voxels is None) == (radius_mm is None):
        raise ValueError("give exactly one of radius_voxels and radius_mm")
    axis_spacing = spacing_for_array(spacing, ndim)
    if radius_voxels is not None:
        if radius_voxels < 0:
            raise ValueError(f"radius_voxels must be >= 0, got {radius_voxels}")
        # A voxel radius counts voxels along the finest axis, so with anisotropic spacing the
        # kernel is physically round and coarser axes get proportionally fewer voxels.
        radius = float(radius_voxels) * float(axis_spacing.min())
    else:
        if radius_mm < 0:
            raise ValueError(f"radius_mm must be >= 0, got {radius_mm}")
        radius = float(radius_mm)
    half_width = np.floor(radius / axis_spacing + _DISTANCE_TOLERANCE).astype(int)
    return radius, axis_spacing, half_width


def dilate_mask(
    mask: np.ndarray,
    radius_voxels: float | None = None,
    spacing: Spacing | None = None,
    shape: KernelShape = "ball",
    *,
    radius_mm: float | None = None,
) -> np.ndarray:
    """Dilate a 2D (y, x) or 3D (z, y, x) boolean mask; returns a new bool array of the same shape.

    Give the radius either in voxels (``radius_voxels``) or in mm (``radius_mm``):

    * ``radius_voxels`` without ``spacing``: isotropic in voxel units. Ball radius 1 adds the
      face neighbours (a single voxel becomes 7 in 3D); cube radius 1 is the thesis's 3x3x3 kernel.
    * ``radius_voxels`` with ``spacing`` (x, y[, z] mm): the radius counts voxels along the finest
      axis (radius_mm = radius_voxels * min(spacing)) and the ball becomes an ellipsoid in voxels.
    * ``radius_mm`` (with ``spacing``; without it voxels are taken as 1 mm): per-axis reach is
      floor(radius_mm / spacing_i) voxels.

    Radius 0 (or a radius smaller than every voxel) returns a copy. The result is exact: a voxel is
    set iff its centre lies within the radius (ball) or the half-widths (cube) of a mask voxel's centre.
    """
    mask = np.asarray(mask, dtype=bool)
    if shape not in ("ball", "cube"):
        raise ValueError(f"shape must be 'ball' or 'cube', got {shape!r}")
    if mask.ndim not in (2, 3):
        raise ValueError(f"mask must be 2D or 3D, got shape {mask.shape}")
    radius, axis_spacing, half_width = _reach(mask.ndim, radius_voxels, radius_mm, spacing)
    result = mask.copy()
    box = bounding_box(mask)
    if box is None or not np.any(half_width > 0):
        return result
    # Work only on the mask's bounding box grown by the reach: a full 256^3 volume would cost
    # seconds, and no voxel outside this box can be within reach of a mask voxel.
    region_box = padded_box(box, half_width, mask.shape)
    region = mask[region_box]
    if shape == "cube":
        dilated = ndimage.maximum_filter(region.view(np.uint8), size=tuple(2 * half_width + 1), mode="constant")
        result[region_box] = dilated.astype(bool)
    else:
        # The Euclidean distance transform gives each voxel's exact distance to the nearest mask
        # voxel centre, which is cheaper than a brute-force binary dilation with a large kernel.
        distance = ndimage.distance_transform_edt(~region, sampling=axis_spacing)
        result[region_box] = distance <= radius + _DISTANCE_TOLERANCE
    return result

