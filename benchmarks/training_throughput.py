"""Training throughput at a dataset's plan: slices per second, data-wait fraction and peak memory.

    python benchmarks/training_throughput.py                  # Dataset001, 2d and p3d, cond_fill
    python benchmarks/training_throughput.py -d 2 --steps 50 --configs p3d --device cuda

For each configuration a fresh process trains ``--steps`` steps of the plan's network and batch
(results in a temporary folder, deleted afterwards; no validation) and reports, after discarding the
first ``--skip`` steps (start-up, worker spin-up, allocator warm-up):

- slices per second: ``batch_size * stack_depth`` / mean step time;
- the fraction of step time spent waiting for the data loader: it must stay under 10 %, otherwise
  the GPU (or CPU) idles and more ``--num-workers`` are needed (exit status 1);
- peak memory: CUDA ``torch.cuda.max_memory_allocated``; CPU the maximum resident set size of the
  training process (``resource.getrusage``), with that of the data workers beside it; both against
  the plan's memory target and its estimate at the planned batch size.

Each configuration runs in its own process so that one's peak memory does not hide the other's.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

MAX_DATA_WAIT_FRACTION = 0.10


def measure(dataset: str, config_name: str, task_name: str, steps: int, skip: int, device: str, num_workers: int,
            batch_size: int | None) -> dict:
    """Train ``steps`` steps in this process (results in a temporary folder) and return the numbers."""
    import numpy as np
    import torch

    from ldiff.training.settings import load_preprocessed
    from ldiff.devices import resolve_device
    from ldiff.training.trainer import train

    _, _, plans, _, _ = load_preprocessed(dataset)
    configuration = plans["configurations"][config_name]
    device_type = resolve_device(device)
    overrides = {"batch_size": batch_size} if batch_size else {}
    with tempfile.TemporaryDirectory(prefix="ldiff_benchmark_") as results:
        os.environ["ldiff_results"] = results
        if device_type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        output = train(dataset, config_name, task_name, fold=0, num_training_steps=steps, checkpoint_every=10 * steps,
                       num_validation_samples=0, log_every=1, num_workers=num_workers, device=device_type, **overrides)
        log = json.loads((output / "training_log.json").read_text())
        settings = json.loads((output / "training_settings.json").read_text())
    entries = [entry for entry in log["entries"] if entry["kind"] == "train"][skip:]
    step_times = np.array([entry["step_time_s"] for entry in entries])
    waits = np.array([entry["data_wait_s"] for entry in entries])
    slices_per_step = settings["batch_size"] * int(configuration["stack_depth"])
    if device_type == "cuda":
        peak_gb = torch.cuda.max_memory_allocated() / 2**30
        workers_gb = None
    else:  # ru_maxrss is in KiB on Linux
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        workers_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return {
        "config": config_name,
        "device": device_type,
        "planned_for": configuration.get("device_type"),
        "batch_size": settings["batch_size"],
        "stack_depth": int(configuration["stack_depth"]),
        "slice_size": configuration.get("patch_size", configuration["slice_size"]),  # the training window
        "measured_steps": len(entries),
        "seconds_per_step": float(step_times.mean()),
        "slices_per_second": float(slices_per_step / step_times.mean()),
        "data_wait_fraction": float(waits.sum() / step_times.sum()),
        "peak_memory_gb": peak_gb,
        "worker_peak_memory_gb": workers_gb,
        "memory_target_gb": configuration.get("memory_target_gb"),
        "planned_memory_gb": configuration.get("memory_at_batch_size_gb"),
    }


def report(result: dict) -> bool:
    """Print one configuration's numbers; returns whether the data-wait fraction is acceptable."""
    ok = result["data_wait_fraction"] < MAX_DATA_WAIT_FRACTION
    print(f"\n{result['config']} on {result['device']} (planned for {result['planned_for']}): batch {result['batch_size']}"
          f" x {result['stack_depth']} slice(s) of {result['slice_size'][0]}x{result['slice_size'][1]},"
          f" {result['measured_steps']} measured steps")
    print(f"  {result['slices_per_second']:.1f} slices/s ({result['seconds_per_step']:.3f} s/step)")
    print(f"  data wait {100 * result['data_wait_fraction']:.1f} % of step time "
          f"({'OK' if ok else 'TOO HIGH'}: must stay under {100 * MAX_DATA_WAIT_FRACTION:.0f} %)")
    planned = result["planned_memory_gb"]
    workers = result["worker_peak_memory_gb"]
    print(f"  peak memory {result['peak_memory_gb']:.2f} GiB"
          + (f" (+ data workers up to {workers:.2f} GiB each)" if workers else "")
          + f"; plan: target {result['memory_target_gb']} GiB, estimate at this batch "
          + ("n/a" if planned is None else f"{planned:.2f} GiB"))
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-d", "--dataset", default="1", help="preprocessed dataset id or name (default 1)")
    parser.add_argument("--configs", nargs="+", default=["2d", "p3d"])
    parser.add_argument("--task", default="cond_fill")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--skip", type=int, default=5, help="first steps left out of the averages")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the plan's")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="folder for training_throughput.json and .md (command, commit, hardware, date)")
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)  # one configuration, JSON out
    arguments = parser.parse_args()
    if arguments.steps <= arguments.skip:
        parser.error("--steps must be larger than --skip")

    if arguments.single:
        result = measure(arguments.dataset, arguments.configs[0], arguments.task, arguments.steps, arguments.skip,
                         arguments.device, arguments.num_workers, arguments.batch_size)
        print("RESULT " + json.dumps(result))
        return

    all_ok = True
    results = []
    for config_name in arguments.configs:
        command = [sys.executable, __file__, "--single", "-d", arguments.dataset, "--configs", config_name, "--task",
                   arguments.task, "--steps", str(arguments.steps), "--skip", str(arguments.skip), "--device",
                   arguments.device, "--num-workers", str(arguments.num_workers)]
        if arguments.batch_size:
            command += ["--batch-size", str(arguments.batch_size)]
        completed = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
        if completed.returncode != 0 or not lines:
            print(f"\n{config_name}: failed\n{completed.stderr.strip().splitlines()[-1] if completed.stderr else ''}")
            all_ok = False
            continue
        results.append(json.loads(lines[-1][len("RESULT "):]))
        all_ok &= report(results[-1])
    if arguments.output is not None:
        write_result(arguments.output, results)
    sys.exit(0 if all_ok else 1)


def write_result(output: Path, results: list[dict]) -> None:
    """training_throughput.json (provenance + every measured number) and .md (the table)."""
    import shlex

    from ldiff.evaluation.benchmark.report import provenance
    from ldiff.io import atomic_path, save_json_atomic

    record = provenance("python " + " ".join(shlex.quote(a) for a in sys.argv))
    record["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS")
    save_json_atomic({"provenance": record, "results": results}, output / "training_throughput.json")
    lines = ["# Training throughput (`benchmarks/training_throughput.py`)", "",
             f"Command: `{record['command']}` (OMP_NUM_THREADS={record['OMP_NUM_THREADS']})  ",
             f"Commit {record['commit']}, {record['hardware']}, {record['date']}.", "",
             "| config | batch | slice size | slices/s | s/step | data wait | peak memory | plan's estimate |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        estimate = "n/a" if r["planned_memory_gb"] is None else f"{r['planned_memory_gb']:.2f} GiB"
        lines.append(f"| {r['config']} | {r['batch_size']} x {r['stack_depth']} | {r['slice_size'][0]}x{r['slice_size'][1]} "
                     f"| {r['slices_per_second']:.2f} | {r['seconds_per_step']:.2f} | {100 * r['data_wait_fraction']:.1f} % "
                     f"| {r['peak_memory_gb']:.2f} GiB | {estimate} |")
    output.mkdir(parents=True, exist_ok=True)
    with atomic_path(output / "training_throughput.md") as temporary:
        Path(temporary).write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
