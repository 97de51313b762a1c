"""The scans a benchmark runs on: one case from files, a folder of cases, or a raw dataset.

* ``-i t1.nii.gz [flair.nii.gz ...] --mask lesions.nii.gz``: one case (named after its folder when
  the file is called like ``T1.nii.gz``, else after the first file).
* ``-i DIR [--masks DIR]``: ``{case}_0000.nii.gz ...`` and masks ``{case}.nii.gz``.
* ``-d DATASET [--split Tr|Ts]``: a raw dataset's images and labels, with its channel names.

Every file is read and checked (grids, binary masks, NaN, truncation) before any filling starts.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from ldiff.errors import LdiffError
from ldiff.io import Geometry, geometry_mismatch, read_image
from ldiff.io.cases import find_case_channels, nifti_ending, read_binary_mask

GENERIC_STEMS = {"t1", "t1w", "flair", "t2", "image", "img", "brain", "scan"}


@dataclass(frozen=True)
class BenchmarkCase:
    """The files of one case: ``image_files`` in channel order and its lesion ``mask_file``."""

    name: str
    image_files: tuple[Path, ...]
    mask_file: Path


@dataclass(frozen=True, eq=False)
class LoadedCase:
    """A case in memory: ``images`` float64 (C, Z, Y, X), ``lesion`` bool (Z, Y, X), its grid."""

    name: str
    images: np.ndarray
    lesion: np.ndarray
    geometry: Geometry


def _stem(path: Path) -> str:
    ending = nifti_ending(path)
    return path.name[: -len(ending)] if ending else path.stem


def single_case(images: Sequence[str | Path], mask: str | Path) -> BenchmarkCase:
    """The case of ``-i FILE ... --mask FILE``."""
    files = tuple(Path(p) for p in images)
    for path in (*files, Path(mask)):
        if not path.is_file():
            raise LdiffError(f"{path}: file not found.")
    stem = _stem(files[0])
    name = files[0].resolve().parent.name if stem.lower() in GENERIC_STEMS else stem
    return BenchmarkCase(name, files, Path(mask))


def folder_cases(folder: str | Path, masks: str | Path | None = None) -> list[BenchmarkCase]:
    """The cases of ``-i DIR [--masks DIR]``."""
    folder = Path(folder)
    mask_folder = Path(masks) if masks is not None else folder
    if not folder.is_dir():
        raise LdiffError(f"{folder}: folder not found.")
    if not mask_folder.is_dir():
        raise LdiffError(f"{mask_folder}: the masks folder does not exist.")
    cases = []
    for found in find_case_channels(folder):
        mask_file = mask_folder / f"{found.case}{found.ending}"
        if not mask_file.is_file():
            raise LdiffError(f"{mask_file}: lesion mask of case {found.case} not found.")
        cases.append(BenchmarkCase(found.case, tuple(path for _, path in found.files), mask_file))
    if not cases:
        raise LdiffError(f"{folder}: holds no {{case}}_0000.nii.gz images.")
    return cases


def dataset_cases(dataset: str, split: str = "Tr") -> tuple[list[BenchmarkCase], list[str]]:
    """The cases of a raw dataset (``-d``) and its channel names."""
    from ldiff.dataset.raw import RawDataset
    from ldiff import paths

    raw = RawDataset(paths.raw_root() / paths.find_dataset_name(dataset))
    cases = [BenchmarkCase(case.identifier, case.image_files, case.label_file) for case in raw.cases(split)
             if case.label_file is not None]
    if not cases:
        raise LdiffError(f"{raw.folder}: holds no cases with labels in images{split}/labels{split}.")
    return cases, list(raw.channel_names)


def load_case(case: BenchmarkCase) -> LoadedCase:
    """Read and check one case; LdiffError naming the file for any problem."""
    first = read_image(case.image_files[0])
    geometry = Geometry.of(first)
    arrays = []
    for path in case.image_files:
        image = first if path == case.image_files[0] else read_image(path)
        mismatch = geometry_mismatch(geometry, Geometry.of(image))
        if mismatch is not None:
            raise LdiffError(f"{path}: grid differs from {case.image_files[0]} ({mismatch}).")
        values = sitk.GetArrayFromImage(image).astype(np.float64)
        if not np.isfinite(values).all():
            raise LdiffError(f"{path}: contains NaN or infinite voxels.")
        arrays.append(values)
    lesion = read_binary_mask(case.mask_file, geometry, case.image_files[0], "lesion mask")
    return LoadedCase(case.name, np.stack(arrays), lesion, geometry)


def load_shapes_source(path: str | Path) -> list[Path]:
    """The mask files of ``--shapes-from``: a mask file, or a folder of ``*.nii.gz`` / ``*.nii`` masks."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if nifti_ending(p))
        if files:
            return files
        raise LdiffError(f"{path}: --shapes-from holds no NIfTI masks.")
    raise LdiffError(f"{path}: --shapes-from not found.")
