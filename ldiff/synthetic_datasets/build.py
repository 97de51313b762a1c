"""Write an nnU-Net raw dataset of healthy scans with synthetic lesions (``ldiff_synthesize_dataset``).

For every healthy scan (:mod:`ldiff.synthetic_datasets.inputs`) and ``k`` in ``0..per_scan-1`` the
case ``{scan}_syn{k:02d}`` gets its own lesion mask, proposed as ``ldiff_make_lesion_masks`` does
(:func:`ldiff.masks.lesion_mask_files.propose_mask`: count, load, real shapes, tissue map or T1-derived
white matter), and its own lesions painted into it by a synthesis model
(:meth:`ldiff.inference.predictor.Predictor.predict`). Both draws are seeded with
``case_seed(seed, case id)``: the mask is the one ``ldiff_make_lesion_masks --seed SEED`` draws for
a scan of that name, the lesions the ones ``ldiff_predict --seed SEED`` paints for it.

Output ``$ldiff_raw/DatasetNNN_Name/``: ``imagesTr/{case}_XXXX.nii.gz`` (the model's channels, in its
order, on the healthy scan's grid and pixel type), ``labelsTr/{case}.nii.gz`` (uint8 0/1, see
:data:`LABEL_POLICY`), ``healthyTr/`` (the healthy scan itself: the lesion-free ground truth) and
``tissueTr/`` (the scan's tissue map, when it has one), hard links where the file system allows,
``dataset.json`` (with an ``ldiff_synthesis`` entry saying how the data were made) and
``synthesis.json`` (per case: source scan, seed, lesions drawn, label voxels). ``add_real`` adds a
dataset's training cases as ``real_{case}``; ``healthyTr`` is then written only if that dataset has one
too, since a dataset holds a healthy twin for every case or for none.

Resumable: every file is written atomically and the record after every case, so a killed run leaves
only complete files; ``continue_run`` redoes exactly the cases with a file missing (their seeds
do not depend on the other cases, so the result is the uninterrupted run's). ``dataset.json`` is
written last, and the finished dataset must pass :func:`ldiff.dataset.verify.verify_dataset`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ldiff import paths
from ldiff.dataset.raw import TISSUE_LABELS, RawDataset
from ldiff.synthetic_datasets.inputs import (SYNTHESIS_TASKS, SourceCase, channel_file_count, check_headers,
                                            choose_synthesis_model, real_cases, scans_from_dataset, scans_from_folder)
from ldiff.errors import LdiffError
from ldiff.io import atomic_path, load_json, save_json_atomic
from ldiff.masks.lesion_mask_files import MaskRequest, validate_request

if TYPE_CHECKING:  # pragma: no cover
    from ldiff.inference.predictor import SamplingOptions

logger = logging.getLogger("ldiff")

RECORD_NAME = "synthesis.json"
FILE_ENDING = ".nii.gz"
REAL_PREFIX = "real_"
LABEL_POLICY = (
    "labelsTr holds the lesion mask the lesions were painted from, limited to the voxels the model changed (the "
    "mask inside the brain). The model repaints that mask dilated by its plan's mask_dilation (and limited to the "
    "brain), exactly as it was trained: there the repainted region was a real lesion dilated the same way and its "
    "label the undilated lesion, the rim being the lesion's partial-volume border that real labels call "
    "background. So label and image relate as in the real training data; the rim is painted but labelled 0, and "
    "every voxel outside the dilated mask is the healthy scan bit for bit.")


@dataclass(frozen=True)
class SynthesisRequest:
    """How to make the dataset. ``masks``: the lesion-mask settings (count or load_ml, library_source,
    radius_mm, periventricular_mm; its seed, channel and tissue are ignored); ``options``: sampling
    (None: the model's task defaults); ``add_real``: a dataset id or name whose training cases join;
    ``lesion_intensity``: what a model that takes one is told (``ldiff_predict --lesion-intensity``),
    None for its default."""

    per_scan: int = 1
    seed: int = 0
    masks: MaskRequest = MaskRequest()
    model_folder: str | Path | None = None
    checkpoint: str = "final"
    device: str = "auto"
    options: "SamplingOptions | None" = None
    add_real: str | None = None
    continue_run: bool = False
    progress: bool = True
    lesion_intensity: tuple[str, ...] | None = None


@dataclass(frozen=True)
class OutputCase:
    """One case of the new dataset: ``source`` is read, written as ``case``; ``index`` is k (None: a real case)."""

    case: str
    source: SourceCase
    index: int | None

    def files(self, folder: Path, channel_names: tuple[str, ...], healthy: bool) -> list[Path]:
        """Every file the case owns in the new dataset; the case is done when all exist."""
        channels = range(len(channel_names))
        found = [folder / "imagesTr" / f"{self.case}_{c:04d}{FILE_ENDING}" for c in channels]
        if healthy:
            found += [folder / "healthyTr" / f"{self.case}_{c:04d}{FILE_ENDING}" for c in channels]
        if self.source.tissue_file is not None:
            found.append(folder / "tissueTr" / f"{self.case}{FILE_ENDING}")
        return found + [folder / "labelsTr" / f"{self.case}{FILE_ENDING}"]


def link_or_copy(source: Path, target: Path) -> None:
    """Put ``source`` at ``target`` atomically: a hard link where possible, else a copy (another ending: converted)."""
    if not source.name.endswith(FILE_ENDING):
        from ldiff.io import read_image, write_image_atomic

        write_image_atomic(read_image(source), target)
        return
    with atomic_path(target) as temporary:
        temporary.unlink()
        try:
            os.link(source, temporary)
        except OSError:
            shutil.copy2(source, temporary)


def prepare_output(output_name: str, continue_run: bool) -> Path:
    """``$ldiff_raw/output_name``, refusing a bad name, a taken id and (without --continue) a non-empty folder."""
    if Path(output_name).name != output_name:
        raise LdiffError(f"'{output_name}': -o is a dataset name like Dataset101_Synthetic, not a path "
                         f"(it is written under $ldiff_raw).")
    number = paths.dataset_id_from_name(output_name)
    root = paths.raw_root()
    taken = sorted(p.name for p in root.glob(f"Dataset{number:03d}_*") if p.name != output_name)
    if taken:
        raise LdiffError(f"{root / taken[0]}: already uses the dataset id {number:03d}; choose another number for -o.")
    folder = root / output_name
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        if not continue_run:
            raise LdiffError(f"{folder}: already exists and is not empty; choose another name, remove it, or add "
                             f"--continue to finish an interrupted run.")
        if not (folder / RECORD_NAME).is_file():
            raise LdiffError(f"{folder}: holds no {RECORD_NAME}, so ldiff_synthesize_dataset did not write it; "
                             f"--continue will not write into it.")
    return folder


def _checkpoint_sha256(model_folder: Path, checkpoint: str) -> str:
    from ldiff.io.model_files import checkpoint_file

    digest = hashlib.sha256()
    with open(model_folder / checkpoint_file(checkpoint), "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _mask_settings(masks: MaskRequest) -> dict[str, Any]:
    from ldiff.masks.lesion_masks import DEFAULT_COUNT

    count = DEFAULT_COUNT if masks.count is None and masks.load_ml is None else masks.count
    return {"count": count, "load_ml": masks.load_ml, "library_source": masks.library_source,
            "radius_mm": list(masks.radius_mm), "periventricular_mm": masks.periventricular_mm}


def _t1_name(channel_names: tuple[str, ...]) -> str | None:
    """The T1-weighted channel, where white matter is found for scans without a tissue map."""
    return next((name for name in channel_names if "t1" in name.casefold()), None)


def plan_cases(scans: list[SourceCase], real: list[SourceCase], per_scan: int) -> list[OutputCase]:
    """The synthetic cases (``{scan}_syn{k:02d}``) and the real ones (``real_{case}``); ids must be unique."""
    width = max(2, len(str(per_scan - 1)))
    planned = [OutputCase(f"{scan.case}_syn{k:0{width}d}", scan, k) for scan in scans for k in range(per_scan)]
    planned += [OutputCase(REAL_PREFIX + case.case, case, None) for case in real]
    seen: set[str] = set()
    for entry in planned:
        if entry.case in seen:
            raise LdiffError(f"{next(iter(entry.source.files.values()))}: its new case id {entry.case} is not "
                             f"unique; rename the case.")
        seen.add(entry.case)
    return planned


@dataclass(frozen=True)
class SynthesisPlan:
    """Everything checked before the first write: the model, its channels, the cases and where they come from."""

    model_folder: Path
    task: str
    channel_names: tuple[str, ...]
    cases: list[OutputCase]
    healthy: bool
    healthy_scans: str
    added_real: str | None


def plan_synthesis(request: SynthesisRequest, healthy_folder: Path | None, source_dataset: str | None,
                   channel_names: list[str] | None, tissue_folder: Path | None) -> SynthesisPlan:
    """Choose the model, find and check the healthy scans and the real cases (headers only), name the cases."""
    def dataset(identifier: str) -> RawDataset:
        return RawDataset(paths.raw_root() / paths.find_dataset_name(identifier, [paths.raw_root()]))

    source = dataset(source_dataset) if source_dataset is not None else None
    available = source.channel_names if source is not None else channel_names
    count = source.num_channels if source is not None else channel_file_count(healthy_folder)
    model_folder = choose_synthesis_model(request.model_folder, request.checkpoint, available, count)
    from ldiff.io.model_files import channel_names_of, read_model_json

    description = read_model_json(model_folder)
    if description["task"] not in SYNTHESIS_TASKS:
        raise LdiffError(f"{model_folder}: holds a {description['task']} model, which cannot synthesise lesions; give a "
                         f"{' or '.join(SYNTHESIS_TASKS)} model with -m.")
    names = channel_names_of(description)
    if source is not None:
        scans, where = scans_from_dataset(source), source.folder / "dataset.json"
        kind = "healthyTr" if (source.folder / "healthyTr").is_dir() else "imagesTr cases with an empty label"
        described = f"{source.name} ({kind})"
    else:
        scans, where = scans_from_folder(healthy_folder, channel_names or list(names), tissue_folder), healthy_folder
        described = str(Path(healthy_folder).resolve())
    real_source = dataset(request.add_real) if request.add_real is not None else None
    real = real_cases(real_source) if real_source is not None else []
    scans = [scan.in_channels(names, where, model_folder) for scan in scans]
    real = [case.in_channels(names, real_source.folder / "dataset.json", model_folder) for case in real]
    for scan in scans:
        check_headers(scan)
        if scan.tissue_file is None and _t1_name(names) is None:
            raise LdiffError(f"{where}: case {scan.case} has no tissue map and the model's channels "
                             f"({', '.join(names)}) hold no T1-weighted one to find the white matter in; give tissue "
                             f"maps (--tissue).")
    for case in real:
        check_headers(case)
    healthy = all(case.healthy_files is not None for case in real)
    if not healthy:
        logger.info("%s has no healthyTr, so the new dataset has none either (every case has one or none)",
                    real_source.name)
    return SynthesisPlan(Path(model_folder), description["task"], names, plan_cases(scans, real, request.per_scan),
                         healthy, described, None if real_source is None else real_source.name)


def synthesize_dataset(output_name: str, request: SynthesisRequest, healthy_folder: Path | None = None,
                       source_dataset: str | None = None, channel_names: list[str] | None = None,
                       tissue_folder: Path | None = None) -> Path:
    """Write the dataset ``output_name`` (module docstring) and return its folder.

    Args:
        output_name: ``DatasetNNN_Name``, created under ``$ldiff_raw``.
        request: what to make and how.
        healthy_folder, source_dataset: the healthy scans (exactly one): a folder of ``{case}_XXXX``
            files, or a raw dataset id or name.
        channel_names: the folder's channels in file order (default: the model's channels in order).
        tissue_folder: the folder's tissue maps ``{case}.nii.gz``.

    Raises:
        LdiffError: one sentence for any bad input, before anything is written.
    """
    if (healthy_folder is None) == (source_dataset is None):
        raise LdiffError("give the healthy scans either as a folder (-i) or as a raw dataset (-d), not both.")
    if source_dataset is not None and (channel_names or tissue_folder):
        raise LdiffError("--channel-names and --tissue describe an -i folder; a dataset (-d) names its own channels.")
    if request.per_scan < 1:
        raise LdiffError(f"--per-scan must be at least 1, got {request.per_scan}.")
    masks = dataclasses.replace(request.masks, seed=request.seed, channel=0, tissue=None)
    validate_request(masks)
    if masks.method == "transfer":
        raise LdiffError("patient mask transfer is not available here; use ldiff_make_lesion_masks and ldiff_predict.")
    output = prepare_output(output_name, request.continue_run)
    plan = plan_synthesis(request, healthy_folder, source_dataset, channel_names, tissue_folder)

    from ldiff.inference.predictor import Predictor, SamplingOptions
    from ldiff.masks.lesion_mask_files import load_lesion_library

    library = load_lesion_library(masks.library_source) if masks.library_source is not None else None
    predictor = Predictor.from_folder(plan.model_folder, request.checkpoint, request.device,
                                      options=request.options or SamplingOptions())
    if request.lesion_intensity is not None and not predictor.takes_lesion_intensity:
        raise LdiffError(f"--lesion-intensity is for synthesis models (cond_synth matching the lesion contrast, "
                         f"uncond_synth); {plan.model_folder} holds a {predictor.model.task.name} model that takes none.")
    logger.info("model: %s; sampling: %s; %d healthy scan(s) x %d, %d real case(s)", predictor.model.describe(),
                predictor.describe_sampling(), len({e.source.case for e in plan.cases if e.index is not None}),
                request.per_scan, sum(e.index is None for e in plan.cases))
    settings = {
        "model": str(plan.model_folder.resolve()), "task": plan.task, "checkpoint": request.checkpoint,
        "checkpoint_sha256": _checkpoint_sha256(plan.model_folder, request.checkpoint),
        "sampling": predictor.describe_sampling(), "mask_dilation": predictor.model.mask_dilation,
        "channel_names": list(plan.channel_names), "seed": request.seed, "per_scan": request.per_scan,
        "masks": _mask_settings(masks), "healthy_scans": plan.healthy_scans,
        "tissue_maps": None if tissue_folder is None else str(Path(tissue_folder).resolve()),
        "added_real": plan.added_real,
        "lesion_intensity": None if request.lesion_intensity is None else list(request.lesion_intensity),
    }
    record = _start_record(output, settings)
    from ldiff.synthetic_datasets.painting import run_cases

    run_cases(output, plan.cases, plan.channel_names, plan.healthy, predictor, masks, library, record,
              request.progress, request.lesion_intensity)
    return _finish(output, plan.cases, plan.channel_names, settings, plan.healthy)


def _start_record(output: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The run's record: a fresh one, or (--continue) the existing one after checking it was made the same way."""
    path = output / RECORD_NAME
    settings = json.loads(json.dumps(settings))  # as it reads back from disk, for the comparison
    if path.is_file():
        existing = load_json(path)
        before = existing.get("settings", {})
        changed = sorted(key for key in set(before) | set(settings) if before.get(key) != settings.get(key))
        if changed:
            raise LdiffError(f"{path}: was written with other settings ({', '.join(changed)} differ); --continue "
                             f"needs the command of the interrupted run.")
        return existing
    record = {"settings": settings, "label_policy": LABEL_POLICY, "cases": {}, "real_cases": {}}
    save_json_atomic(record, path)
    return record


def _finish(output: Path, planned: list[OutputCase], names: tuple[str, ...], settings: dict[str, Any],
            healthy: bool) -> Path:
    """Write dataset.json and verify the dataset as ldiff_plan_and_preprocess will."""
    from ldiff.dataset.verify import verify_dataset

    synthetic = sum(entry.index is not None for entry in planned)
    dataset_json: dict[str, Any] = {
        "channel_names": {str(index): name for index, name in enumerate(names)},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": len(planned),
        "file_ending": FILE_ENDING,
        "description": (f"{synthetic} healthy scan(s) with lesions synthesised by ldiff_synthesize_dataset"
                        + (f", and {len(planned) - synthetic} real case(s) of {settings['added_real']}"
                           if settings["added_real"] else "") + "; see ldiff_synthesis and synthesis.json."),
        "ldiff_synthesis": {**settings, "label_policy": LABEL_POLICY, "record": RECORD_NAME,
                            "healthyTr": "the healthy scan of each case" if healthy else None},
    }
    if (output / "tissueTr").is_dir():
        dataset_json["tissue_labels"] = TISSUE_LABELS
    save_json_atomic(dataset_json, output / "dataset.json")
    problems = verify_dataset(RawDataset(output))
    if problems:
        raise LdiffError(f"{output}: the written dataset fails verification ({len(problems)} problem(s)), the first: "
                         f"{problems[0]}")
    return output
