"""``ldiff_predict`` on files: find the cases, check everything, predict, write outputs atomically.

Layouts (``ending`` is ``.nii.gz`` or ``.nii``), as ``ldiff_fill_classic`` uses them (the folder
discovery, mask checks, overwrite refusal and pixel-type policy are shared with it):

* Single case: ``-i t1.nii.gz [flair.nii.gz ...] --mask mask.nii.gz -o OUT`` with the files in the
  model's channel order. One file: ``OUT`` is the output file (or an existing folder that receives
  the input's name). Several files: ``OUT`` is a folder receiving each input's name.
* Folder: ``-i DIR`` holds ``{case}_0000{ending}``, ``{case}_0001{ending}``, ... (the model's
  channels) and each case's mask ``{case}{ending}`` (or ``--masks MASKS_DIR`` holds the masks);
  outputs are ``OUT/{case}_XXXX{ending}``, one per channel.

The mask holds the lesions to fill (filling models) or the regions where lesions are synthesised.

Safety: every case of the run is read and checked (files readable and complete, no NaN/Inf, one
grid for images and mask, binary mask, the model's number of channels) before the first output is
written; no output may replace an input (``-o`` equal to ``-i`` included). Outputs are written
atomically, so a killed run never leaves a half-written file and ``--continue`` can skip every case
whose outputs all exist. ``--num-parts K --part-id I`` processes the sorted cases ``I, I + K, ...``;
each case's noise is seeded from (``--seed``, case name), so a case's output does not depend on how
the cases are split.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import SimpleITK as sitk
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ldiff.errors import LdiffError
from ldiff.io.cases import (CheckedJobs, FillJob, case_seed, load_job, nifti_ending, read_binary_mask,
                            split_channel_name)
from ldiff.inference.model_loading import choose_model_folder
from ldiff.inference.predictor import Predictor, SamplingOptions
from ldiff.io import Geometry, write_image_atomic
from ldiff.inference.input_checks import input_warnings
from ldiff.inference.jobs import METHOD, plan_jobs

logger = logging.getLogger("ldiff")



@dataclass(frozen=True)
class ModelChoice:
    """Which model to use (``-m`` or the filters ``-d -t -c -f``), which checkpoint and device."""

    model_folder: str | Path | None = None
    dataset: str | None = None
    task: str | None = None
    config_name: str | None = None
    fold: str | None = None
    checkpoint: str = "final"
    device: str = "auto"


def select_part(jobs: Sequence[FillJob], num_parts: int, part_id: int) -> list[FillJob]:
    """Cases ``part_id, part_id + num_parts, ...`` of the sorted cases: disjoint parts covering all."""
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise LdiffError(f"--part-id must be in 0..{num_parts - 1} and --num-parts >= 1, got {part_id} and "
                         f"{num_parts}.")
    ordered = sorted(jobs, key=lambda job: job.case)
    return ordered[part_id::num_parts]


def outputs_of(job: FillJob) -> tuple[Path, ...]:
    return job.outputs[METHOD]


def is_finished(job: FillJob) -> bool:
    """Whether every output of the case exists (complete: outputs are only ever renamed into place)."""
    return all(path.is_file() for path in outputs_of(job))


def preview_path(job: FillJob) -> Path:
    """Beside the first output, named after it: ``-o filled.nii.gz`` gives ``filled_preview.png``, a case
    folder ``{case}_preview.png`` (its channel suffix dropped)."""
    first = outputs_of(job)[0]
    stem = first.name[: len(first.name) - len(nifti_ending(first) or first.suffix)]
    parts = split_channel_name(first.name)
    return first.parent / f"{parts[0] if parts else stem}_preview.png"


def check_channels(job: FillJob, predictor: Predictor, single: bool) -> None:
    """One sentence when a case does not hold exactly the model's channels."""
    model = predictor.model
    names, count = model.channel_names, model.num_channels
    expected = f"{count} channel(s) ({', '.join(names)})"
    if single:
        if len(job.image_files) != count:
            raise LdiffError(f"{job.image_files[0]}: -i got {len(job.image_files)} image(s) but the model "
                             f"{model.folder} expects {expected}; give one file per channel in that order or choose "
                             f"another model.")
        return
    ending = nifti_ending(job.image_files[0]) or ".nii.gz"
    present = {path.name for path in job.image_files}
    for channel in range(count):
        wanted = job.image_files[0].parent / f"{job.case}_{channel:04d}{ending}"
        if wanted.name not in present:
            raise LdiffError(f"{wanted}: channel {channel} ({names[channel] if channel < len(names) else '?'}) of case "
                             f"{job.case} is missing; the model {model.folder} expects {expected}.")
    if len(job.image_files) != count:
        raise LdiffError(f"{job.image_files[-1]}: case {job.case} has {len(job.image_files)} channels but the model "
                         f"{model.folder} expects {expected}; move the extra files away or choose another model.")


def write_case_outputs(case: str, images: Sequence[sitk.Image], paths: Sequence[Path]) -> list[Path]:
    """Write one case's channels; a case is written whole or not at all.

    Each file is written to a temporary name and renamed into place; when one cannot be written (disk
    full, no permission), the channels of this case already written are removed again (so --continue
    redoes the case) and the error is one sentence naming the file.
    """
    written: list[Path] = []
    for image, path in zip(images, paths):
        try:
            write_image_atomic(image, path)
        except (OSError, RuntimeError) as error:
            for done in written:
                done.unlink(missing_ok=True)
            reason = getattr(error, "strerror", None) or str(error).strip().splitlines()[-1][:120] or type(error).__name__
            raise LdiffError(f"{path}: cannot be written ({reason}); no output of case {case} is kept "
                             f"(free some space or choose another -o, then rerun with --continue).") from None
        written.append(Path(path))
    return written


def own_lesion_file(source: Path, job: FillJob) -> Path:
    """The mask of the case's own lesions: ``source`` itself, or ``source/{case}.nii.gz`` for a folder."""
    return source / f"{job.case}{nifti_ending(job.mask_file) or '.nii.gz'}" if source.is_dir() else source


def predict_case(predictor: Predictor, job: FillJob, seed: int, lesion_intensity: Sequence[float | str] | None,
                 preview: bool, progress: bool, loaded: tuple | None = None,
                 lesion_intensity_from: Path | None = None) -> list[Path]:
    """Predict one case and write its outputs (and preview); returns the paths written.

    ``loaded``: the case's files as :func:`load_job` returns them, when already read (else read here).
    ``lesion_intensity_from``: a mask (or a folder of ``{case}`` masks) of the scan's own lesions,
    whose mean intensity a synthesis model is asked to paint.
    """
    images, mask, _ = loaded if loaded is not None else load_job(job)
    own_lesions = None
    if lesion_intensity_from is not None:
        own_lesions = read_binary_mask(own_lesion_file(lesion_intensity_from, job), Geometry.of(images[0]),
                                       job.image_files[0], "own-lesion mask")
    target_spacing = predictor.model.description.get("target_spacing")
    if target_spacing:
        for message in input_warnings(str(job.image_files[0]), sitk.GetArrayViewFromImage(images[0]),
                                      images[0].GetSpacing(), target_spacing):
            logger.warning(message)
    result = predictor.predict(images, mask, seed=case_seed(seed, job.case), lesion_intensity=lesion_intensity,
                               mask_name=str(job.mask_file), image_name=str(job.image_files[0]), progress=progress,
                               lesion_intensity_from=own_lesions)
    written = write_case_outputs(job.case, result.images, outputs_of(job))
    if preview:
        from ldiff.inference.preview import write_preview

        arrays = [sitk.GetArrayViewFromImage(image) for image in images]
        outputs = [sitk.GetArrayViewFromImage(image) for image in result.images]
        title = f"{job.case}: {predictor.model.describe()}; {predictor.describe_sampling()}"
        written.append(write_preview(preview_path(job), arrays, mask, outputs, Geometry.of(images[0]),
                                     predictor.model.channel_names, title))
    return written


def predict_files(inputs: Sequence[str | Path], output: str | Path, model: ModelChoice = ModelChoice(),
                  options: SamplingOptions = SamplingOptions(), mask: str | Path | None = None,
                  masks_dir: str | Path | None = None, seed: int = 0, continue_run: bool = False,
                  preview: bool = False, num_parts: int = 1, part_id: int = 0,
                  lesion_intensity: Sequence[float | str] | None = None, progress: bool = True,
                  lesion_intensity_from: str | Path | None = None) -> list[Path]:
    """Fill (or synthesise) every case of ``inputs`` into ``output``; see the module docstring.

    Returns:
        the paths written (outputs and previews).

    Raises:
        LdiffError: one sentence for every problem with the inputs, the model or the options; all
            cases are checked before anything is written.
    """
    jobs = plan_jobs(inputs, output, mask, masks_dir)
    single = not (len(inputs) == 1 and Path(inputs[0]).is_dir())
    jobs = select_part(jobs, num_parts, part_id)
    if continue_run:
        finished = [job.case for job in jobs if is_finished(job)]
        if finished:
            logger.info("--continue: %d case(s) already done, skipped (%s)", len(finished), ", ".join(finished[:5])
                        + (" ..." if len(finished) > 5 else ""))
        jobs = [job for job in jobs if not is_finished(job)]
    if not jobs:
        logger.info("nothing to do: every case of this part is finished.")
        return []
    folder = choose_model_folder(model.model_folder, model.dataset, model.task, model.config_name, model.fold,
                                 model.checkpoint, num_input_channels=len(jobs[0].image_files))
    predictor = Predictor.from_folder(folder, model.checkpoint, model.device, task=model.task, options=options)
    for job in jobs:
        check_channels(job, predictor, single)
    # Every file readable, one grid, binary masks: before the first write (and kept, to read each file once).
    checked = CheckedJobs(jobs, progress=lambda items: tqdm(items, desc="checking inputs", unit="case", leave=False,
                                                          disable=not progress or len(jobs) < 2))
    # Logged only now, so that a refused run prints its one sentence and nothing else.
    logger.info("model: %s; sampling: %s", predictor.model.describe(), predictor.describe_sampling())
    task = predictor.model.task
    own = None if lesion_intensity_from is None else Path(lesion_intensity_from)
    if (lesion_intensity is not None or own is not None) and not predictor.takes_lesion_intensity:
        logger.warning("--lesion-intensity(-from) is for synthesis models (cond_synth with --lesion-contrast match, "
                       "uncond_synth); ignored for this %s model.", task.name)
        own = None
    if own is not None:
        if lesion_intensity is not None:
            raise LdiffError("Give --lesion-intensity or --lesion-intensity-from, not both.")
        missing = [own_lesion_file(own, job) for job in jobs if not own_lesion_file(own, job).is_file()]
        if missing:
            raise LdiffError(f"{missing[0]}: no such own-lesion mask (--lesion-intensity-from takes a mask file, or a "
                             f"folder of masks named like the cases).")
    written: list[Path] = []
    # Warnings (an empty mask, say) go on a line of their own, not into the progress bar's line.
    with logging_redirect_tqdm():
        for job in tqdm(jobs, desc="predicting", unit="case", disable=not progress):
            written.extend(predict_case(predictor, job, seed, lesion_intensity, preview, progress, checked.take(job),
                                        own))
    return written
