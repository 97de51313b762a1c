"""Classic filling of NIfTI files: one image, or a folder of cases, with every check done up front.

Layouts (``ending`` is ``.nii.gz`` or ``.nii``):

* Single file: ``IN`` is an image, ``mask`` its lesion mask, ``output`` the filled image (for
  several methods, a folder holding ``{method}/{IN's name}``).
* Folder: ``IN`` holds ``{case}_0000{ending}`` (first channel) and possibly ``{case}_0001...``;
  every channel present is filled with the case's lesion mask ``{case}{ending}``, found in ``IN``
  or in ``masks_dir``. Outputs are ``{output}/{case}_{XXXX}{ending}`` (for several methods
  ``{output}/{method}/...``). A WM mask is then a folder of ``{case}{ending}`` files.

Every file is read and checked before anything is written (missing files, grids, binary masks,
NaN/truncation through ``read_image``), and no output may coincide with an input, so a refused run
writes nothing. Outputs are written atomically with the input's geometry and pixel type: float
types are cast back directly; integer types are rounded to the nearest integer and clipped to the
type's range (a Gaussian draw can exceed e.g. 255 in a uint8 image).
"""
from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from ldiff.errors import LdiffError
from ldiff.evaluation.classic.dispatch import CLASSIC_METHODS, classic_fill
from ldiff.io import Geometry, array_to_image, geometry_mismatch, read_image, write_image_atomic
from ldiff.io.cases import find_case_channels, nifti_ending, read_binary_mask

logger = logging.getLogger("ldiff")


@dataclass(frozen=True)
class FillJob:
    """The files of one case: channels in order, its masks, and per method one output per channel."""

    case: str
    image_files: tuple[Path, ...]
    mask_file: Path
    wm_file: Path | None
    outputs: dict[str, tuple[Path, ...]]


def plan_single(image: Path, output: Path, methods: Sequence[str], mask: Path | None,
                masks_dir: Path | None, wm: Path | None) -> list[FillJob]:
    """The one job of single-file mode (``-i t1.nii.gz --mask lesions.nii.gz -o filled.nii.gz``)."""
    if mask is None:
        raise LdiffError(f"{image}: is a single image, so give its lesion mask with --mask.")
    if masks_dir is not None:
        raise LdiffError("--masks DIR is for a folder of cases; for the single image give --mask FILE.")
    if wm is not None and wm.is_dir():
        raise LdiffError(f"{wm}: is a folder; for a single image, --wm must be a WM mask file.")
    if len(methods) == 1:
        outputs = {methods[0]: (output / image.name if output.is_dir() else output,)}
    else:
        if nifti_ending(output):
            raise LdiffError(f"{output}: with several methods -o must be a folder (one subfolder per method).")
        outputs = {method: (output / method / image.name,) for method in methods}
    ending = nifti_ending(image)
    case = image.name[: -len(ending)] if ending else image.stem
    return [FillJob(case, (image,), mask, wm, outputs)]


def plan_folder(folder: Path, output: Path, methods: Sequence[str], mask: Path | None,
                masks_dir: Path | None, wm: Path | None) -> list[FillJob]:
    """One job per ``{case}_0000`` image in ``folder``; every channel of the case is filled."""
    if mask is not None:
        raise LdiffError(
            f"{folder}: is a folder of cases, so give --masks DIR (or put {{case}}.nii.gz beside the images), not --mask."
        )
    if wm is not None and not wm.is_dir():
        raise LdiffError(f"{wm}: for a folder of cases, --wm must be a folder of {{case}}.nii.gz WM masks.")
    if masks_dir is not None and not masks_dir.is_dir():
        raise LdiffError(f"{masks_dir}: the --masks folder does not exist.")
    if nifti_ending(output):
        raise LdiffError(f"{output}: for a folder of cases, -o must be a folder, not a file name.")
    jobs = []
    for found in find_case_channels(folder):
        case, ending, files = found.case, found.ending, found.files
        mask_file = (masks_dir or folder) / f"{case}{ending}"
        if not mask_file.is_file():
            raise LdiffError(f"{mask_file}: lesion mask of case {case} not found.")
        wm_file = None
        if wm is not None:
            wm_file = wm / f"{case}{ending}"
            if not wm_file.is_file():
                raise LdiffError(f"{wm_file}: WM mask of case {case} not found.")
        base = {method: output / method if len(methods) > 1 else output for method in methods}
        outputs = {m: tuple(base[m] / f"{case}_{c}{ending}" for c, _ in files) for m in methods}
        jobs.append(FillJob(case, tuple(path for _, path in files), mask_file, wm_file, outputs))
    if not jobs:
        raise LdiffError(f"{folder}: contains no {{case}}_0000.nii.gz images to fill.")
    return jobs


def refuse_overwriting_inputs(input_path: Path, output: Path, jobs: Sequence[FillJob]) -> None:
    """Raise if ``output`` is the input itself or any output file would replace an input file."""
    if output.resolve() == input_path.resolve():
        raise LdiffError(f"{output}: -o is the same as -i; ldiff never overwrites its inputs, choose another output.")
    inputs = {}
    for job in jobs:
        for path in (*job.image_files, job.mask_file, *([job.wm_file] if job.wm_file else [])):
            inputs[path.resolve()] = path
    for job in jobs:
        for paths in job.outputs.values():
            for path in paths:
                source = inputs.get(path.resolve())
                if source is not None:
                    raise LdiffError(f"{path}: this output would overwrite the input {source}; choose another -o.")


def load_job(job: FillJob) -> tuple[list[sitk.Image], np.ndarray, np.ndarray | None]:
    """Read and check every file of ``job``: (channel images, lesion mask, WM mask or None)."""
    images = [read_image(path) for path in job.image_files]
    reference = Geometry.of(images[0])
    for path, image in zip(job.image_files[1:], images[1:]):
        mismatch = geometry_mismatch(reference, Geometry.of(image))
        if mismatch is not None:
            raise LdiffError(f"{path}: grid differs from the first channel {job.image_files[0]} ({mismatch}).")
    lesions = read_binary_mask(job.mask_file, reference, job.image_files[0], "lesion mask")
    wm = None if job.wm_file is None else read_binary_mask(job.wm_file, reference, job.image_files[0], "WM mask")
    return images, lesions, wm


def cast_to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``values`` in ``dtype``: integers rounded half to even and clipped to the type's range."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def case_seed(seed: int, case: str, channel: int) -> list[int]:
    """Seed of one case and channel: reproducible whatever other cases the folder holds, and different
    across channels so that the random fills of T1 and FLAIR are not the same noise pattern."""
    return [seed, zlib.crc32(case.encode("utf-8")), channel]


def fill_job(job: FillJob, dilate: int, seed: int, method_options: dict[str, dict]) -> list[Path]:
    """Fill every channel of ``job`` with every method; returns the paths written."""
    images, lesions, wm = load_job(job)
    spacing = images[0].GetSpacing()
    if dilate > 0:
        from ldiff.masks.morphology import dilate_mask

        lesions = dilate_mask(lesions, radius_voxels=dilate, spacing=spacing, shape="ball")
    if not lesions.any():
        logger.warning("%s: the lesion mask is empty; the output is the input unchanged.", job.mask_file)
    written = []
    for method, outputs in job.outputs.items():
        for channel, (image, output) in enumerate(zip(images, outputs)):
            array = sitk.GetArrayFromImage(image)
            if lesions.any():
                try:
                    filled = classic_fill(array, lesions, method, spacing, case_seed(seed, job.case, channel),
                                          wm, **method_options.get(method, {}))
                except ValueError as error:  # e.g. a mask covering the whole image leaves nothing to copy
                    raise LdiffError(f"{job.image_files[channel]}: {method} filling failed: {error}.") from None
                array = cast_to_dtype(filled, array.dtype)
            write_image_atomic(array_to_image(array, Geometry.of(image)), output)
            written.append(output)
    return written


def fill_classic_files(
    input_path: str | Path,
    output_path: str | Path,
    method: str = "all",
    mask: str | Path | None = None,
    masks_dir: str | Path | None = None,
    wm: str | Path | None = None,
    dilate: int = 0,
    seed: int = 0,
    method_options: dict[str, dict] | None = None,
    progress: bool = True,
) -> list[Path]:
    """Fill the lesions of one image or of a folder of cases with one or all classic methods.

    ``method``: one of ``CLASSIC_METHODS`` or ``"all"``. ``dilate``: grow the lesion mask by a ball
    of this many voxels (along the finest axis) before filling. ``seed``: base seed; each case and
    channel gets its own stream derived from it (see :func:`case_seed`). ``method_options``: per
    method keyword options, e.g. ``{"rim": {"hypointense_only": True}}``. Returns the written paths.
    Raises LdiffError, before writing anything, for any problem with the inputs.
    """
    from tqdm import tqdm

    input_path, output_path = Path(input_path), Path(output_path)
    if method != "all" and method not in CLASSIC_METHODS:
        raise LdiffError(f"unknown method {method!r}; choose one of {', '.join(CLASSIC_METHODS)} or all.")
    if dilate < 0:
        raise LdiffError(f"--dilate must be 0 or more voxels, got {dilate}.")
    methods = list(CLASSIC_METHODS) if method == "all" else [method]
    paths = [None if p is None else Path(p) for p in (mask, masks_dir, wm)]
    if paths[2] is not None and not paths[2].exists():
        raise LdiffError(f"{paths[2]}: WM mask not found.")
    if input_path.is_dir():
        jobs = plan_folder(input_path, output_path, methods, *paths)
    elif input_path.is_file():
        jobs = plan_single(input_path, output_path, methods, *paths)
    else:
        raise LdiffError(f"{input_path}: input not found.")
    refuse_overwriting_inputs(input_path, output_path, jobs)
    for job in jobs:  # every check before the first write
        load_job(job)
    written = []
    for job in tqdm(jobs, desc="classic fill", unit="case", disable=not progress):
        written.extend(fill_job(job, dilate, seed, method_options or {}))
    return written
