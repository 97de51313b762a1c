"""Resampling to a target spacing and back onto an exact original grid, with SimpleITK.

Spacings are in SimpleITK's (x, y, z) order, in mm. The resampled grid keeps the centre of the
original field of view and its direction, so resampling there and back lines up voxel centres
wherever the spacings agree.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import SimpleITK as sitk

from ldiff.io import Geometry

# Spacings closer than this (relative) count as equal and resampling is skipped, which keeps round
# trips exact; it is wider than NIfTI header float noise but far below any real spacing change.
SPACING_MATCH_TOLERANCE = 1e-3

_INTERPOLATORS = {
    "nearest": sitk.sitkNearestNeighbor,
    "linear": sitk.sitkLinear,
    "bspline": sitk.sitkBSpline,
}


def spacing_matches(spacing: Sequence[float], target: Sequence[float], tolerance: float = SPACING_MATCH_TOLERANCE) -> bool:
    """Whether every axis of ``spacing`` equals ``target`` within the relative ``tolerance``."""
    spacing_array, target_array = np.asarray(spacing, dtype=float), np.asarray(target, dtype=float)
    return bool(np.all(np.abs(spacing_array - target_array) <= tolerance * np.abs(target_array)))


def resampled_geometry(geometry: Geometry, target_spacing: Sequence[float]) -> Geometry:
    """The grid with ``target_spacing`` ((x, y, z) mm) covering the same field of view, centred on it.

    Axes whose spacing already matches keep their size and voxel positions exactly.
    """
    spacing = np.asarray(geometry.spacing, dtype=float)
    target = np.asarray(target_spacing, dtype=float)
    if target.shape != (3,) or np.any(target <= 0):
        raise ValueError(f"target spacing must be three positive numbers (x, y, z), got {list(target_spacing)}")
    size = np.asarray(geometry.size, dtype=int)
    keep = np.abs(spacing - target) <= SPACING_MATCH_TOLERANCE * target
    new_spacing = np.where(keep, spacing, target)
    new_size = np.where(keep, size, np.maximum(np.rint(size * spacing / new_spacing), 1)).astype(int)
    direction = np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    # Shift the origin (the first voxel centre) so both grids share their centre point.
    offset = ((size - 1) * spacing - (new_size - 1) * new_spacing) / 2
    origin = np.asarray(geometry.origin, dtype=float) + direction @ np.where(keep, 0.0, offset)
    return Geometry(
        tuple(int(v) for v in new_size),
        tuple(float(v) for v in new_spacing),
        tuple(float(v) for v in origin),
        geometry.direction,
    )


def resample_to_geometry(image: sitk.Image, geometry: Geometry, interpolation: str) -> sitk.Image:
    """Resample ``image`` onto ``geometry`` with ``"nearest"``, ``"linear"`` or ``"bspline"`` interpolation.

    Images come back as float32, nearest-neighbour results keep the input pixel type (so masks stay
    integer and binary). Points past the outermost voxel centres take the nearest voxel's value
    instead of a constant, so no artificial dark rim appears at the crop border.
    """
    if interpolation not in _INTERPOLATORS:
        raise ValueError(f"unknown interpolation {interpolation!r}; choose from {sorted(_INTERPOLATORS)}")
    if interpolation == "nearest":
        output_type = image.GetPixelID()
    else:
        output_type = sitk.sitkFloat32
        image = sitk.Cast(image, sitk.sitkFloat32)
    return sitk.Resample(
        image,
        [int(v) for v in geometry.size],
        sitk.Transform(),
        _INTERPOLATORS[interpolation],
        [float(v) for v in geometry.origin],
        [float(v) for v in geometry.spacing],
        [float(v) for v in geometry.direction],
        0.0,
        output_type,
        True,  # useNearestNeighborExtrapolator
    )


def resample_array(array_zyx: np.ndarray, source: Geometry, target: Geometry, interpolation: str) -> np.ndarray:
    """Resample a (z, y, x) array on the ``source`` grid onto the ``target`` grid; returns (z', y', x')."""
    if array_zyx.dtype == bool:  # SimpleITK has no boolean pixel type
        array_zyx = array_zyx.astype(np.uint8)
    image = source.apply_to(sitk.GetImageFromArray(array_zyx))
    return sitk.GetArrayFromImage(resample_to_geometry(image, target, interpolation))
