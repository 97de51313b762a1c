"""A library of real lesion shapes, cropped from lesion masks, that synthetic masks can borrow.

Shapes are stored with the spacing they were drawn at, so a library built on one dataset can be
resampled for another ("--lesion-shapes-from 002") and saved as a single .npz file.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from scipy import ndimage

from ldiff.io.atomic import save_npz_atomic
from ldiff.masks.components import lesion_components
from ldiff.masks.geometry import Spacing, crop_to_content, spacing_for_array

# Relative difference under which x and y spacings count as equal, allowing 90-degree rotations.
_SQUARE_PIXEL_TOLERANCE = 1e-3
_NPZ_FORMAT_VERSION = 1


class LesionLibrary:
    """Real lesion shapes as tight bool crops (Z, Y, X) at one voxel spacing (x, y, z) mm."""

    def __init__(self, shapes: Sequence[np.ndarray], spacing: Spacing | None = None):
        cropped = [crop_to_content(np.asarray(shape, dtype=bool)) for shape in shapes]
        for index, shape in enumerate(cropped):
            if shape.ndim != 3:
                raise ValueError(f"shape {index} must be 3D (Z, Y, X), got {shape.ndim}D")
        self.shapes: list[np.ndarray] = [shape for shape in cropped if shape.size > 0]
        self.spacing: tuple[float, float, float] = tuple(float(v) for v in spacing_for_array(spacing, 3)[::-1])

    def __len__(self) -> int:
        return len(self.shapes)

    @classmethod
    def from_lesion_masks(
        cls, lesion_masks: Sequence[np.ndarray], spacing: Spacing | None = None, min_voxels: int = 3
    ) -> "LesionLibrary":
        """Collect every connected lesion of at least ``min_voxels`` voxels from (Z, Y, X) masks.

        All masks must share ``spacing`` (true for preprocessed cases, which are resampled to the
        plan's spacing). The default drops 1-2 voxel specks, which are mostly annotation noise.
        """
        shapes = [
            component.mask
            for mask in lesion_masks
            for component in lesion_components(mask, spacing, min_voxels=min_voxels)
        ]
        return cls(shapes, spacing)

    @property
    def can_rotate_in_plane(self) -> bool:
        """Whether 90-degree axial rotations keep physical shapes (x and y spacings equal)."""
        x, y, _ = self.spacing
        return abs(x - y) <= _SQUARE_PIXEL_TOLERANCE * max(x, y)

    def sample(self, rng: np.random.Generator, augment: bool = True) -> np.ndarray:
        """A uniformly chosen shape (bool crop, Z, Y, X), a new array.

        With ``augment`` it is flipped along each axis with probability 1/2 and, when the pixels are
        square, rotated in the axial plane by a random multiple of 90 degrees.
        """
        if not self.shapes:
            raise ValueError("the lesion library is empty")
        shape = self.shapes[int(rng.integers(len(self.shapes)))]
        if augment:
            flips = tuple(axis for axis in range(3) if rng.random() < 0.5)
            if flips:
                shape = np.flip(shape, axis=flips)
            if self.can_rotate_in_plane:
                shape = np.rot90(shape, k=int(rng.integers(4)), axes=(1, 2))
        return np.ascontiguousarray(shape)

    def resampled(self, spacing: Spacing) -> "LesionLibrary":
        """The library at another spacing (x, y, z) mm, keeping each shape's physical size.

        Each output voxel is set where linear interpolation of the shape is >= 0.5 (centres aligned
        as in SimpleITK's resampling of an image with the same physical extent); a shape too small
        for the new grid keeps at least its central voxel.
        """
        source = spacing_for_array(self.spacing, 3)
        target = spacing_for_array(spacing, 3)
        if np.allclose(source, target):
            return LesionLibrary([shape.copy() for shape in self.shapes], spacing)
        resampled = []
        for shape in self.shapes:
            in_size = np.array(shape.shape)
            out_size = np.maximum(1, np.round(in_size * source / target).astype(int))
            # Output voxel centre j in input index units: the two grids share their outer edges.
            axes = [(np.arange(n_out) + 0.5) * n_in / n_out - 0.5 for n_in, n_out in zip(in_size, out_size)]
            coordinates = np.stack(np.meshgrid(*axes, indexing="ij"))
            values = ndimage.map_coordinates(shape.astype(np.float32), coordinates, order=1, mode="nearest")
            result = values >= 0.5
            if not result.any():
                result[tuple(n // 2 for n in out_size)] = True
            resampled.append(result)
        return LesionLibrary(resampled, spacing)

    def to_npz(self, path: str | os.PathLike) -> None:
        """Save all shapes (bit-exact) and the spacing to one .npz file, written atomically."""
        sizes = np.array([shape.shape for shape in self.shapes], dtype=np.int64).reshape(-1, 3)
        flat = np.concatenate([shape.ravel() for shape in self.shapes]) if self.shapes else np.zeros(0, bool)
        save_npz_atomic(
            path,
            format_version=np.array(_NPZ_FORMAT_VERSION),
            spacing=np.array(self.spacing, dtype=np.float64),
            sizes=sizes,
            voxels=np.packbits(flat),
            voxel_count=np.array(flat.size, dtype=np.int64),
        )

    @classmethod
    def from_npz(cls, path: str | os.PathLike) -> "LesionLibrary":
        """Load a library written by :meth:`to_npz`."""
        with np.load(path) as data:
            version = int(data["format_version"])
            if version != _NPZ_FORMAT_VERSION:
                raise ValueError(f"{path}: lesion library format {version}, expected {_NPZ_FORMAT_VERSION}")
            flat = np.unpackbits(data["voxels"], count=int(data["voxel_count"])).astype(bool)
            sizes = data["sizes"]
            spacing = tuple(float(v) for v in data["spacing"])
        ends = np.cumsum([int(np.prod(size)) for size in sizes])
        starts = np.concatenate([[0], ends[:-1]]).astype(int)
        shapes = [flat[start:end].reshape(size) for start, end, size in zip(starts, ends, sizes)]
        return cls(shapes, spacing)


def axial_cross_section(shape: np.ndarray, rng: np.random.Generator, min_area_voxels: int = 1) -> np.ndarray | None:
    """A random axial slice (Y, X) of a 3D shape, cropped; None if no slice is large enough.

    Slices are chosen with probability proportional to their area (as if a lesion voxel were picked
    uniformly and its slice taken), which favours full cross-sections over a lesion's thin caps.
    """
    areas = shape.reshape(shape.shape[0], -1).sum(axis=1).astype(float)
    areas[areas < min_area_voxels] = 0.0
    if areas.sum() == 0:
        return None
    index = int(rng.choice(len(areas), p=areas / areas.sum()))
    return crop_to_content(shape[index])
