"""NIfTI reading and writing with SimpleITK, and comparison of image grids.

Arrays obtained from SimpleITK are indexed (z, y, x); geometry (spacing, origin, direction) is kept
in SimpleITK's (x, y, z) order.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ldiff.errors import LdiffError
from ldiff.io.atomic import atomic_path

# Tolerances when two files must share a grid. Header round trips through float32 NIfTI fields
# perturb spacing/origin by ~1e-6 relative; anything beyond these is a real mismatch.
SPACING_TOLERANCE = 1e-4  # relative
ORIGIN_TOLERANCE_MM = 1e-3  # absolute, in mm
DIRECTION_TOLERANCE = 1e-4  # absolute, per matrix entry


@dataclass(frozen=True)
class Geometry:
    """The physical grid of an image: size and spacing in (x, y, z) order, origin in mm, 3x3 direction."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> "Geometry":
        return cls(
            tuple(int(v) for v in image.GetSize()),
            tuple(float(v) for v in image.GetSpacing()),
            tuple(float(v) for v in image.GetOrigin()),
            tuple(float(v) for v in image.GetDirection()),
        )

    @classmethod
    def from_dict(cls, data: dict) -> "Geometry":
        return cls(*(tuple(data[key]) for key in ("size", "spacing", "origin", "direction")))

    def to_dict(self) -> dict:
        return {key: list(value) for key, value in asdict(self).items()}

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        """Stamp this geometry's spacing, origin and direction onto ``image`` (sizes must agree)."""
        if tuple(image.GetSize()) != self.size:
            raise ValueError(f"image size {image.GetSize()} differs from geometry size {self.size}")
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image


def geometry_mismatch(reference: Geometry, other: Geometry) -> str | None:
    """Describe how ``other``'s grid differs from ``reference`` beyond the tolerances, or None."""
    if reference.size != other.size:
        return f"size {other.size} differs from {reference.size}"
    spacing_ref, spacing_other = np.array(reference.spacing), np.array(other.spacing)
    if np.any(np.abs(spacing_ref - spacing_other) > SPACING_TOLERANCE * np.abs(spacing_ref)):
        return f"spacing {other.spacing} differs from {reference.spacing}"
    if np.any(np.abs(np.array(reference.origin) - np.array(other.origin)) > ORIGIN_TOLERANCE_MM):
        return f"origin {other.origin} differs from {reference.origin}"
    if np.any(np.abs(np.array(reference.direction) - np.array(other.direction)) > DIRECTION_TOLERANCE):
        return "direction matrix differs"
    return None


def read_image(path: str | os.PathLike) -> sitk.Image:
    """Read a 3D image; any failure becomes one sentence naming the file."""
    path = Path(path)
    if not path.is_file():
        raise LdiffError(f"{path}: file not found.")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown reason"
        raise LdiffError(f"{path}: cannot be read as an image (truncated or not NIfTI?): {first_line}") from None
    problem = stored_voxel_problem(path)
    if problem is not None:
        raise LdiffError(f"{path}: {problem}.")
    if image.GetDimension() != 3:
        raise LdiffError(f"{path}: is {image.GetDimension()}D, but ldiff needs 3D volumes.")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise LdiffError(f"{path}: has {image.GetNumberOfComponentsPerPixel()} components per voxel; expected 1.")
    return image


def read_geometry(path: str | os.PathLike) -> Geometry:
    """The grid of a 3D image from its header alone (no voxels are decompressed); one sentence on failure."""
    path = Path(path)
    if not path.is_file():
        raise LdiffError(f"{path}: file not found.")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown reason"
        raise LdiffError(f"{path}: cannot be read as an image (not NIfTI?): {first_line}") from None
    if reader.GetDimension() != 3:
        raise LdiffError(f"{path}: is {reader.GetDimension()}D, but ldiff needs 3D volumes.")
    return Geometry(tuple(int(v) for v in reader.GetSize()), tuple(float(v) for v in reader.GetSpacing()),
                    tuple(float(v) for v in reader.GetOrigin()), tuple(float(v) for v in reader.GetDirection()))


def stored_voxel_problem(path: str | os.PathLike) -> str | None:
    """Check the voxels stored in a NIfTI file independently of SimpleITK; None when they are sound.

    SimpleITK 2.5's NIfTI reader silently fills a truncated file with zeros and turns NaN/Inf into
    0, so neither problem is visible in the image it returns. nibabel reads the stored voxels and
    fails on a truncated stream, which lets ldiff refuse such files instead of filling garbage.
    """
    name = str(path).lower()
    if not name.endswith((".nii", ".nii.gz")):
        return None
    import nibabel

    try:
        stored = nibabel.load(str(path))
        voxels = np.asarray(stored.dataobj)
    except Exception as error:  # nibabel raises EOFError, OSError, zlib.error, ValueError ... on damage
        return f"is truncated or corrupt ({type(error).__name__}: {error})"
    if np.issubdtype(voxels.dtype, np.floating) and not np.all(np.isfinite(voxels)):
        return f"contains {int(np.count_nonzero(~np.isfinite(voxels)))} NaN or Inf voxels"
    return None


def write_image_atomic(image: sitk.Image, path: str | os.PathLike, compress: bool = True) -> None:
    """Write ``image`` to ``path`` via a temporary file in the same folder, then rename."""
    with atomic_path(path) as temporary:
        sitk.WriteImage(image, str(temporary), useCompression=compress)


def array_to_image(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    """Wrap a (z, y, x) array as a SimpleITK image carrying ``geometry``."""
    image = sitk.GetImageFromArray(array)
    return geometry.apply_to(image)
