"""Reading one source case, checking it, and writing it into the raw layout with its geometry kept.

Images keep their voxel type (float64 becomes float32: the raw layout never needs double precision) and
their own header (spacing, origin, direction). The mask is binarised by the format's rule and written
as uint8 0/1 carrying the first channel's grid; a mask or channel on another grid than the first
channel skips the case (:class:`CaseSkipped`) instead of being resampled behind the user's back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ldiff.dataset.converters.common import CaseSkipped, Converter, ConvertOptions, SourceCase, relative
from ldiff.errors import LdiffError
from ldiff.io import Geometry, geometry_mismatch, read_image, write_image_atomic

FILE_ENDING = ".nii.gz"


@dataclass
class WrittenCase:
    """What one case became: target file (relative to the dataset) -> its source, and remarks."""

    files: dict[str, str]
    lesion_voxels: int
    notes: list[str] = field(default_factory=list)


def case_targets(dataset_folder: Path, identifier: str, split: str, num_channels: int) -> tuple[list[Path], Path]:
    """The image files (one per channel, in order) and the label file of a case in the raw layout."""
    images = [dataset_folder / f"images{split}" / f"{identifier}_{c:04d}{FILE_ENDING}" for c in range(num_channels)]
    return images, dataset_folder / f"labels{split}" / f"{identifier}{FILE_ENDING}"


def case_is_complete(dataset_folder: Path, identifier: str, split: str, num_channels: int) -> bool:
    """Every file of the case exists; files are written atomically, so existing means complete."""
    images, label = case_targets(dataset_folder, identifier, split, num_channels)
    return all(path.is_file() for path in (*images, label))


def _read(path: Path) -> sitk.Image:
    try:
        return read_image(path)
    except LdiffError as error:
        raise CaseSkipped(str(error)) from None


def _for_output(image: sitk.Image) -> sitk.Image:
    if image.GetPixelID() == sitk.sitkFloat64:
        return sitk.Cast(image, sitk.sitkFloat32)  # Cast keeps spacing, origin and direction
    return image


def convert_case(case: SourceCase, channels: list[str], converter: Converter, options: ConvertOptions,
                 dataset_folder: Path, source: Path) -> WrittenCase:
    """Read, check and write one case; raises :class:`CaseSkipped` (nothing written) if it cannot be taken."""
    first = case.channels[channels[0]]
    images: list[sitk.Image] = []
    reference: Geometry | None = None
    for channel in channels:
        path = case.channels[channel]
        image = _read(path)
        geometry = Geometry.of(image)
        if reference is None:
            reference = geometry
        elif (mismatch := geometry_mismatch(reference, geometry)) is not None:
            raise CaseSkipped(f"{channel} image {path.name} is not on the grid of {first.name} ({mismatch}); "
                              "images are not resampled")
        images.append(_for_output(image))
    mask_image = _read(case.mask)
    mismatch = geometry_mismatch(reference, Geometry.of(mask_image))
    if mismatch is not None:
        raise CaseSkipped(f"mask {case.mask.name} is not on the grid of {first.name} ({mismatch}); "
                          "masks are not resampled")
    binary, note = converter.binarise(sitk.GetArrayViewFromImage(mask_image), options)
    label = sitk.GetImageFromArray(binary.astype(np.uint8))
    label.CopyInformation(images[0])
    lesion_voxels = int(np.count_nonzero(binary))
    notes = list(case.notes) + ([note] if note else [])
    if lesion_voxels == 0:
        notes.append("empty mask (no lesion voxels): kept")

    image_paths, label_path = case_targets(dataset_folder, case.identifier, case.split, len(channels))
    files = {}
    for channel, image, target in zip(channels, images, image_paths):
        write_image_atomic(image, target)
        files[relative(target, dataset_folder)] = f"{relative(case.channels[channel], source)} ({channel})"
    write_image_atomic(label, label_path)
    files[relative(label_path, dataset_folder)] = f"{relative(case.mask, source)} (mask)"
    return WrittenCase(files, lesion_voxels, notes)
