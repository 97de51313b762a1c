"""Checkpoints: written atomically, loadable with ``torch.load(path, weights_only=True)``.

``checkpoint_latest.pth`` (resuming) holds::

    format_version, kind="latest", dataset_name, task_name, config_name, fold,
    step           number of completed updates (the next update is made at this step)
    model          the network's state dict (not the DDP wrapper's)
    ema            ExponentialMovingAverage.state_dict()
    optimizer      AdamW state dict
    lr_schedule    WarmupCosineSchedule.state_dict()
    rng            torch CPU/CUDA, numpy and Python random states as tensors and lists
    training_log   TrainingLog.state_dict(): the log up to ``step`` (no duplicates after a resume)
    settings       TrainingSettings.to_dict()

``checkpoint_final.pth`` (inference) and ``model.json`` are described, written and read by
:mod:`ldiff.io.model_files`, which also saves and loads every checkpoint file.

Everything is a tensor, dict, list, tuple, int, float, bool, str or None, so the files load without
unpickling arbitrary objects: the numpy and Python RNG states are converted to plain values here.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ldiff.errors import LdiffError
# The file format has one owner (ldiff.io.model_files); training writes through it.
from ldiff.io.model_files import (
    CHECKPOINT_FORMAT_VERSION,
    FINAL_NAME,
    LATEST_NAME,
    final_checkpoint_state,
    load_checkpoint,
    model_description,
    save_checkpoint,
)

__all__ = ["CHECKPOINT_FORMAT_VERSION", "FINAL_NAME", "LATEST_NAME", "capture_rng_state", "check_checkpoint_matches",
           "final_checkpoint_state", "latest_checkpoint_state", "load_checkpoint", "model_description",
           "restore_rng_state", "save_checkpoint"]



# ---------------------------------------------------------------------------------------- RNG states
def capture_rng_state() -> dict[str, Any]:
    """Every global random state the process uses, as tensors and plain lists.

    Returns:
        ``{"torch": ByteTensor, "cuda": [ByteTensor per device], "numpy": {...}, "python": [...]}``.
    """
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "position": int(position), "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": [int(version), [int(value) for value in python_state], gauss_next],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Undo :func:`capture_rng_state`; CUDA states are restored only when the device count matches."""
    torch.set_rng_state(state["torch"].cpu())
    if torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([value.cpu() for value in state["cuda"]])
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].cpu().numpy().astype(np.uint32), numpy_state["position"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    version, python_state, gauss_next = state["python"]
    random.setstate((version, tuple(python_state), gauss_next))


# ---------------------------------------------------------------------------------------- files
def check_checkpoint_matches(checkpoint: dict[str, Any], path: Path, dataset_name: str, task_name: str,
                             config_name: str) -> None:
    """Refuse to resume from a checkpoint written for another dataset, task or configuration."""
    found = (checkpoint.get("dataset_name"), checkpoint.get("task_name"), checkpoint.get("config_name"))
    wanted = (dataset_name, task_name, config_name)
    if found != wanted:
        raise LdiffError(
            f"{path} belongs to {found[0]} {found[1]} {found[2]}, not {wanted[0]} {wanted[1]} {wanted[2]}: "
            f"remove --c or train in that checkpoint's own results folder."
        )


def latest_checkpoint_state(*, step: int, model_state: dict, ema_state: dict, optimizer_state: dict,
                            lr_schedule_state: dict, training_log_state: dict, settings: dict,
                            identity: dict[str, Any]) -> dict[str, Any]:
    """Assemble the content of ``checkpoint_latest.pth`` (see the module docstring).

    ``identity`` holds ``dataset_name``, ``task_name``, ``config_name`` and ``fold``.
    """
    return {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "kind": "latest",
        **identity,
        "step": int(step),
        "model": model_state,
        "ema": ema_state,
        "optimizer": optimizer_state,
        "lr_schedule": lr_schedule_state,
        "rng": capture_rng_state(),
        "training_log": training_log_state,
        "settings": settings,
    }
