"""Finding the cases of a folder of ``{case}_XXXX`` NIfTI files, and reading their masks with checks.

Folders follow the nnU-Net naming: ``{case}_0000{ending}`` is a case's first channel,
``{case}_0001{ending}`` its second, and so on (``ending`` is ``.nii.gz`` or ``.nii``); the case's
masks are ``{case}{ending}``. The command-line tools that take such folders (classic filling,
prediction, evaluation) find their cases, plan their outputs, refuse to overwrite inputs and read
their masks here, so they agree on what a case is.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from ldiff.errors import LdiffError
from ldiff.io.images import Geometry, geometry_mismatch, read_image

NIFTI_ENDINGS = (".nii.gz", ".nii")
_CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})(?P<ending>\.nii\.gz|\.nii)$")


@dataclass(frozen=True)
class CaseChannels:
    """The channel files of one case in a folder: ``files`` holds (channel, path) in channel order."""

    case: str
    ending: str
    files: tuple[tuple[str, Path], ...]


def nifti_ending(path: Path) -> str | None:
    """``.nii.gz`` or ``.nii`` if ``path`` ends with it, else None."""
    return next((ending for ending in NIFTI_ENDINGS if path.name.endswith(ending)), None)


def split_channel_name(name: str) -> tuple[str, str, str] | None:
    """(case, channel, ending) of a ``{case}_XXXX.nii[.gz]`` file name, or None for any other name."""
    match = _CHANNEL_FILE.match(name)
    return (match["case"], match["channel"], match["ending"]) if match else None


def find_case_channels(folder: Path) -> list[CaseChannels]:
    """Every case of ``folder`` that has a first channel ``{case}_0000``, sorted by case name.

    A group without ``_0000`` is not a case: it is e.g. a mask whose own name ends in ``_NNNN``.
    """
    groups: dict[tuple[str, str], list[tuple[str, Path]]] = {}
    for path in sorted(folder.iterdir()):
        parts = split_channel_name(path.name)
        if parts is not None and path.is_file():
            case, channel, ending = parts
            groups.setdefault((case, ending), []).append((channel, path))
    return [
        CaseChannels(case, ending, tuple(sorted(files)))
        for (case, ending), files in sorted(groups.items())
        if any(channel == "0000" for channel, _ in files)
    ]


def read_binary_mask(path: Path, reference: Geometry, reference_file: Path, kind: str) -> np.ndarray:
    """Read a mask, check its grid against the image's and that it holds only 0 and 1; bool (Z, Y, X)."""
    image = read_image(path)
    mismatch = geometry_mismatch(reference, Geometry.of(image))
    if mismatch is not None:
        raise LdiffError(f"{path}: {kind} grid differs from the image {reference_file} ({mismatch}).")
    values = sitk.GetArrayViewFromImage(image)
    binary = (values == 0) | (values == 1)
    if not binary.all():
        example = values[~binary].flat[0]
        raise LdiffError(f"{path}: {kind} is not binary (found the value {example}); it must hold only 0 and 1.")
    return values == 1


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


def read_channels(image_files: Sequence[Path]) -> list[sitk.Image]:
    """Every channel file of one case, read and checked to share the first one's grid."""
    images = [read_image(path) for path in image_files]
    reference = Geometry.of(images[0])
    for path, image in zip(image_files[1:], images[1:]):
        mismatch = geometry_mismatch(reference, Geometry.of(image))
        if mismatch is not None:
            raise LdiffError(f"{path}: grid differs from the first channel {image_files[0]} ({mismatch}).")
    return images


def load_job(job: FillJob) -> tuple[list[sitk.Image], np.ndarray, np.ndarray | None]:
    """Read and check every file of ``job``: (channel images, lesion mask, WM mask or None)."""
    images = read_channels(job.image_files)
    reference = Geometry.of(images[0])
    lesions = read_binary_mask(job.mask_file, reference, job.image_files[0], "lesion mask")
    wm = None if job.wm_file is None else read_binary_mask(job.wm_file, reference, job.image_files[0], "WM mask")
    return images, lesions, wm


def case_seed(seed: int, case: str, *keys: int) -> int:
    """The seed of one case (and optional further keys, e.g. a channel): a function of the run's seed and
    the case's name only, so a case's random draws do not depend on which other cases a run holds or
    how the run is split. Every command that draws per case (prediction, classic fillers, lesion masks,
    benchmarks) uses it."""
    from ldiff.seeds import keyed_seed

    return keyed_seed(seed, zlib.crc32(case.encode("utf-8")), *keys)


# Cases read for the up-front check are kept for the real pass while they fit in this many bytes, so
# each file is read once in the usual runs (one case, or a few); beyond it they are read again.
KEEP_CHECKED_BYTES = 2 * 2**30


class CheckedJobs:
    """Reads and checks every job before anything is written, then hands each job's files out once.

    ``progress``: a tqdm-style wrapper (or None) for the checking loop. :meth:`take` returns what
    :func:`load_job` returns, from memory when the check kept it (at most ``keep_bytes`` of voxels),
    else read again.
    """

    def __init__(self, jobs: Sequence[FillJob], keep_bytes: int | None = None, progress=None) -> None:
        self._kept: dict[str, tuple[list[sitk.Image], np.ndarray, np.ndarray | None]] = {}
        keep_bytes = KEEP_CHECKED_BYTES if keep_bytes is None else keep_bytes
        held = 0
        for job in (progress(jobs) if progress else jobs):
            loaded = load_job(job)
            size = sum(_image_bytes(image) for image in loaded[0]) + loaded[1].nbytes
            if held + size <= keep_bytes:
                self._kept[job.case] = loaded
                held += size

    def take(self, job: FillJob) -> tuple[list[sitk.Image], np.ndarray, np.ndarray | None]:
        kept = self._kept.pop(job.case, None)
        return kept if kept is not None else load_job(job)


def _image_bytes(image: sitk.Image) -> int:
    return image.GetNumberOfPixels() * image.GetNumberOfComponentsPerPixel() * image.GetSizeOfPixelComponent()


def cast_to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``values`` in ``dtype``: integers rounded half to even and clipped to the type's range."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)
