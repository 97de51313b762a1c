"""The cases of an ``ldiff_predict`` run, planned from paths alone (no image is read, no torch is
imported), so that the command refuses a wrong path within a fraction of a second."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ldiff.errors import LdiffError
from ldiff.io.cases import FillJob, nifti_ending, plan_folder, refuse_overwriting_inputs, split_channel_name

METHOD = "ldiff"  # the single key of FillJob.outputs


def plan_single(images: Sequence[Path], output: Path, mask: Path | None, masks_dir: Path | None) -> list[FillJob]:
    """The one job of single-case mode; see the module docstring."""
    if mask is None:
        raise LdiffError(f"{images[0]}: is a single image, so give its mask with --mask.")
    if masks_dir is not None:
        raise LdiffError("--masks DIR is for a folder of cases; for single images give --mask FILE.")
    if len(images) == 1:
        outputs = (output / images[0].name if output.is_dir() else output,)
    else:
        if nifti_ending(output):
            raise LdiffError(f"{output}: with several input images -o must be a folder (each output keeps its "
                             f"input's name).")
        outputs = tuple(output / image.name for image in images)
    if len({path.name for path in outputs}) != len(outputs):
        raise LdiffError(f"{output}: two inputs share the file name {images[0].name}; rename one of them.")
    ending = nifti_ending(images[0]) or ""
    case = images[0].name[: len(images[0].name) - len(ending)] if ending else images[0].stem
    parts = split_channel_name(images[0].name)
    return [FillJob(parts[0] if parts else case, tuple(images), mask, None, {METHOD: outputs})]


def plan_jobs(inputs: Sequence[str | Path], output: str | Path, mask: str | Path | None = None,
              masks_dir: str | Path | None = None) -> list[FillJob]:
    """Every case of the run (sorted by case name), with its input, mask and output files; checks
    that inputs exist and that no output would replace an input."""
    paths = [Path(path) for path in inputs]
    output = Path(output)
    mask_path, masks_path = (None if value is None else Path(value) for value in (mask, masks_dir))
    if not paths:
        raise LdiffError("-i needs an image, several images (one per channel) or a folder of cases.")
    for path in paths:
        if not path.exists():
            raise LdiffError(f"{path}: input not found.")
    if mask_path is not None and not mask_path.is_file():
        raise LdiffError(f"{mask_path}: mask not found.")
    if len(paths) == 1 and paths[0].is_dir():
        jobs = plan_folder(paths[0], output, [METHOD], mask_path, masks_path, None)
    elif any(path.is_dir() for path in paths):
        raise LdiffError("-i takes either one folder of cases or image files, not a mix.")
    else:
        jobs = plan_single(paths, output, mask_path, masks_path)
    for path in paths:
        refuse_overwriting_inputs(path, output, jobs)
    return jobs
