"""Prediction speed: ldiff's cropped sampling per sampler against the reference implementation's layout.

    python benchmarks/prediction_speed.py -m $ldiff_results/Dataset001_MSPhantom/cond_fill__p3d/fold_0
    python benchmarks/prediction_speed.py --random-weights p3d cond_fill     # timing only, no trained model
    python benchmarks/prediction_speed.py --random-weights p3d cond_fill --channels 16 32 64   # a tiny one
    python benchmarks/prediction_speed.py -m MODEL --samplers ddim dpm_solver ddpm --ddpm-steps 250 --device cuda

Fills (or synthesises into) one case: by default the first test case of Dataset001
(``imagesTs/{case}_XXXX`` with ``labelsTs/{case}`` as the mask), or ``--images ... --mask ...``. Rows:

- one per sampler, as ``ldiff_predict`` runs it: only the crops around the dilated mask (at least the
  training patch, stacks with context), the sampler's default steps (DDIM 25, DPM-Solver++ 15,
  DDPM ``--ddpm-steps``, RePaint 50 / jump 8 / 10 resamplings);
- ``naive``: the reference implementation's layout: every whole slice (stack) that touches the mask,
  no in-plane crop, no context slices, DDIM with 50 steps (RePaint's thesis setting for
  unconditional filling models).

Columns: wall-clock seconds of the prediction (preprocessing and restoring included, model loading
not), forward passes of the network (one per step and batch of crops) and seconds per pass, crops
sampled, and, when the dataset has the lesion-free
``healthyTs`` images of the case, PSNR and SSIM inside the lesion mask against them (thesis protocol
of :func:`ldiff.evaluation.metrics.thesis_metrics`, averaged over the channels). With
``--random-weights`` the model is untrained (built from the dataset's plans), so only the timing
columns mean anything. The device used is printed with the table: compare rows of one run only.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from ldiff import paths
from ldiff.evaluation.evaluate import format_table
from ldiff.evaluation.metrics import thesis_metrics
from ldiff.inference.model_loading import choose_model_folder, load_model
from ldiff.inference.predictor import DEFAULT_STEPS, Predictor, SamplingOptions
from ldiff.inference.roi import Crop, RoiPlan, chunk_runs, round_up, window_start
from ldiff.io import read_image, save_json_atomic
from ldiff.io.cases import read_binary_mask
from ldiff.io.images import Geometry
from ldiff.networks import build_network
from ldiff.tasks import get_task
from ldiff.training import checkpoints
from ldiff.devices import resolve_device

DEFAULT_DATASET = "Dataset001_MSPhantom"


def default_case(dataset: str) -> tuple[list[Path], Path, list[Path] | None]:
    """(channel files, mask, healthy channel files or None) of the dataset's first test case."""
    folder = paths.raw_root() / paths.find_dataset_name(dataset)
    first = sorted((folder / "imagesTs").glob("*_0000.nii.gz"))[0]
    case = first.name[: -len("_0000.nii.gz")]
    images = sorted((folder / "imagesTs").glob(f"{case}_[0-9][0-9][0-9][0-9].nii.gz"))
    healthy = [folder / "healthyTs" / path.name for path in images]
    return images, folder / "labelsTs" / f"{case}.nii.gz", healthy if all(p.is_file() for p in healthy) else None


def random_weights_model(dataset: str, config_name: str, task_name: str, root: Path,
                         channels: list[int] | None = None) -> Path:
    """A model folder with the plan's network (or one with ``channels`` per level, no attention) for
    ``task_name`` and untrained weights (timing only)."""
    name = paths.find_dataset_name(dataset)
    folder = paths.preprocessed_root() / name
    plans = json.loads((folder / "plans.json").read_text())
    dataset_json = json.loads((folder / "dataset.json").read_text())
    task = get_task(task_name)
    network_config = {**plans["configurations"][config_name]["network"],
                      "in_channels": task.in_channels(len(plans["channel_names"])),
                      "out_channels": len(plans["channel_names"])}
    if channels:
        network_config.update(channels=list(channels), attention_levels=[False] * len(channels), mid_attention=False)
    torch.manual_seed(0)
    network = build_network(network_config)
    settings = {"batch_size": plans["configurations"][config_name]["batch_size"]}
    description = checkpoints.model_description(plans, dataset_json, name, task, config_name, network_config, settings)
    output = root / name / f"{task_name}__{config_name}" / "fold_random"
    save_json_atomic(description, output / "model.json")
    checkpoints.save_checkpoint(checkpoints.final_checkpoint_state(0, network.state_dict(), description),
                                output / checkpoints.FINAL_NAME)
    if (folder / "fingerprint.json").is_file():
        (output / "fingerprint.json").write_text((folder / "fingerprint.json").read_text())
    return output


def whole_slice_plan(paint: np.ndarray, stack_depth: int, min_size, factor: int) -> RoiPlan:
    """The reference implementation's layout (the ``naive`` row): every whole slice (a stack of
    ``stack_depth`` slices, tiled without context) that holds a ``paint`` voxel ((Z, Y, X) bool),
    padded to a multiple of ``factor``; ``min_size`` is ignored (a whole slice is at least the patch)."""
    shape = paint.shape
    height, width = round_up(shape[1], factor), round_up(shape[2], factor)
    start_y, start_x = window_start(0, shape[1], height, shape[1]), window_start(0, shape[2], width, shape[2])
    slices = np.flatnonzero(paint.any(axis=(1, 2)))
    crops = [Crop(((first + stop - stack_depth) // 2, start_y, start_x), (stack_depth, height, width), 1,
                  tuple(int(z) for z in slices if first <= z < stop))
             for first, stop in chunk_runs(slices, stack_depth)]
    return RoiPlan(tuple(crops), paint.astype(np.int32))


def in_mask_quality(outputs: list[sitk.Image], healthy: list[sitk.Image] | None, lesion: np.ndarray) -> dict:
    if healthy is None or not lesion.any():
        return {"psnr_in": None, "ssim_in": None}
    scores = [thesis_metrics(sitk.GetArrayFromImage(output), sitk.GetArrayFromImage(reference), lesion)
              for output, reference in zip(outputs, healthy)]
    return {key: float(np.mean([score[key] for score in scores])) for key in ("psnr_in", "ssim_in")}


def measure(predictor: Predictor, label: str, images: list[sitk.Image], lesion: np.ndarray,
            healthy: list[sitk.Image] | None, seed: int) -> dict:
    if predictor.model.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = predictor.predict(images, lesion, seed=seed, progress=True)
    if predictor.model.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    sampler = predictor.sampler.to_dict()
    steps = f"{sampler['num_inference_steps']}" + (f"/j{sampler['jump_length']}/r{sampler['num_resamplings']}"
                                                   if sampler["name"] == "repaint" else "")
    draws = predictor.num_samples
    return {"layout": label, "sampler": sampler["name"] + (f" x{draws} mean" if draws > 1 else ""), "steps": steps,
            "seconds": seconds,
            "network_calls": result.network_calls, "s_per_call": seconds / max(result.network_calls, 1),
            "crops": result.crops,
            **in_mask_quality(result.images, healthy, lesion)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--model", help="model fold folder (default: the one trained model found)")
    parser.add_argument("--random-weights", nargs=2, metavar=("CONFIG", "TASK"),
                        help="benchmark an untrained model of the dataset's plan instead (timing only)")
    parser.add_argument("--channels", type=int, nargs="+",
                        help="with --random-weights: feature channels per level of a smaller network, e.g. 16 32 64")
    parser.add_argument("-d", "--dataset", default=DEFAULT_DATASET, help="dataset of the default case")
    parser.add_argument("--images", nargs="+", help="the case's channel files (default: the dataset's first test case)")
    parser.add_argument("--mask", help="the case's mask (with --images)")
    parser.add_argument("--healthy", nargs="+", help="lesion-free reference per channel (with --images)")
    parser.add_argument("--samplers", nargs="+", help="samplers to time (default: ddim dpm_solver for conditional "
                        "models, repaint for unconditional ones)")
    parser.add_argument("--ddpm-steps", type=int, default=1000, help="steps of the ddpm row (default 1000)")
    parser.add_argument("--naive-steps", type=int, default=50, help="DDIM steps of the naive row (default 50)")
    parser.add_argument("--steps-divisor", type=int, default=1,
                        help="divide every row's steps by K, for a quick look on a CPU (seconds and calls scale "
                        "with the steps; the s_per_call column does not)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive row (it is the slowest)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", type=Path, help="folder for prediction_speed.json and .md (command, "
                        "commit, model checkpoint SHA-256, hardware, date); default: print only")
    arguments = parser.parse_args()

    if arguments.images:
        image_files, mask_file = [Path(p) for p in arguments.images], Path(arguments.mask)
        healthy_files = [Path(p) for p in arguments.healthy] if arguments.healthy else None
    else:
        image_files, mask_file, healthy_files = default_case(arguments.dataset)
    images = [read_image(path) for path in image_files]
    lesion = read_binary_mask(mask_file, Geometry.of(images[0]), image_files[0], "mask")
    healthy = [read_image(path) for path in healthy_files] if healthy_files else None
    device = resolve_device(arguments.device)

    with tempfile.TemporaryDirectory(prefix="ldiff_benchmark_") as scratch:
        if arguments.random_weights:
            folder = random_weights_model(arguments.dataset, *arguments.random_weights, Path(scratch),
                                          arguments.channels)
        else:
            folder = choose_model_folder(arguments.model, num_input_channels=len(images))
        model = load_model(folder, device=device)
        conditional = model.task.conditional
        samplers = arguments.samplers or (["ddim", "dpm_solver"] if conditional else ["repaint"])
        divisor = arguments.steps_divisor
        rows = []
        if divisor == 1:  # what ldiff_predict runs when the user names no sampler
            rows.append(measure(Predictor(model), "crops, task default", images, lesion, healthy, arguments.seed))
        for name in samplers:
            steps = arguments.ddpm_steps if name == "ddpm" else DEFAULT_STEPS[name]
            predictor = Predictor(model, SamplingOptions(sampler=name, steps=max(1, steps // divisor)))
            rows.append(measure(predictor, "crops", images, lesion, healthy, arguments.seed))
        if not arguments.no_naive:
            name = "ddim" if conditional else "repaint"
            steps = arguments.naive_steps if conditional else DEFAULT_STEPS[name]
            naive = SamplingOptions(sampler=name, steps=max(1, steps // divisor))
            rows.append(measure(Predictor(model, naive, crop_planner=whole_slice_plan), "naive", images, lesion,
                                healthy, arguments.seed))
    hardware = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"\n{image_files[0].name}: {int(lesion.sum())} mask voxels; model {model.describe()}; {hardware}")
    columns = ["layout", "sampler", "steps", "seconds", "network_calls", "s_per_call", "crops", "psnr_in", "ssim_in"]
    table = format_table(rows, columns)
    print(table)
    if arguments.output is not None:
        write_result(arguments.output, rows, table, model, image_files[0], int(lesion.sum()))


def write_result(output: Path, rows: list[dict], table: str, model, case_file: Path, mask_voxels: int) -> None:
    """prediction_speed.json and .md with the command, commit, model checkpoint hash, hardware and date."""
    import hashlib
    import sys

    from ldiff.evaluation.benchmark.report import provenance
    from ldiff.io.atomic import atomic_path
    from ldiff.io.model_files import checkpoint_file

    checkpoint = model.folder / checkpoint_file(model.checkpoint)
    result = {"provenance": provenance("python " + " ".join(sys.argv)), "model": str(model.folder),
              "checkpoint_sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(), "case": case_file.name,
              "mask_voxels": mask_voxels, "rows": rows}
    save_json_atomic(result, output / "prediction_speed.json")
    lines = ["# Prediction speed (`benchmarks/prediction_speed.py`)", "", f"Command: `{result['provenance']['command']}`  ",
             f"Commit {result['provenance']['commit']}, {result['provenance']['hardware']}, {result['provenance']['date']}; "
             f"model {model.folder} (checkpoint sha256 {result['checkpoint_sha256'][:16]}); case {case_file.name} "
             f"({mask_voxels} mask voxels).", "", table, ""]
    with atomic_path(output / "prediction_speed.md") as temporary:
        Path(temporary).write_text("\n".join(lines))


if __name__ == "__main__":
    main()
