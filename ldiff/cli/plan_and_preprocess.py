"""ldiff_plan_and_preprocess -d 001: verify, fingerprint, plan and preprocess a raw dataset."""
from __future__ import annotations

import argparse
import json

from ldiff.errors import run_command
from ldiff.errors import LdiffError


def parse_overrides(items: list[str]) -> dict:
    """``key=value`` pairs; values are JSON when they parse as JSON (numbers, lists), else strings."""
    overrides = {}
    for item in items:
        if "=" not in item:
            raise LdiffError(f"--override '{item}' is not of the form key=value (e.g. 2d.batch_size=8).")
        key, text = item.split("=", 1)
        try:
            overrides[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key.strip()] = text
    return overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ldiff_plan_and_preprocess",
        description="Verify a raw dataset, write its fingerprint and plans (2d and p3d), and preprocess it.",
    )
    parser.add_argument("-d", "--dataset", required=True, help="dataset id (1, 001) or name (Dataset001_MSPhantom)")
    parser.add_argument("-np", "--num-processes", type=int, default=None, help="worker processes (default: CPU count, at most 8)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where training will run: cuda measures the batch size on the GPU, cpu estimates it")
    parser.add_argument("--gpu-memory-target", type=float, default=None, metavar="GB",
                        help="GPU memory the training batch must fit in (default 8)")
    parser.add_argument("--ram-target", type=float, default=None, metavar="GB",
                        help="RAM the training batch must fit in when training on the CPU (default 4)")
    parser.add_argument("--override", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override planned values, e.g. 2d.batch_size=8 p3d.stack_depth=6 target_spacing=[2,2,2]")
    parser.add_argument("--no-preprocess", action="store_true", help="write fingerprint and plans only")
    return parser


def main() -> None:
    arguments = build_parser().parse_args()

    def work() -> None:
        from ldiff.preprocessing.plan_and_preprocess import plan_and_preprocess

        memory = arguments.gpu_memory_target if arguments.device == "cuda" else arguments.ram_target
        if arguments.device == "auto":
            import torch

            memory = arguments.gpu_memory_target if torch.cuda.is_available() else arguments.ram_target
        output = plan_and_preprocess(arguments.dataset, arguments.num_processes, parse_overrides(arguments.override),
                                     arguments.device, memory, preprocess=not arguments.no_preprocess)
        print(f"Plans: {output / 'plans.json'}")

    run_command(work)


if __name__ == "__main__":
    main()
