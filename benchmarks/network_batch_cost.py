"""Cost of one network call per sample against the batch size, weight layout and number format.

    python benchmarks/network_batch_cost.py --model ldiff/demo_models/t1_cond_fill \
        --crop 144 128 -o documentation/results/network_cost/cpu_2threads

Times the forward pass of a model's network (no gradients, the sampling case) on random input in
[-1, 1] of the given crop size (default: its training patch size), for several batch sizes, with the
2D convolution weights stored as loaded (``plain``: NCHW) and channels-last (what ``ldiff_predict``
uses on a CPU), and, with ``--bfloat16``, under bfloat16 autocast (with its largest deviation from the
float32 output). Prints microseconds per crop voxel; with ``-o`` writes ``<o>.json`` and ``<o>.md``
with command, commit, hardware and date.
"""
from __future__ import annotations

import argparse
import copy
import shlex
import sys
import time
from pathlib import Path

import torch

from ldiff.evaluation.benchmark.report import provenance
from ldiff.inference.model_loading import load_model, use_channels_last_weights
from ldiff.io import atomic_path, save_json_atomic


def time_forward(network: torch.nn.Module, inputs: torch.Tensor, timesteps: torch.Tensor, repeats: int,
                 bfloat16: bool) -> tuple[float, torch.Tensor]:
    """Seconds per call (after one warm-up call) and the output of the warm-up call (float32)."""
    with torch.no_grad(), torch.autocast(inputs.device.type, dtype=torch.bfloat16, enabled=bfloat16):
        output = network(inputs, timesteps).float()
        start = time.perf_counter()
        for _ in range(repeats):
            network(inputs, timesteps)
        if inputs.device.type == "cuda":
            torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats, output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model folder (model.json + checkpoint)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), help="crop size (default: the patch size)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bfloat16", action="store_true", help="also time bfloat16 autocast")
    parser.add_argument("-o", "--output", help="write <output>.json and <output>.md")
    arguments = parser.parse_args()

    model = load_model(arguments.model, device=torch.device(arguments.device))
    in_channels = int(model.description["network"]["in_channels"])
    height, width = arguments.crop or model.patch_size
    depth = (model.stack_depth,) if model.is_pseudo3d else ()
    plain = build_plain_copy(model.network)
    layouts = {"plain": plain, "channels_last": copy.deepcopy(plain)}
    use_channels_last_weights(layouts["channels_last"])
    formats = [False, True] if arguments.bfloat16 else [False]
    print(f"{arguments.model}: {in_channels} input channels, crop {height}x{width}, {torch.get_num_threads()} thread(s)")
    rows = []
    generator = torch.Generator().manual_seed(0)
    for batch in arguments.batch_sizes:
        inputs = (torch.rand(batch, in_channels, *depth, height, width, generator=generator) * 2 - 1).to(model.device)
        timesteps = torch.full((batch,), 500, device=model.device)
        reference = None
        for layout, network in layouts.items():
            for bfloat16 in formats:
                seconds, output = time_forward(network, inputs, timesteps, arguments.repeats, bfloat16)
                reference = output if reference is None else reference
                voxels = inputs[:, 0].numel()
                rows.append({"batch": batch, "layout": layout, "dtype": "bfloat16" if bfloat16 else "float32",
                             "seconds_per_call": round(seconds, 4),
                             "microseconds_per_voxel": round(1e6 * seconds / voxels, 3),
                             "max_abs_deviation": float((output - reference).abs().max())})
                print(f"batch {batch:3d}  {layout:13s} {rows[-1]['dtype']:8s} "
                      f"{rows[-1]['microseconds_per_voxel']:7.2f} us/voxel  max dev {rows[-1]['max_abs_deviation']:.2g}")
    if arguments.output:
        command = "python " + " ".join(shlex.quote(part) for part in sys.argv)
        record = {**provenance(command, [arguments.model]), "model": str(arguments.model), "crop": [height, width], "rows": rows}
        out = Path(arguments.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_json_atomic(record, out.with_suffix(".json"))
        lines = [f"# Network cost per crop voxel: {arguments.model}", "",
                 f"`{command}`  ", f"commit {record['commit']}, {record['hardware']}, {record['date']}; "
                 f"checkpoint sha256 {next(iter(record['models'].values()))[:16]}; "
                 f"crop {height} x {width}, forward pass without gradients.", "",
                 "| batch | weights | dtype | s / call | us / voxel | max deviation from float32 NCHW |",
                 "|---:|---|---|---:|---:|---:|"]
        lines += [f"| {r['batch']} | {r['layout']} | {r['dtype']} | {r['seconds_per_call']:.3f} | "
                  f"{r['microseconds_per_voxel']:.2f} | {r['max_abs_deviation']:.2g} |" for r in rows]
        with atomic_path(out.with_suffix(".md")) as temporary:
            temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


def build_plain_copy(network: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``network`` with every weight contiguous in the default (NCHW) layout."""
    plain = copy.deepcopy(network)
    for parameter in plain.parameters():
        parameter.data = parameter.data.contiguous()
    return plain


if __name__ == "__main__":
    main()
