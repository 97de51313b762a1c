"""One command that checks ldiff on a CUDA GPU in a few minutes, and runs at tiny sizes on a CPU.

    python benchmarks/gpu_check.py -o gpu_check                 # on a GPU machine: 1 mm, about 5 minutes
    python benchmarks/gpu_check.py -o gpu_check --tiny          # anywhere (CI): 4 mm volumes, seconds

It needs ldiff's requirements (SimpleITK, nilearn, ...) on the GPU machine, and nothing else.

In temporary raw/preprocessed/results folders it:

1. builds a small example dataset (``ldiff_make_example``; 1 mm, 4 training + 1 test case; ``--tiny``:
   4 mm, 2 + 1);
2. plans it: on CUDA the batch size of each configuration is measured (real bf16 forward/backward
   passes against the memory target), on a CPU it is estimated; the plan says which;
3. trains ``cond_fill`` in ``2d`` and ``p3d`` for ``--steps`` steps each (bf16 autocast on CUDA) and
   records seconds per step, slices per second and peak memory;
4. fills the test case's lesions with the trained 2d model once per sampler (the default DPM-Solver++
   3 steps x 4 draws, DDIM 25, DDPM ``--ddpm-steps``) and records the seconds (reading and writing
   included, as ``ldiff_predict`` does them).

Writes ``gpu_check.json`` (command, commit, hardware, date and every number) and ``gpu_check.md`` (the
tables) under ``-o``. The weights are meaningless (a few steps); the numbers are for speed and memory.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
SAMPLERS = {"dpm_solver 3 x 4 (default)": {"sampler": "dpm_solver", "steps": 3, "num_samples": 4},
            "ddim 25": {"sampler": "ddim", "steps": 25, "num_samples": 1}}


def peak_memory_gb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux: the process's peak


def make_and_plan(raw: Path, tiny: bool, device: str) -> dict:
    from ldiff.dataset.example import make_example_dataset
    from ldiff.preprocessing.plan_and_preprocess import plan_and_preprocess

    started = time.perf_counter()
    make_example_dataset(raw, num_train=2 if tiny else 4, num_test=1, spacing_mm=4.0 if tiny else 1.0,
                         show_progress=False)
    made = time.perf_counter() - started
    overrides = {"2d.patch_size": [32, 32], "p3d.patch_size": [32, 32], "p3d.stack_depth": 4} if tiny else {}
    started = time.perf_counter()
    folder = plan_and_preprocess(1, overrides=overrides, device=device)
    planned = time.perf_counter() - started
    plans = json.loads((folder / "plans.json").read_text())
    return {"example_seconds": made, "plan_and_preprocess_seconds": planned,
            "configurations": {name: {key: config.get(key) for key in
                                      ("batch_size", "batch_size_method", "memory_target_gb", "memory_at_batch_size_gb",
                                       "patch_size", "stack_depth")}
                               for name, config in plans["configurations"].items()}}


def train_config(config_name: str, steps: int, device: str) -> dict:
    import numpy as np
    import torch

    from ldiff.training.trainer import train

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    output = train(1, config_name, "cond_fill", fold="all", num_training_steps=steps, checkpoint_every=10 * steps,
                   num_validation_samples=0, log_every=1, num_workers=0, device=device)
    log = json.loads((output / "training_log.json").read_text())
    settings = json.loads((output / "training_settings.json").read_text())
    plans = json.loads((output / "plans.json").read_text())
    times = np.array([entry["step_time_s"] for entry in log["entries"] if entry["kind"] == "train"])
    measured = times[min(2, len(times) - 1):]  # the first steps include start-up
    depth = int(plans["configurations"][config_name]["stack_depth"])
    return {"steps": int(steps), "batch_size": int(settings["batch_size"]), "stack_depth": depth,
            "seconds_per_step": float(measured.mean()),
            "slices_per_second": float(settings["batch_size"] * depth / measured.mean()),
            "peak_memory_gb": peak_memory_gb(device), "model": str(output)}


def time_prediction(model: str, raw: Path, output: Path, device: str, ddpm_steps: int, tiny: bool) -> dict:
    from ldiff.inference.files import ModelChoice, predict_files
    from ldiff.inference.predictor import SamplingOptions

    dataset = next(raw.glob("Dataset001_*"))
    images = sorted((dataset / "imagesTs").glob("*_0000.nii.gz"))[:1]
    case = images[0].name[: -len("_0000.nii.gz")]
    inputs = [images[0], images[0].with_name(f"{case}_0001.nii.gz")]
    mask = dataset / "labelsTs" / f"{case}.nii.gz"
    samplers = dict(SAMPLERS) if not tiny else {"dpm_solver 3 x 4 (default)": SAMPLERS["dpm_solver 3 x 4 (default)"],
                                                "ddim 3": {"sampler": "ddim", "steps": 3, "num_samples": 1}}
    samplers[f"ddpm {ddpm_steps}"] = {"sampler": "ddpm", "steps": ddpm_steps, "num_samples": 1}
    seconds = {}
    for label, settings in samplers.items():
        started = time.perf_counter()
        predict_files([str(path) for path in inputs], output / label.split()[0], ModelChoice(model, device=device),
                      SamplingOptions(**settings), mask=mask, progress=False)
        seconds[label] = time.perf_counter() - started
    return {"case": case, "seconds": seconds}


def markdown(result: dict) -> str:
    lines = ["# GPU check (`benchmarks/gpu_check.py`)", "",
             f"Command: `{result['provenance']['command']}`  ",
             f"Commit {result['provenance']['commit']}, {result['provenance']['hardware']}, {result['provenance']['date']}.",
             "", "## Plan", "", "| configuration | batch size | decided by | memory target GiB | at batch GiB |",
             "|---|---|---|---|---|"]
    for name, config in result["plan"]["configurations"].items():
        lines.append(f"| {name} | {config['batch_size']} | {config['batch_size_method']} | {config['memory_target_gb']} "
                     f"| {config['memory_at_batch_size_gb']} |")
    lines += ["", "## Training (cond_fill)", "", "| configuration | batch x slices | s/step | slices/s | peak memory GiB |",
              "|---|---|---|---|---|"]
    for name, numbers in result["training"].items():
        lines.append(f"| {name} | {numbers['batch_size']} x {numbers['stack_depth']} | {numbers['seconds_per_step']:.3f} "
                     f"| {numbers['slices_per_second']:.1f} | {numbers['peak_memory_gb']:.2f} |")
    lines += ["", f"## Prediction (2d model, case {result['prediction']['case']}, reading and writing included)", "",
              "| sampler | seconds |", "|---|---|"]
    lines += [f"| {label} | {seconds:.1f} |" for label, seconds in result["prediction"]["seconds"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for gpu_check.json and .md")
    parser.add_argument("--tiny", action="store_true", help="4 mm volumes and 3 steps: a CPU smoke run (CI)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per configuration (default 60; tiny 3)")
    parser.add_argument("--ddpm-steps", type=int, default=None, help="DDPM steps timed (default 1000; tiny 5)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    arguments = parser.parse_args(argv)
    steps = arguments.steps or (3 if arguments.tiny else 60)
    ddpm_steps = arguments.ddpm_steps or (5 if arguments.tiny else 1000)

    sys.path.insert(0, str(REPOSITORY))
    from ldiff.devices import resolve_device
    from ldiff.evaluation.benchmark.report import provenance
    from ldiff.io import save_json_atomic
    from ldiff.io.atomic import atomic_path

    device = resolve_device(arguments.device)
    command = "python benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="ldiff_gpu_check_") as scratch:
        roots = {name: Path(scratch) / name for name in ("ldiff_raw", "ldiff_preprocessed", "ldiff_results")}
        previous = {name: os.environ.get(name) for name in roots}
        os.environ.update({name: str(path) for name, path in roots.items()})
        try:
            result = {"provenance": provenance(command), "device": device, "tiny": arguments.tiny,
                      "plan": make_and_plan(roots["ldiff_raw"], arguments.tiny, device)}
            result["training"] = {name: train_config(name, steps, device) for name in ("2d", "p3d")}
            result["prediction"] = time_prediction(result["training"]["2d"]["model"], roots["ldiff_raw"],
                                                   Path(scratch) / "predictions", device, ddpm_steps, arguments.tiny)
        finally:
            for name, value in previous.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    for numbers in result["training"].values():
        numbers.pop("model")
    arguments.output.mkdir(parents=True, exist_ok=True)
    save_json_atomic(result, arguments.output / "gpu_check.json")
    with atomic_path(arguments.output / "gpu_check.md") as temporary:
        Path(temporary).write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
