"""Fine-tuning: ``ldiff_train ... --pretrained-weights MODEL_FOLDER`` (nnU-Net's ``-pretrained_weights``).

``MODEL_FOLDER`` is a trained model folder, a results fold folder
``$ldiff_results/DatasetNNN_Name/TASK__CONFIG/fold_F/`` or a shipped demo model such as
``ldiff/demo_models/t1_cond_fill/``: its ``model.json`` says what the weights are and its
``checkpoint_final.pth`` holds them (the EMA weights, as float32 or, in the demo models, float16).

Before anything starts, :func:`resolve_pretrained` checks that the model fits the run: the same task,
the same channel names in the same order, the same network (architecture and every argument of the
``network`` block, defaults filled in; a 2d model may also start a p3d run of the same blocks, its slice
convolutions starting as the identity) and the same ``diffusion.prediction_type``. Each disagreement
is named in one sentence. The run records the folder and what it held in two settings,
``pretrained_weights`` (the absolute folder) and ``pretrained_model`` (dataset, task, configuration
and step of those weights), which travel like every setting into ``training_settings.json``, the
checkpoints and the ``training`` block of ``model.json``.

The trainer then calls :func:`load_pretrained_weights` on its freshly built network, before the EMA is
made from that network, so the EMA starts from the same weights. Optimizer, learning-rate schedule,
EMA warm-up and step start fresh: a fine-tune is a new run. ``--c`` of a fine-tune resumes from its own
``checkpoint_latest.pth`` and never reloads the pretrained weights.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from ldiff.errors import LdiffError
from ldiff.io.model_files import FINAL_NAME, channel_names_of, load_checkpoint, read_model_json, read_model_weights
from ldiff.networks.config import NetworkConfig
from ldiff.networks.pseudo3d import load_2d_weights, slice_conv_parameter_names
from ldiff.training.settings import TrainingRun

logger = logging.getLogger("ldiff")

OPTION = "--pretrained-weights"
# The settings filled in here; a caller's values for them are replaced (or, on --c, kept from the run).
SETTING_NAMES = ("pretrained_weights", "pretrained_model")


def resolve_pretrained(folder: str | Path, run: TrainingRun) -> dict[str, Any]:
    """Check the model folder against ``run``; returns the settings that record it.

    Returns:
        ``{"pretrained_weights": absolute folder, "pretrained_model": {"dataset_name", "task",
        "config_name", "step"}}``.

    Raises:
        LdiffError: one sentence for a missing folder or file, an unreadable one, or every way in
            which the model does not fit the run.
    """
    folder = Path(folder).expanduser().resolve()
    if folder == run.output_folder.resolve():
        raise LdiffError(f"{OPTION} {folder}: is this run's own results folder, whose checkpoints the run would "
                         f"overwrite; copy the model elsewhere first, or continue it with --c.")
    description = _read_description(folder)
    path = folder / FINAL_NAME
    if not path.is_file():
        raise LdiffError(f"{OPTION} {folder}: has no {FINAL_NAME}; give a model whose training finished.")
    problems = mismatches(description, run)
    if problems:
        raise LdiffError(f"{OPTION} {folder} does not fit {run.dataset_name} {run.task.name} {run.config_name}: "
                         + "; ".join(problems) + " (fine-tuning needs the same task, channels, network and "
                         "prediction type: plan with `ldiff_plan_and_preprocess --override` to match).")
    _warn_about_schedule(folder, description, run)
    step = load_checkpoint(path).get("step")
    return {"pretrained_weights": str(folder),
            "pretrained_model": {"dataset_name": description.get("dataset_name"), "task": description["task"],
                                 "config_name": description.get("config_name"),
                                 "step": None if step is None else int(step)}}


def mismatches(description: dict[str, Any], run: TrainingRun) -> list[str]:
    """How a ``model.json`` disagrees with the run, one phrase per disagreement (empty: it fits)."""
    problems = []
    if description["task"] != run.task.name:
        problems.append(f"its task is {description['task']}, not {run.task.name}")
    theirs, ours = channel_names_of(description), channel_names_of({"channel_names": run.plans["channel_names"]})
    if theirs != ours:
        problems.append(f"its channels are {', '.join(theirs) or 'unnamed'}, not {', '.join(ours)}")
    try:
        their_network = NetworkConfig.from_dict(description["network"]).to_dict()
    except (TypeError, ValueError) as error:
        problems.append(f"its network block is not valid ({error})")
    else:
        our_network = NetworkConfig.from_dict(run.network_config).to_dict()
        # In and out channels follow from the task and channels: named above when those differ.
        skip = {"in_channels", "out_channels"} if problems else set()
        if is_2d_to_pseudo3d(their_network["architecture"], our_network["architecture"]):
            skip.add("architecture")  # a p3d network starts from the matching 2d weights
        differing = [f"{key} {their_network[key]} instead of {our_network[key]}" for key in our_network
                     if key not in skip and their_network[key] != our_network[key]]
        if differing:
            problems.append("its network has " + ", ".join(differing))
    their_prediction = (description.get("diffusion") or {}).get("prediction_type")
    our_prediction = run.plans["diffusion"].get("prediction_type")
    if their_prediction != our_prediction:
        problems.append(f"it predicts {their_prediction}, not {our_prediction} (diffusion.prediction_type)")
    return problems


def is_2d_to_pseudo3d(theirs: str, ours: str) -> bool:
    """A 2d model may start a p3d run: its slice convolutions begin as the identity, so the p3d network
    first computes exactly what the 2d one did, slice by slice, and learns to look across slices."""
    return theirs == "unet2d" and ours == "unet_p3d"


def load_pretrained_weights(network: nn.Module, folder: str | Path) -> int:
    """Load the folder's ``checkpoint_final.pth`` weights into ``network``, cast to its dtypes.

    2d weights into a pseudo-3D network (same blocks otherwise) go through
    :func:`ldiff.networks.load_2d_weights`: the slice convolutions keep their identity start.

    Returns:
        The step the weights were saved at.

    Raises:
        LdiffError: a missing or unreadable file, or weights that do not fit the network.
    """
    path = Path(folder) / FINAL_NAME
    if not path.is_file():
        raise LdiffError(f"{OPTION} {folder}: has no {FINAL_NAME}; give a model whose training finished.")
    _, weights, step = read_model_weights(Path(folder), "final")  # torch.load(..., weights_only=True)
    reference = network.state_dict()
    cast = {name: value.to(reference[name].dtype) if name in reference and value.is_floating_point() else value
            for name, value in weights.items()}
    slice_convs = slice_conv_parameter_names(network)
    try:
        if slice_convs and not slice_convs & set(cast):
            load_2d_weights(network, cast)
            logger.info("starting the pseudo-3D network from 2d weights (slice convolutions start as the identity)")
        else:
            network.load_state_dict(cast)
    except (RuntimeError, ValueError) as error:
        reason = str(error).strip().splitlines()[0]
        raise LdiffError(f"{path}: its weights do not fit this run's network ({reason[:200]}).") from None
    logger.info("fine-tuning from %s (weights of step %d)", folder, step)
    return step


def pretrained_settings(requested: str | Path | None, run: TrainingRun, resuming: bool,
                        saved: dict[str, Any] | None) -> dict[str, Any]:
    """The ``pretrained_*`` settings of a run: checked and filled in for a new run, kept on ``--c``.

    Args:
        requested: ``--pretrained-weights`` (None: train from random weights).
        resuming: the run continues from its ``checkpoint_latest.pth``.
        saved: the resumed run's settings.
    """
    if resuming:
        kept = {name: (saved or {}).get(name) for name in SETTING_NAMES}
        if requested is not None and str(Path(requested).expanduser().resolve()) != kept["pretrained_weights"]:
            logger.warning("%s %s is ignored: --c continues %s from its own checkpoint", OPTION, requested,
                           run.output_folder)
        return kept
    if requested is None:
        return {name: None for name in SETTING_NAMES}
    return resolve_pretrained(requested, run)


def _read_description(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise LdiffError(f"{OPTION} {folder}: folder not found; give a trained model folder such as "
                         f".../Dataset001_Name/cond_fill__2d/fold_0 or ldiff/demo_models/t1_cond_fill.")
    try:
        return read_model_json(folder)
    except LdiffError as error:
        raise LdiffError(f"{OPTION} {error}") from None


def _warn_about_schedule(folder: Path, description: dict[str, Any], run: TrainingRun) -> None:
    """Other noise-schedule values may differ (the network still fits), but the start is then worse."""
    theirs, ours = description.get("diffusion") or {}, run.plans["diffusion"]
    differing = sorted(key for key in ours if key != "prediction_type" and theirs.get(key) != ours[key])
    if differing:
        logger.warning("%s %s was trained with another noise schedule (%s differ); fine-tuning starts further "
                       "from a good model", OPTION, folder, ", ".join(differing))
