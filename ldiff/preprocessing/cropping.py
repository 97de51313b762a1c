"""Cropping to the brain's bounding box and padding back (the exact inverse).

Boxes are in array (z, y, x) order as ``[[start, stop], ...]`` with ``stop`` exclusive, so they
slice directly and survive a JSON round trip unchanged.
"""
from __future__ import annotations

import numpy as np

from ldiff.errors import LdiffError
from ldiff.io import Geometry

BoundingBox = list[list[int]]


def brain_bounding_box(brain: np.ndarray, margin: int = 0) -> BoundingBox:
    """Tight bounding box of a boolean (Z, Y, X) mask, grown by ``margin`` voxels and clipped to the array."""
    if margin < 0:
        raise ValueError(f"crop margin must be >= 0, got {margin}")
    occupied = np.nonzero(brain)
    if occupied[0].size == 0:
        raise LdiffError("the brain mask is empty, so there is nothing to crop to (is the image blank?).")
    return [
        [max(int(index.min()) - margin, 0), min(int(index.max()) + 1 + margin, length)]
        for index, length in zip(occupied, brain.shape)
    ]


def crop_to_box(array: np.ndarray, box: BoundingBox) -> np.ndarray:
    """Crop the last three axes of ``array`` ((..., Z, Y, X)) to ``box``; returns a contiguous copy."""
    region = tuple(slice(start, stop) for start, stop in box)
    return np.ascontiguousarray(array[(Ellipsis, *region)])


def pad_from_box(cropped: np.ndarray, box: BoundingBox, shape_zyx: tuple[int, ...], fill_value: float = 0) -> np.ndarray:
    """Inverse of :func:`crop_to_box`: place ``cropped`` ((..., z, y, x)) into a ``fill_value`` array of ``shape_zyx``."""
    expected = tuple(stop - start for start, stop in box)
    if tuple(cropped.shape[-3:]) != expected:
        raise ValueError(f"array of spatial shape {cropped.shape[-3:]} does not fit the crop box of shape {expected}")
    full = np.full((*cropped.shape[:-3], *shape_zyx), fill_value, dtype=cropped.dtype)
    region = tuple(slice(start, stop) for start, stop in box)
    full[(Ellipsis, *region)] = cropped
    return full


def cropped_geometry(geometry: Geometry, box: BoundingBox) -> Geometry:
    """The physical grid of the cropped image: the box's first voxel becomes the origin."""
    start_xyz = np.array([box[2][0], box[1][0], box[0][0]], dtype=float)
    direction = np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    origin = np.asarray(geometry.origin, dtype=float) + direction @ (start_xyz * np.asarray(geometry.spacing))
    size = (box[2][1] - box[2][0], box[1][1] - box[1][0], box[0][1] - box[0][0])
    return Geometry(size, geometry.spacing, tuple(float(v) for v in origin), geometry.direction)
