"""Reorientation of volumes to ldiff's one canonical orientation, and the exact inverse.

Canonical orientation: **RAS+** in the nibabel/neurological sense. The voxel index axes (i, j, k) of a
reoriented image increase towards the subject's Right, Anterior and Superior. SimpleITK stores
physical points in LPS, so the canonical direction matrix is (close to) ``diag(-1, -1, 1)``; this is
what ``sitk.DICOMOrient(image, "RAS")`` produces in SimpleITK 2.x / ITK >= 5.4 (ITK names the
direction each axis points *towards*; older ITK enums used the opposite, "from", convention, which
is why ldiff computes the reorientation itself instead of relying on a letter code).

After ``sitk.GetArrayFromImage`` a canonical array is indexed (z, y, x) with
axis 0 = inferior -> superior, axis 1 = posterior -> anterior, axis 2 = left -> right, so an axial
slice is ``array[k, :, :]``.

The reorientation is a pure axis permutation plus flips of the voxel grid, so voxel values are
preserved exactly in both directions; an oblique image keeps its obliqueness (its direction is only
the nearest-to-canonical permutation of the original one).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ldiff.io import Geometry

CANONICAL_ORIENTATION = "RAS"
# Sign of each canonical index axis in SimpleITK's LPS physical space: +x is Right (= -L),
# +y is Anterior (= -P), +z is Superior (= +S).
_CANONICAL_SIGNS_LPS = np.array([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class Reorientation:
    """How an original voxel grid maps onto the canonical one, in SimpleITK (x, y, z) index order.

    ``permutation[a]`` is the original index axis that becomes canonical index axis ``a``;
    ``flip[a]`` says whether that axis is reversed. The identity is ``(0, 1, 2)`` without flips.
    """

    permutation: tuple[int, int, int]
    flip: tuple[bool, bool, bool]

    @classmethod
    def from_direction(cls, direction: tuple[float, ...] | np.ndarray) -> "Reorientation":
        """The permutation/flips that bring a grid with this 3x3 direction (row-major) closest to RAS+.

        Oblique grids get the permutation whose diagonal carries the most weight, which is the
        same choice as taking each axis's dominant physical component but stays a permutation
        when two axes tie (e.g. 45 degree rotations).
        """
        matrix = np.asarray(direction, dtype=float).reshape(3, 3)  # column j = physical direction of index axis j
        best = max(
            itertools.permutations(range(3)),
            key=lambda perm: sum(abs(matrix[axis, perm[axis]]) for axis in range(3)),
        )
        flip = tuple(bool(np.sign(matrix[axis, best[axis]]) != _CANONICAL_SIGNS_LPS[axis]) for axis in range(3))
        return cls(tuple(int(p) for p in best), flip)  # type: ignore[arg-type]

    @property
    def is_identity(self) -> bool:
        return self.permutation == (0, 1, 2) and not any(self.flip)

    def to_dict(self) -> dict:
        return {
            "canonical": CANONICAL_ORIENTATION,
            "permutation_xyz": list(self.permutation),
            "flip_xyz": list(self.flip),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Reorientation":
        return cls(tuple(int(v) for v in data["permutation_xyz"]), tuple(bool(v) for v in data["flip_xyz"]))  # type: ignore[arg-type]

    # ---- arrays -------------------------------------------------------------------------------
    def apply_to_array(self, array_zyx: np.ndarray) -> np.ndarray:
        """Reorient a (z, y, x) array of the original grid to the canonical (z, y, x) array.

        Leading non-spatial axes are not supported; call once per channel. Always returns a new
        writable array, never a view of the input (which may be a read-only SimpleITK buffer).
        """
        xyz = np.transpose(array_zyx, (2, 1, 0))
        xyz = np.transpose(xyz, self.permutation)
        flipped_axes = tuple(axis for axis in range(3) if self.flip[axis])
        if flipped_axes:
            xyz = np.flip(xyz, axis=flipped_axes)
        return np.array(np.transpose(xyz, (2, 1, 0)), order="C", copy=True)

    def invert_array(self, canonical_zyx: np.ndarray) -> np.ndarray:
        """Map a canonical (z, y, x) array back to the original grid's (z, y, x) array (exact inverse)."""
        xyz = np.transpose(canonical_zyx, (2, 1, 0))
        flipped_axes = tuple(axis for axis in range(3) if self.flip[axis])
        if flipped_axes:
            xyz = np.flip(xyz, axis=flipped_axes)
        xyz = np.transpose(xyz, np.argsort(self.permutation))
        return np.array(np.transpose(xyz, (2, 1, 0)), order="C", copy=True)

    # ---- geometry -----------------------------------------------------------------------------
    def apply_to_geometry(self, geometry: Geometry) -> Geometry:
        """The physical grid of the reoriented image: same voxels in space, re-indexed."""
        matrix = np.asarray(geometry.direction, dtype=float).reshape(3, 3)
        spacing = np.asarray(geometry.spacing, dtype=float)
        size = np.asarray(geometry.size, dtype=int)
        # The canonical index origin is the original voxel at the far end of every flipped axis.
        corner_index = np.zeros(3)
        for axis in range(3):
            if self.flip[axis]:
                corner_index[self.permutation[axis]] = size[self.permutation[axis]] - 1
        origin = np.asarray(geometry.origin, dtype=float) + matrix @ (corner_index * spacing)
        signs = np.where(self.flip, -1.0, 1.0)
        new_matrix = matrix[:, list(self.permutation)] * signs[np.newaxis, :]
        return Geometry(
            tuple(int(size[p]) for p in self.permutation),
            tuple(float(spacing[p]) for p in self.permutation),
            tuple(float(v) for v in origin),
            tuple(float(v) for v in new_matrix.reshape(-1)),
        )


def reorient_to_canonical(image: sitk.Image) -> tuple[sitk.Image, Reorientation]:
    """Return ``image`` re-indexed to RAS+ (values untouched) and the reorientation that did it."""
    reorientation = Reorientation.from_direction(image.GetDirection())
    array = reorientation.apply_to_array(sitk.GetArrayViewFromImage(image))
    canonical = sitk.GetImageFromArray(array)
    reorientation.apply_to_geometry(Geometry.of(image)).apply_to(canonical)
    return canonical, reorientation


def restore_orientation(canonical_zyx: np.ndarray, reorientation: Reorientation, original: Geometry) -> sitk.Image:
    """Turn a canonical (z, y, x) array back into an image on the ``original`` grid (exact inverse)."""
    array = reorientation.invert_array(canonical_zyx)
    return original.apply_to(sitk.GetImageFromArray(array))
