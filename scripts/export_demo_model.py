"""Package a trained model as a demo model shipped inside ldiff (``ldiff/demo_models/NAME/``).

    python scripts/export_demo_model.py ldiff_results/Dataset002_MSPhantomT1/cond_fill__2d/fold_all t1_cond_fill \
        --command "ldiff_train 2 2d cond_fill -f all ..."

Writes ``model.json``, ``checkpoint_final.pth`` (the EMA weights stored as float16 to halve the size;
the predictor loads them into the float32 network), ``training_log.json``, ``progress.png`` and
``TRAINING.md`` (the command that trained it), and for a model that takes a lesion intensity the
lesion and brain intensities of its training data's fingerprint (``fingerprint.json``). Every file is written atomically.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from ldiff import paths
from ldiff.io import atomic_path, load_json, save_json_atomic
from ldiff.tasks import task_of_model
from ldiff.training.checkpoints import final_checkpoint_state, load_checkpoint

DEMO_ROOT = Path(__file__).resolve().parent.parent / "ldiff" / "demo_models"


def training_fingerprint(description: dict) -> dict | None:
    """The part of the training dataset's fingerprint that prediction reads (the median intensities of
    brain and lesions, per channel, and the lesions' contrast by volume), for models that take a lesion intensity or whose lesion contrast
    prediction matches (conditional synthesis); None for the others."""
    task = task_of_model(description)
    if not (task.takes_lesion_intensity or task.can_match_lesion_contrast):
        return None
    source = paths.preprocessed_root() / description["dataset_name"] / "fingerprint.json"
    if not source.is_file():
        raise SystemExit(f"{source} is missing: a synthesis model needs its training data's lesion intensities.")
    fingerprint = load_json(source)
    return {key: fingerprint[key] for key in ("dataset_name", "channel_names", "intensity_median_of_cases",
                                              "lesion_contrast_by_volume") if key in fingerprint}


def export(model_folder: Path, name: str, command: str, checkpoint: str) -> Path:
    target = DEMO_ROOT / name
    target.mkdir(parents=True, exist_ok=True)
    state = load_checkpoint(model_folder / f"checkpoint_{checkpoint}.pth")
    description = load_json(model_folder / "model.json")
    if checkpoint == "final":
        weights, step = state["state_dict"], state["step"]
    else:
        weights, step = state["ema"]["weights"], state["step"]
    half = {key: value.half() if value.is_floating_point() else value for key, value in weights.items()}
    with atomic_path(target / "checkpoint_final.pth") as temporary:
        torch.save(final_checkpoint_state(step, half, description), temporary)
    save_json_atomic(description, target / "model.json")
    fingerprint = training_fingerprint(description)
    if fingerprint is not None:  # the lesion intensity a synthesis model paints by default travels with it
        save_json_atomic(fingerprint, target / "fingerprint.json")
    for extra in ("training_log.json", "progress.png"):
        if (model_folder / extra).is_file():
            with atomic_path(target / extra) as temporary:
                shutil.copyfile(model_folder / extra, temporary)
    with atomic_path(target / "TRAINING.md") as temporary:
        temporary.write_text(
            f"# Demo model `{name}`\n\nTask `{description['task']}`, configuration `{description.get('config_name')}`, "
            f"channels {', '.join(description['channel_names'])}, trained on {description.get('dataset_name')} "
            f"for {step + 1} steps (EMA weights, stored as float16).\n\nTrained with:\n\n```bash\n{command}\n```\n"
            f"\n`training_log.json` and `progress.png` beside this file are that run's log.\n", encoding="utf-8")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_folder", type=Path)
    parser.add_argument("name")
    parser.add_argument("--command", required=True, help="the command(s) that trained the model, for TRAINING.md")
    parser.add_argument("--checkpoint", default="final", choices=("final", "latest"))
    arguments = parser.parse_args()
    print(export(arguments.model_folder, arguments.name, arguments.command, arguments.checkpoint))


if __name__ == "__main__":
    main()
