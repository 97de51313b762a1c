"""The files of a trained model, one owner for their format: ``model.json`` and the checkpoints.

A model folder (``$ldiff_results/DatasetNNN_Name/TASK__CONFIG/fold_F/`` or a shipped
``ldiff/demo_models/<name>/``) holds:

- ``model.json``: everything needed to run the weights again (task, network, noise schedule, channel
  names, normalisation and the training data's intensity landmarks, target spacing, mask dilation,
  patch size, stack depth, training settings).
  It is the one description of the model: ``checkpoint_final.pth`` carries a copy (so a lone
  checkpoint still says what it is), and reading checks that the two agree on task and network.
- ``checkpoint_final.pth``: ``format_version``, ``kind="final"``, ``step``, the EMA weights as
  ``state_dict`` and ``model`` (the copy of model.json).
- ``checkpoint_latest.pth`` (while training; written by ``ldiff.training.checkpoints``): among
  others ``ema["weights"]``, the averaged weights that the final checkpoint would hold.

Every file is written to a temporary name and renamed into place, and checkpoints load with
``torch.load(..., weights_only=True)``. Training writes through this module and prediction and
fine-tuning read through it; neither needs the other.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ldiff.errors import LdiffError
from ldiff.io.atomic import atomic_path, load_json, save_json_atomic


CHECKPOINT_FORMAT_VERSION = 1
MODEL_VERSION = 1
MODEL_JSON = "model.json"
LATEST_NAME = "checkpoint_latest.pth"
FINAL_NAME = "checkpoint_final.pth"
CHECKPOINT_FILES = {"final": FINAL_NAME, "latest": LATEST_NAME}


# ---------------------------------------------------------------------------------------- model.json
def model_description(plans: dict, dataset_json: dict, dataset_name: str, task: Any, config_name: str,
                      network_config: dict, settings: dict, intensity_landmarks: dict | None = None) -> dict[str, Any]:
    """The content of ``model.json``: everything a trained model needs to be run again.

    Args:
        plans: the dataset's plans.json.
        dataset_json: the dataset's dataset.json.
        task: the :class:`ldiff.tasks.Task` trained.
        network_config: the plan's network config with the task's in/out channels.
        settings: TrainingSettings.to_dict().
        intensity_landmarks: the training cases' mean brain percentiles after normalisation
            (:func:`ldiff.preprocessing.standardisation.training_landmarks`), which prediction
            standardises a new scan to; None leaves them out.
    """
    configuration = plans["configurations"][config_name]
    return {
        "ldiff_model_version": MODEL_VERSION,
        "dataset_name": dataset_name,
        "task": task.name,
        "conditional": task.conditional,
        "paints_lesions": task.paints_lesions,
        "lesion_level_cue": task.lesion_level_cue,
        "config_name": config_name,
        "network": network_config,
        "diffusion": plans["diffusion"],
        "channel_names": plans.get("channel_names", dataset_json.get("channel_names")),
        "data_identifier": plans["data_identifier"],
        "target_spacing": plans.get("target_spacing"),
        "orientation": plans.get("orientation"),
        "normalization": plans.get("normalization"),
        "mask_dilation": plans.get("mask_dilation"),
        "training_masks": plans.get("training_masks"),
        "wm_channel": plans.get("wm_channel"),
        "slice_axis": configuration.get("slice_axis", 0),
        "slice_size": configuration["slice_size"],
        "patch_size": configuration.get("patch_size", configuration["slice_size"]),
        "stack_depth": configuration["stack_depth"],
        "labels": dataset_json.get("labels"),
        "training": settings,
        **({"intensity_landmarks": intensity_landmarks} if intensity_landmarks else {}),
    }


def write_model_json(description: dict[str, Any], folder: Path) -> Path:
    """Write ``folder/model.json`` atomically; returns its path."""
    path = Path(folder) / MODEL_JSON
    save_json_atomic(description, path)
    return path


def read_model_json(folder: Path) -> dict[str, Any]:
    """The folder's ``model.json``; one sentence when it is missing, unreadable or not a model description."""
    from ldiff.tasks import TASKS  # the task names; imported here so reading JSON does not start torch early

    path = Path(folder) / MODEL_JSON
    if not path.is_file():
        raise LdiffError(f"{folder}: is not a model folder (no {MODEL_JSON}); give a fold folder such as "
                         f".../Dataset001_MSPhantom/cond_fill__p3d/fold_0.")
    try:
        description = load_json(path)
    except (OSError, ValueError) as error:
        raise LdiffError(f"{path}: cannot be read as JSON ({type(error).__name__}); retrain or restore the file."
                         ) from None
    if not isinstance(description, dict) or description.get("task") not in TASKS or "network" not in description:
        raise LdiffError(f"{path}: is not an ldiff model description (no known task or network).")
    return description


def channel_names_of(description: dict[str, Any]) -> tuple[str, ...]:
    """The model's channel names in channel order (plans store a list, dataset.json a {"0": name} dict)."""
    names = description.get("channel_names") or []
    if isinstance(names, dict):
        names = [names[key] for key in sorted(names, key=int)]
    return tuple(str(name) for name in names)


# ---------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a killed run never leaves half a checkpoint."""
    with atomic_path(path) as temporary:
        torch.save(state, temporary)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a damaged or foreign file is one clear sentence."""
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # pickle, zip and weights-only errors all mean "not a usable checkpoint"
        raise LdiffError(f"{path} cannot be read as an ldiff checkpoint ({type(error).__name__}).") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise LdiffError(f"{path} is not an ldiff checkpoint of format version {CHECKPOINT_FORMAT_VERSION}.")
    return checkpoint


def final_checkpoint_state(step: int, ema_weights: dict[str, torch.Tensor], description: dict[str, Any]
                           ) -> dict[str, Any]:
    """Assemble ``checkpoint_final.pth``: the EMA weights and the model description they belong to."""
    return {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "kind": "final",
        "step": int(step),
        "state_dict": {name: value.detach().cpu() for name, value in ema_weights.items()},
        "model": description,
    }


def checkpoint_file(checkpoint: str) -> str:
    """File name of ``final`` or ``latest``; one sentence for anything else."""
    if checkpoint not in CHECKPOINT_FILES:
        raise LdiffError(f"Unknown checkpoint '{checkpoint}': choose final or latest.")
    return CHECKPOINT_FILES[checkpoint]


def read_model_weights(folder: Path, checkpoint: str = "final") -> tuple[dict[str, Any], dict[str, torch.Tensor], int]:
    """(description from model.json, the EMA weights, their step) of a model folder.

    ``checkpoint``: ``"final"`` or ``"latest"`` (the EMA weights of a run still training).

    Raises:
        LdiffError: one sentence for a missing or damaged file, or a final checkpoint whose own copy
            of the description names another task or network than model.json.
    """
    folder = Path(folder)
    description = read_model_json(folder)
    path = folder / checkpoint_file(checkpoint)
    if not path.is_file():
        other = "latest" if checkpoint == "final" else "final"
        raise LdiffError(f"{path}: not found; the training may not have finished (try -chk {other}).")
    state = load_checkpoint(path)
    try:
        weights = state["state_dict"] if checkpoint == "final" else state["ema"]["weights"]
    except (KeyError, TypeError):
        raise LdiffError(f"{path}: holds no {checkpoint} weights; give a folder written by ldiff_train.") from None
    copy = state.get("model") if checkpoint == "final" else None  # in "latest", "model" holds raw weights
    if isinstance(copy, dict):
        differing = [key for key in ("task", "network") if copy.get(key) != description.get(key)]
        if differing:
            raise LdiffError(f"{path}: its {' and '.join(differing)} differ from {folder / MODEL_JSON}; the two files "
                             f"come from different trainings, restore the matching model.json.")
    return description, weights, int(state.get("step", 0))
