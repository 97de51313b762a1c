"""ldiff_train DATASET CONFIG TASK [-f FOLD] [--c]: train a diffusion model; thin wrapper over ``ldiff.training.trainer.train``.

The entry point lives beside the trainer rather than in ``ldiff/cli`` so that no command-line module but
this one reaches into training (prediction and the other stages use a trained model through its files).

Every option maps to one :class:`ldiff.training.settings.TrainingSettings` field (or to the launch:
``--c``, ``--num-gpus``, ``--num-processes``); options left out keep the plan's value, or, with
``--c``, the value the run was started with.
"""
from __future__ import annotations

import argparse

from ldiff.errors import run_command

# command-line option (argparse dest) -> TrainingSettings field
SETTING_OPTIONS = {
    "steps": "num_training_steps",
    "batch_size": "batch_size",
    "lr": "learning_rate",
    "warmup_steps": "warmup_steps",
    "seed": "seed",
    "device": "device",
    "num_workers": "num_workers",
    "checkpoint_every": "checkpoint_every",
    "validate_every": "validate_every",
    "validation_samples": "num_validation_samples",
    "log_every": "log_every",
    "lesion_shapes_from": "lesion_shapes_from",
    "augmentation": "augmentation",
    "slice_axes": "slice_axes",
    "pretrained_weights": "pretrained_weights",
    "lesion_level_cue": "lesion_level_cue",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ldiff_train",
        description="Train a diffusion model for one task and configuration of a preprocessed dataset. Results go "
                    "to $ldiff_results/DatasetNNN_Name/TASK__CONFIG/fold_F/.",
        epilog="Multi-GPU: `ldiff_train 1 2d cond_fill --num-gpus 4`, or `torchrun --nproc_per_node 4 "
               "$(which ldiff_train) 1 2d cond_fill` (also across nodes).",
    )
    parser.add_argument("dataset", help="dataset id (1, 001) or name (Dataset001_MSPhantom)")
    parser.add_argument("configuration", help="2d or p3d")
    parser.add_argument("task", help="cond_fill, uncond_fill, cond_synth or uncond_synth")
    parser.add_argument("-f", "--fold", default="0", help="cross-validation fold 0-4, or 'all' (default 0)")
    parser.add_argument("--c", dest="continue_training", action="store_true",
                        help="continue from checkpoint_latest.pth (model, EMA, optimizer, step, RNG states, log)")
    parser.add_argument("--steps", type=int, help="training steps (default: the plan's num_training_steps)")
    parser.add_argument("--batch-size", type=int, help="samples per step over all processes (default: the plan's)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: the plan's, 1e-4)")
    parser.add_argument("--warmup-steps", type=int, help="linear warm-up steps (default: the plan's)")
    parser.add_argument("--seed", type=int, help="seed of data, noise and timesteps (default 12345)")
    parser.add_argument("--device", help="auto (default), cpu or cuda")
    parser.add_argument("--num-workers", type=int, help="data-loading processes per training process (default 2; 0 = none)")
    parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoint_latest.pth writes (default 500)")
    parser.add_argument("--validate-every", type=int, help="steps between validations (default 2500; 0 = at the end only)")
    parser.add_argument("--validation-samples", type=int, help="held-out samples per validation (default 4)")
    parser.add_argument("--log-every", type=int, help="steps per training_log.json entry (default 10)")
    parser.add_argument("--lesion-shapes-from", metavar="DATASET",
                        help="filling tasks: borrow real lesion shapes from another preprocessed dataset")
    parser.add_argument("--augmentation", choices=("default", "strong", "strong_rim", "strong_blur"),
                        help="strong: wider intensity, contrast, gamma, noise and bias-field augmentation, for models "
                             "that must work on other scanners; strong_rim: and, for filling, a lesion's partial-volume "
                             "rim beside the training masks half of the time; strong_blur: and a third of the samples smoothed in-plane "
                             "as resampled scans are (default: default)")
    parser.add_argument("--slice-axes", choices=("axial", "all"),
                        help="all: draw training slices from axial, coronal and sagittal views, so that prediction can "
                             "fill along all three and average them (default: axial)")
    parser.add_argument("--pretrained-weights", metavar="MODEL_FOLDER",
                        help="fine-tune from a trained model folder (a results fold_F folder or a demo model such as "
                             "ldiff/demo_models/t1_cond_fill) of the same task, channels, network and prediction type; "
                             "optimizer and step start fresh")
    parser.add_argument("--lesion-level-cue", action="store_const", const=True,
                        help="cond_synth only: tell the network each lesion's mean intensity (in the voided region), so "
                             "that prediction can paint lesions as dark or bright as a scan's own "
                             "(ldiff_predict --lesion-intensity); fine-tunes from a model without it")
    launch = parser.add_mutually_exclusive_group()
    launch.add_argument("--num-gpus", type=int, help="data-parallel training on N local GPUs (implies --device cuda)")
    launch.add_argument("--num-processes", type=int,
                        help="data-parallel training in N local processes on --device (e.g. gloo on the CPU)")
    return parser


def main() -> None:
    arguments = build_parser().parse_args()

    def work() -> None:
        from ldiff.training.trainer import train

        overrides = {field: getattr(arguments, option) for option, field in SETTING_OPTIONS.items()
                     if getattr(arguments, option) is not None}
        num_processes = arguments.num_processes or 1
        if arguments.num_gpus is not None:
            num_processes = arguments.num_gpus
            overrides["device"] = "cuda"
        output = train(arguments.dataset, arguments.configuration, arguments.task, arguments.fold,
                       continue_training=arguments.continue_training, num_processes=num_processes, **overrides)
        print(f"Model and logs: {output}")

    run_command(work)


if __name__ == "__main__":
    main()
