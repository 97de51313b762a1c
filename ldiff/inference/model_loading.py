"""Finding a trained model (or choosing one for the user) and loading it for prediction.

A model folder is what training writes: ``$ldiff_results/DatasetNNN_Name/TASK__CONFIG/fold_F/`` with
``model.json`` (everything needed to run the weights again: task, network, noise schedule, channel
names, normalisation, target spacing, mask dilation, patch size, stack depth) and
``checkpoint_final.pth`` (EMA weights) or, while training runs, ``checkpoint_latest.pth`` (whose
EMA weights are used too). Packaged demo models live in ``ldiff/demo_models/<name>/`` with the
same two files.

Automatic choice (no ``-m``): the candidates are every results fold folder holding the asked
checkpoint, plus the demo models, narrowed by whatever of dataset, task, configuration and fold
the user gave. One candidate is used. Without any of those options, a single model trained by the
user beats the demo models; with no trained model, the demo model whose channel count matches the
input and whose task is ``cond_fill`` is used (a demo model of another task only when asked for
with ``-t``). Anything still ambiguous is one sentence listing
the choices.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import ldiff
from ldiff import paths
from ldiff.diffusion import NoiseSchedule
from ldiff.errors import LdiffError
from ldiff.io import load_json
from ldiff.networks import build_network, downsampling_factor
from ldiff.tasks import DEFAULT_TASK_NAME, TASKS, Task, task_of_model
from ldiff.io.model_files import (
    CHECKPOINT_FILES,
    MODEL_JSON,
    channel_names_of,
    checkpoint_file,
    read_model_json,
    read_model_weights,
)

logger = logging.getLogger("ldiff")

def demo_models_root() -> Path:
    """Folder of the packaged demo models (may not exist)."""
    return Path(ldiff.__file__).resolve().parent / "demo_models"


@dataclass(frozen=True)
class ModelCandidate:
    """A model folder that could be used, with what ``model.json`` says about it."""

    folder: Path
    dataset_name: str
    task: str
    config_name: str
    fold: str
    channel_names: tuple[str, ...]
    demo: bool

    def describe(self) -> str:
        kind = "demo model" if self.demo else "model"
        return (f"{kind} {self.folder} ({self.dataset_name} {self.task} {self.config_name} fold {self.fold}, "
                f"channels {', '.join(self.channel_names)})")


def _candidate(folder: Path, demo: bool) -> ModelCandidate | None:
    try:
        description = read_model_json(folder)
    except LdiffError:
        logger.warning("%s: skipped, its %s is missing or unreadable", folder, MODEL_JSON)
        return None
    fold = folder.name[len("fold_"):] if folder.name.startswith("fold_") else "-"
    return ModelCandidate(folder, str(description.get("dataset_name", "?")), description["task"],
                          str(description.get("config_name", "?")), fold, channel_names_of(description), demo)


def find_models(checkpoint: str = "final") -> list[ModelCandidate]:
    """Every results fold folder and demo model folder holding ``checkpoint`` and a ``model.json``."""
    name = checkpoint_file(checkpoint)
    folders: list[tuple[Path, bool]] = []
    try:
        results: Path | None = paths.results_root(must_exist=False)
    except LdiffError:  # an installed ldiff with ldiff_results unset has no trained models: demo models only
        results = None
    if results is not None and results.is_dir():
        folders += [(path.parent, False) for path in sorted(results.glob(f"Dataset*/*__*/fold_*/{name}"))]
    demos = demo_models_root()
    if demos.is_dir():
        folders += [(path.parent, True) for path in sorted(demos.glob(f"*/{name}"))]
    candidates = [_candidate(folder, demo) for folder, demo in folders if (folder / MODEL_JSON).is_file()]
    return [candidate for candidate in candidates if candidate is not None]


def _matches_dataset(candidate: ModelCandidate, dataset: str) -> bool:
    text = str(dataset).strip()
    if text.isdigit():
        try:
            return paths.dataset_id_from_name(candidate.dataset_name) == int(text)
        except LdiffError:
            return False
    return candidate.dataset_name == text


def _fold_folder(folder: Path, fold: str | None) -> Path:
    """``folder`` itself when it holds model.json, else its one (or ``fold``'s) ``fold_*`` subfolder."""
    if (folder / MODEL_JSON).is_file():
        return folder
    if fold is not None and (folder / f"fold_{fold}" / MODEL_JSON).is_file():
        return folder / f"fold_{fold}"
    folds = sorted(path.parent for path in folder.glob(f"fold_*/{MODEL_JSON}"))
    if fold is None and len(folds) == 1:
        return folds[0]
    if len(folds) > 1 and fold is None:
        names = ", ".join(path.name for path in folds)
        raise LdiffError(f"{folder}: holds several folds ({names}); choose one with -f.")
    read_model_json(folder)  # raises the "not a model folder" sentence
    return folder


def choose_model_folder(model_folder: str | Path | None = None, dataset: str | None = None, task: str | None = None,
                        config_name: str | None = None, fold: str | None = None, checkpoint: str = "final",
                        num_input_channels: int | None = None) -> Path:
    """The model folder to use (see the module docstring for the rules).

    Args:
        model_folder: ``-m``: a fold folder, or a ``TASK__CONFIG`` folder whose fold ``-f`` picks.
        dataset, task, config_name, fold: ``-d``, ``-t``, ``-c``, ``-f`` filters for the automatic choice.
        checkpoint: ``final`` or ``latest``: only folders holding that checkpoint count.
        num_input_channels: the number of input images per case, to prefer a matching demo model.

    Raises:
        LdiffError: no model, or several, with the choices listed.
    """
    checkpoint_file(checkpoint)
    if task is not None and task not in TASKS:
        raise LdiffError(f"Unknown task '{task}': choose one of {', '.join(TASKS)}.")
    if model_folder is not None:
        folder = Path(model_folder).expanduser()
        if not folder.is_dir():
            raise LdiffError(f"{folder}: model folder not found.")
        return _fold_folder(folder, fold)
    candidates = [c for c in find_models(checkpoint)
                  if (dataset is None or _matches_dataset(c, dataset)) and (task is None or c.task == task)
                  and (config_name is None or c.config_name == config_name) and (fold is None or c.fold == str(fold))]
    if not any(value is not None for value in (dataset, task, config_name, fold)) and len(candidates) > 1:
        trained = [c for c in candidates if not c.demo]
        if len(trained) == 1:
            return trained[0].folder
        if not trained:
            # A demo model of another task is never picked for the user: -i/-o alone means "fill".
            fills = [c for c in candidates if c.task == DEFAULT_TASK_NAME]
            preferred = [c for c in fills if num_input_channels in (None, len(c.channel_names))]
            if len(preferred) == 1:
                return preferred[0].folder
    if len(candidates) == 1:
        return candidates[0].folder
    wanted = CHECKPOINT_FILES[checkpoint]
    if not candidates:
        raise LdiffError(f"No trained model with {wanted} matches: {paths.results_root(must_exist=False)} holds none "
                         f"(and no demo model fits); train one with ldiff_train or give its folder with -m.")
    raise LdiffError(f"{len(candidates)} trained models match; choose one with -m (or narrow with -d/-t/-c/-f): "
                     + "; ".join(candidate.describe() for candidate in candidates) + ".")


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A network ready to sample, with everything ``model.json`` says about it.

    ``network`` is in eval mode on ``device``; ``description`` is the model.json dict.
    """

    folder: Path
    description: dict[str, Any]
    task: Task
    network: nn.Module
    schedule: NoiseSchedule
    device: torch.device
    checkpoint: str

    @property
    def channel_names(self) -> tuple[str, ...]:
        return channel_names_of(self.description)

    @property
    def num_channels(self) -> int:
        return len(self.channel_names) or int(self.description["network"]["out_channels"])

    @property
    def is_pseudo3d(self) -> bool:
        return self.description["network"]["architecture"] == "unet_p3d"

    @property
    def stack_depth(self) -> int:
        """Slices per sample: the stack depth for p3d, 1 for 2d."""
        return int(self.description.get("stack_depth", 1)) if self.is_pseudo3d else 1

    @property
    def patch_size(self) -> tuple[int, int]:
        """(H, W) of the training windows (the whole slice size for models without patches)."""
        size = self.description.get("patch_size") or self.description["slice_size"]
        return int(size[0]), int(size[1])

    @property
    def downsampling_factor(self) -> int:
        return downsampling_factor(self.description["network"])

    @property
    def mask_dilation(self) -> dict[str, Any]:
        """``{"radius_mm", "shape"}`` of the plan's mask dilation (no dilation when the plan has none)."""
        dilation = self.description.get("mask_dilation") or {}
        spacing = self.description.get("target_spacing") or [1.0, 1.0, 1.0]
        radius_mm = dilation.get("radius_mm")
        if radius_mm is None:
            radius_mm = float(dilation.get("radius_voxels", 0)) * min(float(s) for s in spacing)
        return {"radius_mm": float(radius_mm), "shape": dilation.get("shape", "ball")}

    @property
    def preprocessing_config(self) -> dict[str, Any]:
        """What :func:`ldiff.preprocessing.preprocess_images` needs, as preprocessing used it for training."""
        description = self.description
        return {"target_spacing": description["target_spacing"], "normalization": description["normalization"]}

    def describe(self) -> str:
        d = self.description
        name, config = d.get("dataset_name", "?"), d.get("config_name", "?")
        return f"{name} {d['task']} {config} ({self.folder}, {self.checkpoint})"


def load_model(folder: str | Path, checkpoint: str = "final", device: str | torch.device = "cpu",
               expected_task: str | None = None) -> LoadedModel:
    """Load a model folder's weights into its network.

    Args:
        folder: a fold folder with ``model.json`` and the checkpoint.
        checkpoint: ``"final"`` (``checkpoint_final.pth``) or ``"latest"`` (the EMA weights of
            ``checkpoint_latest.pth``, for a run still training).
        device: a torch device (resolve ``auto`` before).
        expected_task: refuse a model trained for another task (``-t``).

    Raises:
        LdiffError: one sentence for a missing or damaged file, another task, or weights that do
            not fit the described network.
    """
    folder = Path(folder)
    checkpoint_file(checkpoint)
    description = read_model_json(folder)
    if expected_task is not None and description["task"] != expected_task:
        raise LdiffError(f"{folder}: holds a {description['task']} model, not {expected_task}; "
                         f"drop -t or choose a {expected_task} model.")
    description, weights, _ = read_model_weights(folder, checkpoint)
    try:
        network = build_network(description["network"])
        network.load_state_dict(weights)
    except (KeyError, RuntimeError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise LdiffError(f"{folder / checkpoint_file(checkpoint)}: its weights do not fit the network of {MODEL_JSON} "
                         f"({reason[:200]}).") from None
    torch_device = torch.device(device)
    network.eval().to(torch_device)
    if torch_device.type == "cpu":
        use_channels_last_weights(network)
    schedule = NoiseSchedule.from_dict(description["diffusion"])
    return LoadedModel(folder, description, task_of_model(description), network, schedule, torch_device, checkpoint)


def use_channels_last_weights(network: nn.Module) -> None:
    """Store every 2D convolution's weights channels-last, in place.

    On a CPU, oneDNN then runs the convolutions in its channels-last kernels: the demo model's forward
    pass on 8 crops of 144 x 128 took 6.5 instead of 8.5 us per voxel, same values to 1e-5
    (documentation/results/network_cost/, made by benchmarks/network_batch_cost.py).
    """
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)


@functools.lru_cache(maxsize=4)
def _read_fingerprint(path: str, modified_ns: int) -> dict[str, Any]:
    """One read per file version: prediction asks for the fingerprint several times per case (lesion
    levels, the contrast targets, the sampling description). Callers must not modify the result."""
    return load_json(Path(path))


def load_fingerprint(model: LoadedModel) -> dict[str, Any] | None:
    """The training dataset's ``fingerprint.json``: beside the model, else in ``$ldiff_preprocessed``; or None.
    The result is shared between calls (read once per file version): read it, do not modify it."""
    places = [model.folder / "fingerprint.json"]
    dataset_name = model.description.get("dataset_name")
    if dataset_name:
        try:
            places.append(paths.preprocessed_root() / dataset_name / "fingerprint.json")
        except LdiffError:
            pass
    for place in places:
        if place.is_file():
            try:
                return _read_fingerprint(str(place.resolve()), place.stat().st_mtime_ns)
            except (OSError, ValueError):
                logger.warning("%s: unreadable, lesion intensities fall back to --lesion-intensity defaults", place)
    return None
