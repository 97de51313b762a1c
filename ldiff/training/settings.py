"""What a training run is: the settings that change it and the dataset, task and folders it works on.

:class:`TrainingSettings` is the single place for every training hyperparameter. Its defaults come
from the plan's configuration (steps, batch size, learning rate, warm-up) and from constants here;
a keyword argument of :func:`ldiff.training.train` (or a command-line option) overrides one without
any subclass. The resolved settings are written to ``training_settings.json`` in the results folder,
stored in every checkpoint and copied into ``model.json``.

:func:`resolve_run` checks everything that can be checked before a process is started, so that a
wrong dataset, task, configuration or fold is one sentence rather than a traceback from a worker.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ldiff import paths
from ldiff.errors import LdiffError
from ldiff.io import load_json
from ldiff.tasks import TASKS, Task, get_task

# ldiff.training.augmentation.AUGMENTATION_PRESETS's names (not imported: settings stay light for the CLI).
AUGMENTATION_NAMES = ("default", "strong", "strong_rim", "strong_blur")

logger = logging.getLogger("ldiff")

DEFAULT_SEED = 12345
# ldiff_train --slice-axes -> the views (ldiff.slice_views) training samples are drawn from
SLICE_AXES = {"axial": ("axial",), "all": ("axial", "coronal", "sagittal")}


@dataclass
class TrainingSettings:
    """Every value that changes what a run computes (plus a few that only change how fast).

    Attributes:
        num_training_steps: optimizer updates (plan: ``num_training_steps``).
        batch_size: samples per update over all processes (plan: ``batch_size``); each of W
            processes gets ``batch_size / W``.
        learning_rate: peak AdamW rate (plan: ``learning_rate``).
        warmup_steps: linear warm-up steps before the cosine decay (plan: ``warmup_steps``).
        seed: keys the data, the noise and the timesteps of every step; two runs with one seed match.
        weight_decay: AdamW's decoupled weight decay (torch's default, as the thesis).
        gradient_clip: maximum global gradient norm.
        ema_decay, ema_warmup: see ``ema.py``.
        log_every: steps per ``training_log.json`` entry (losses averaged over the window).
        checkpoint_every: steps between ``checkpoint_latest.pth`` writes (and progress.png refreshes).
        validate_every: steps between validations (0 = only at the end).
        num_validation_samples: held-out samples inpainted at each validation.
        validation_sampler: overrides of the task's validation sampling (``name``, ``num_inference_steps``,
            ``eta``, ``jump_length``, ``num_resamplings``); None: the task's own (see ``validation.py``).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        num_workers: data-loading worker processes per training process (0 = in-process).
        lesion_shapes_from: another preprocessed dataset whose real lesion shapes the filling tasks
            borrow for their masks (for healthy-only datasets).
        augmentation: ``"default"``, ``"strong"``, ``"strong_rim"`` or ``"strong_blur"`` (see ``ldiff.training.augmentation``);
            strong: intensity, contrast, noise and bias-field augmentation for models that must generalise;
            strong_rim: and a lesion's partial-volume rim beside filling masks half of the time;
            strong_blur: and a third of the samples smoothed in-plane, as resampled scans are.
        slice_axes: ``"axial"`` (slices along the plans' slice axis) or ``"all"`` (axial, coronal and
            sagittal slices drawn uniformly; see ``ldiff.slice_views``): a model trained on all can fill
            along each view at prediction and average them.
        pretrained_weights: fine-tuning: the absolute model folder whose ``checkpoint_final.pth``
            weights the run started from (``--pretrained-weights``; see ``pretrained.py``), or None.
        pretrained_model: filled in by ldiff from that folder: ``{"dataset_name", "task",
            "config_name", "step"}`` of the weights it started from, or None.
        lesion_level_cue: conditional synthesis only: the voided region tells the network the
            lesion's mean intensity per channel (``ldiff.tasks.Task``), so that prediction can ask
            for the darkness or brightness of a scan's own lesions (``--lesion-intensity``).
    """

    num_training_steps: int
    batch_size: int
    learning_rate: float
    warmup_steps: int
    seed: int = DEFAULT_SEED
    weight_decay: float = 0.01
    gradient_clip: float = 1.0
    ema_decay: float = 0.999
    ema_warmup: bool = True
    log_every: int = 10
    checkpoint_every: int = 500
    validate_every: int = 2500
    num_validation_samples: int = 4
    validation_sampler: dict[str, Any] | None = None
    device: str = "auto"
    num_workers: int = 2
    lesion_shapes_from: str | None = None
    augmentation: str = "default"
    slice_axes: str = "axial"
    pretrained_weights: str | None = None
    pretrained_model: dict[str, Any] | None = None
    lesion_level_cue: bool = False

    def __post_init__(self) -> None:
        positive = ("num_training_steps", "batch_size", "log_every", "checkpoint_every")
        problems = [f"{name} must be a positive integer, got {getattr(self, name)!r}"
                    for name in positive if not _is_int(getattr(self, name)) or getattr(self, name) < 1]
        problems += [f"{name} must be a non-negative integer, got {getattr(self, name)!r}"
                     for name in ("warmup_steps", "validate_every", "num_validation_samples", "num_workers", "seed")
                     if not _is_int(getattr(self, name)) or getattr(self, name) < 0]
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be positive, got {self.learning_rate!r}")
        if not 0 <= self.ema_decay < 1:
            problems.append(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.augmentation not in AUGMENTATION_NAMES:
            problems.append(f"augmentation must be one of {', '.join(AUGMENTATION_NAMES)}, got {self.augmentation!r}")
        if self.slice_axes not in SLICE_AXES:
            problems.append(f"slice_axes must be axial or all, got {self.slice_axes!r}")
        if self.pretrained_weights is not None and (not isinstance(self.pretrained_weights, str)
                                                    or not self.pretrained_weights):
            problems.append(f"pretrained_weights must be a model folder or None, got {self.pretrained_weights!r}")
        if not isinstance(self.lesion_level_cue, bool):
            problems.append(f"lesion_level_cue must be true or false, got {self.lesion_level_cue!r}")
        if problems:
            raise LdiffError("Invalid training settings: " + "; ".join(problems) + ".")

    @classmethod
    def from_plan(cls, configuration: dict[str, Any], saved: dict[str, Any] | None = None,
                  overrides: dict[str, Any] | None = None) -> "TrainingSettings":
        """The plan's values, then a resumed run's saved settings, then explicit overrides.

        Raises:
            LdiffError: for an unknown setting name or an invalid value.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted((set(saved or {}) | set(overrides or {})) - names)
        if unknown:
            raise LdiffError(f"Unknown training setting(s) {', '.join(unknown)}; valid ones are {', '.join(sorted(names))}.")
        values: dict[str, Any] = {key: configuration[key]
                                  for key in ("num_training_steps", "batch_size", "learning_rate", "warmup_steps")}
        values.update(saved or {})
        values.update({key: value for key, value in (overrides or {}).items() if value is not None})
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class TrainingRun:
    """The dataset, task, configuration and fold of a run, with its folders and the plan's pieces."""

    dataset_name: str
    preprocessed_folder: Path
    plans: dict[str, Any]
    dataset_json: dict[str, Any]
    task: Task
    config_name: str
    fold: int | str
    case_ids: tuple[str, ...]
    output_folder: Path

    @property
    def data_folder(self) -> Path:
        return self.preprocessed_folder / self.plans["data_identifier"]

    @property
    def configuration(self) -> dict[str, Any]:
        return self.plans["configurations"][self.config_name]

    @property
    def num_modalities(self) -> int:
        return len(self.plans["channel_names"])

    @property
    def network_config(self) -> dict[str, Any]:
        """The plan's network with the task's channels (the plan is made for the conditional tasks)."""
        return {**self.configuration["network"], "in_channels": self.task.in_channels(self.num_modalities),
                "out_channels": self.num_modalities}

    @property
    def identity(self) -> dict[str, Any]:
        return {"dataset_name": self.dataset_name, "task_name": self.task.name, "config_name": self.config_name,
                "fold": self.fold}


def results_folder(dataset_name: str, task_name: str, config_name: str, fold: int | str) -> Path:
    """``$ldiff_results/DatasetNNN_Name/TASK__CONFIG/fold_F``."""
    return paths.results_root() / dataset_name / f"{task_name}__{config_name}" / f"fold_{fold}"


def load_preprocessed(dataset: str | int) -> tuple[str, Path, dict, dict, list[str]]:
    """(name, folder, plans, dataset.json, case ids) of a preprocessed dataset; one sentence if it is not."""
    roots = [root for root in (paths.preprocessed_root(), paths.raw_root(must_exist=False)) if root.is_dir()]
    name = paths.find_dataset_name(dataset, roots)
    folder = paths.preprocessed_root() / name
    command = f"run `ldiff_plan_and_preprocess -d {paths.dataset_id_from_name(name)}` first"
    if not (folder / "plans.json").is_file():
        raise LdiffError(f"{name} has not been planned and preprocessed: {command}.")
    plans = load_json(folder / "plans.json")
    data_folder = folder / plans["data_identifier"]
    case_ids = paths.preprocessed_case_ids(data_folder)
    if not case_ids:
        raise LdiffError(f"{name} has plans but no preprocessed cases in {data_folder}: {command}.")
    dataset_json = load_json(folder / "dataset.json") if (folder / "dataset.json").is_file() else {}
    return name, folder, plans, dataset_json, case_ids


def any_case_has_lesions(data_folder: Path, case_ids: list[str]) -> bool:
    """Whether any case's preprocessed ``lesion`` array has a voxel set (stops at the first one)."""
    for case in case_ids:
        with np.load(data_folder / f"{case}.npz") as arrays:  # decompresses only the lesion member
            if "lesion" in arrays.files and arrays["lesion"].any():
                return True
    return False


def resolve_run(dataset: str | int, config_name: str, task_name: str, fold: int | str = 0) -> TrainingRun:
    """Check the dataset, configuration, task and fold, and make the cross-validation split exist.

    Raises:
        LdiffError: one sentence for an unknown task or configuration, a dataset that is not
            preprocessed, a bad fold, or a synthesis task on a dataset without lesions.
    """
    if task_name not in TASKS:
        raise LdiffError(f"Unknown task '{task_name}': choose one of {', '.join(TASKS)}.")
    task = get_task(task_name)
    name, folder, plans, dataset_json, case_ids = load_preprocessed(dataset)
    configurations = plans.get("configurations", {})
    if config_name not in configurations:
        raise LdiffError(f"Unknown configuration '{config_name}' for {name}: choose one of {', '.join(configurations)}.")
    fold = "all" if str(fold).strip().lower() == "all" else fold
    if isinstance(fold, str) and fold.strip().isdigit():
        fold = int(fold)
    from ldiff.training.splits import get_split

    try:
        get_split(folder, case_ids, fold)
    except ValueError as error:
        raise LdiffError(f"Cannot use fold {fold!r} of {name}: {error}") from None
    if task.needs_real_lesions and not any_case_has_lesions(folder / plans["data_identifier"], case_ids):
        raise LdiffError(f"{task.name} needs real lesions; {name} has none.")
    return TrainingRun(name, folder, plans, dataset_json, task, config_name, fold, tuple(case_ids),
                       results_folder(name, task.name, config_name, fold))


def borrowed_lesion_library(dataset: str, task: Task) -> Any:
    """The real lesion shapes of every case of another preprocessed dataset (``--lesion-shapes-from``)."""
    if not task.borrows_lesion_shapes:
        raise LdiffError(f"--lesion-shapes-from is for the filling tasks; {task.name} learns from its own dataset's lesions.")
    from ldiff.masks.library_cache import load_or_build_lesion_library

    name, folder, plans, _, case_ids = load_preprocessed(dataset)
    library = load_or_build_lesion_library(folder, plans["data_identifier"], case_ids)
    if library is None:
        raise LdiffError(f"--lesion-shapes-from {name}: that dataset has no lesions to borrow.")
    return library

