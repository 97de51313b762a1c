"""Synthetic lesion shapes: randomly oriented ellipsoids (3D) and ellipses (2D, axial slices).

These replace the thesis's "circles" (one disc of radius U(3, 50) px per slice). Sizes are given in
mm so that one configuration works at any spacing, and are meant to come from the dataset's lesion
statistics (see ``mask_config_from_statistics`` in :mod:`ldiff.masks.sampler`).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ldiff.masks.geometry import Spacing, crop_to_content, spacing_for_array


def draw_radii(rng: np.random.Generator, radii_mm_range: Sequence[float], count: int) -> np.ndarray:
    """``count`` semi-axes (mm), each drawn log-uniformly from [low, high].

    Log-uniform because lesion sizes are strongly skewed towards small lesions: a uniform draw over
    e.g. [1.5, 10] mm would make most synthetic lesions larger than most real ones.
    """
    low, high = (float(v) for v in radii_mm_range)
    if not 0 < low <= high:
        raise ValueError(f"radius range must satisfy 0 < low <= high, got {tuple(radii_mm_range)}")
    return np.exp(rng.uniform(math.log(low), math.log(high), size=count))


def random_rotation(rng: np.random.Generator, ndim: int) -> np.ndarray:
    """A uniformly distributed rotation matrix of shape (ndim, ndim), ndim 2 or 3."""
    if ndim == 2:
        angle = rng.uniform(0.0, 2.0 * math.pi)
        return np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    # QR of a Gaussian matrix, with the signs of R's diagonal moved into Q, is Haar-distributed
    # over O(3); flipping one column then maps reflections to rotations without biasing the law.
    q, r = np.linalg.qr(rng.standard_normal((ndim, ndim)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def voxelise_ellipsoid(radii_mm: Sequence[float], rotation: np.ndarray, spacing: Spacing | None) -> np.ndarray:
    """Voxels whose centres lie in a rotated ellipsoid centred on a voxel centre; bool crop.

    ``radii_mm``: semi-axes along the columns of ``rotation`` (an (n, n) matrix in array-axis order,
    n = 2 for (y, x) or 3 for (z, y, x)). The crop is tight and never empty (the centre is inside).
    """
    radii = np.asarray(radii_mm, dtype=float)
    ndim = radii.size
    axis_spacing = spacing_for_array(spacing, ndim)
    # The half-extent of the rotated ellipsoid along array axis j is the norm of row j of R diag(r).
    half_extent_mm = np.sqrt(((rotation * radii) ** 2).sum(axis=1))
    half_width = np.floor(half_extent_mm / axis_spacing).astype(int) + 1
    offsets = np.meshgrid(*[np.arange(-h, h + 1) * s for h, s in zip(half_width, axis_spacing)], indexing="ij")
    points = np.stack([o.ravel() for o in offsets], axis=1)  # (N, n) in mm
    local = points @ rotation  # coordinates along the ellipsoid's own axes
    inside = ((local / radii) ** 2).sum(axis=1) <= 1.0
    return crop_to_content(inside.reshape(offsets[0].shape))


def random_ellipsoid(
    rng: np.random.Generator, radii_mm_range: Sequence[float], spacing: Spacing | None = None
) -> np.ndarray:
    """A randomly oriented ellipsoid as a tight bool crop (Z, Y, X).

    Each semi-axis is drawn log-uniformly from ``radii_mm_range`` = (low, high) in mm; ``spacing``
    is (x, y, z) mm (None = 1 mm). The voxel count times the voxel volume approximates
    4/3 pi a b c, closely once the radii span a few voxels.
    """
    radii = draw_radii(rng, radii_mm_range, 3)
    return voxelise_ellipsoid(radii, random_rotation(rng, 3), spacing)


def random_ellipse(
    rng: np.random.Generator, radii_mm_range: Sequence[float], spacing: Spacing | None = None
) -> np.ndarray:
    """A randomly oriented ellipse on an axial slice as a tight bool crop (Y, X).

    ``spacing``: (x, y) or (x, y, z) mm; only the in-plane part is used. Area ~ pi a b.
    """
    radii = draw_radii(rng, radii_mm_range, 2)
    return voxelise_ellipsoid(radii, random_rotation(rng, 2), spacing)
