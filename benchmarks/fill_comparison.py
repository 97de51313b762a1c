"""Lesion filling on the example dataset's held-out test cases: ldiff against the classic fillers.

    python benchmarks/fill_comparison.py -d 2 --models ldiff/demo_models/t1_cond_fill
    python benchmarks/fill_comparison.py -d 1 --models ldiff_results/Dataset001_MSPhantom/cond_fill__2d/fold_all

The test cases (``imagesTs``) have simulated lesions (``labelsTs``) and their lesion-free truth
(``healthyTs``), so every filler is scored against the tissue that was really there. Every method
replaces the same region: the lesion mask dilated by the first model's planned dilation (the region
ldiff repaints), and the metrics are computed inside that region (``ldiff_evaluate``, both protocols).
Writes ``comparison.md`` (table), ``comparison.csv`` and ``comparison.png`` (bar plot) to ``--output``.
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm
import SimpleITK as sitk

from ldiff import paths
from ldiff.dataset.raw import RawDataset
from ldiff.evaluation.classic import CLASSIC_METHODS
from ldiff.evaluation.classic.files import fill_classic_files
from ldiff.evaluation.evaluate import evaluate_folder, format_table
from ldiff.io.model_files import read_model_json
from ldiff.io import array_to_image, atomic_path, read_image, write_image_atomic
from ldiff.io.images import Geometry
from ldiff.masks import dilate_mask

COLUMNS = [("thesis", "ssim_in"), ("thesis", "psnr_in"), ("thesis", "mse_in"), ("thesis", "lpips_crops"),
           ("brats2023", "ssim_in"), ("brats2023", "psnr_in")]


def folder_name(label: str) -> str:
    """A file-system friendly folder name for a method's label."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_")


def model_label(model_folder: Path) -> str:
    """The part of a model's path that tells it from others: the runs folder above ``Dataset.../TASK__CONFIG/fold_X``
    when the path has that layout (e.g. ``rim``), else the folder's own name."""
    parts = Path(model_folder).parts
    for index, part in enumerate(parts):
        if part.startswith("Dataset") and index > 0:
            return parts[index - 1]
    return Path(model_folder).name


def result_provenance(models: list[Path], checkpoint: str = "final") -> dict:
    """Command, commit, hardware and date of a result, and the SHA-256 of every model's checkpoint file."""
    import shlex
    import sys

    from ldiff.evaluation.benchmark.report import provenance

    return provenance("python " + " ".join(shlex.quote(a) for a in sys.argv), models, checkpoint)


def write_report(output: Path, stem: str, description: str, header: list[str], rows: list[list],
                 provenance: dict | None = None) -> str:
    """Writes ``stem.md`` (provenance, description, markdown table), ``stem.csv`` and, with ``provenance``,
    ``stem.json`` (provenance and rows) atomically; returns the table."""
    table = format_table(rows, header)
    output.mkdir(parents=True, exist_ok=True)
    heading = ""
    if provenance is not None:
        from ldiff.io import save_json_atomic

        heading = (f"Command: `{provenance['command']}`  \nCommit {provenance['commit']}, {provenance['hardware']}, "
                   f"{provenance['date']}"
                   + "".join(f"; model {m} (checkpoint sha256 {h[:16]})" for m, h in provenance.get("models", {}).items())
                   + ".\n\n")
        save_json_atomic({"provenance": provenance, "description": description,
                          "rows": [dict(zip(header, row)) for row in rows]}, output / f"{stem}.json")
    with atomic_path(output / f"{stem}.md") as temporary:
        temporary.write_text(heading + description + "\n\n" + table + "\n", encoding="utf-8")
    with atomic_path(output / f"{stem}.csv") as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return table


def write_dilated_masks(dataset: RawDataset, cases: list, radius_voxels: int, folder: Path) -> Path:
    """The region every method replaces: each test label dilated by ``radius_voxels`` (ball, mm-aware)."""
    for case in cases:
        label = read_image(case.label_file)
        spacing = label.GetSpacing()
        dilated = dilate_mask(sitk.GetArrayFromImage(label) > 0, radius_voxels, spacing)
        write_image_atomic(array_to_image(dilated.astype(np.uint8), Geometry.of(label)), folder / case.label_file.name)
    return folder


def variant_options(text: str) -> dict:
    """``"default"`` -> {}; ``"views=axial,num_samples=1"`` -> {"views": "axial", "num_samples": 1}
    (the settings of an ``ldiff_benchmark`` method spec, parsed and checked by the same code)."""
    from ldiff.evaluation.benchmark.methods import parse_method

    return {} if text == "default" else dict(parse_method(f"ldiff@{text}").sampling)


def variant_label(description: dict, predictor) -> str:
    """E.g. ``ldiff cond_fill 2d (T1w; 3 views x 1 draw, dpm_solver 3 steps)`` (short enough for plot labels)."""
    from ldiff.inference.predictor import resolved_sampler

    sampler, steps = resolved_sampler(predictor.model, predictor.options)
    views, draws = predictor.views, predictor.num_samples
    where = f"{len(views)} views" if len(views) > 1 else views[0]
    warm = f", t0={predictor.t0}" if predictor.t0 is not None and predictor.model.task.warm_starts else ""
    return (f"ldiff {description.get('task')} {description.get('config_name', '')} "
            f"({'+'.join(description['channel_names'])}; {where} x {draws} draw{'s' if draws > 1 else ''}, "
            f"{sampler} {steps} steps{warm}{', standardised' if predictor.landmarks is not None else ''})")


def load_predictor(model_folder: Path, sampler: str | None, steps: int | None, device: str, checkpoint: str,
                   batch_size: int | None, variant: dict):
    from ldiff.inference.predictor import Predictor

    options = {key: value for key, value in (("sampler", sampler), ("steps", steps), ("batch_size", batch_size)) if value is not None}
    return Predictor.from_folder(model_folder, checkpoint=checkpoint, device=device, **options, **variant)


def run_ldiff(predictor, model_folder: Path, cases: list, channel_indices: list[int], output: Path,
              label: str = "ldiff") -> float:
    """Fill every case with one model; returns seconds per case (model loading excluded)."""
    from ldiff.inference.preview import write_preview

    print(f"{label}: {predictor.describe_sampling()}", flush=True)
    seconds = []
    for case in tqdm(cases, desc=label, unit="case"):
        # Timed like the classic fillers (fill_classic_files): reading, filling and writing.
        start = time.perf_counter()
        images = [read_image(case.image_files[index]) for index in channel_indices]
        mask = sitk.GetArrayFromImage(read_image(case.label_file)) > 0
        result = predictor.predict(images, mask, seed=0)
        for index, image in zip(channel_indices, result.images):
            write_image_atomic(image, output / case.image_files[index].name)
        seconds.append(time.perf_counter() - start)
        write_preview(output / f"{case.identifier}_preview.png", [sitk.GetArrayFromImage(i) for i in images], mask,
                      [sitk.GetArrayFromImage(i) for i in result.images], Geometry.of(images[0]),
                      predictor.model.description["channel_names"], f"{case.identifier}: {model_folder}")
    return float(np.mean(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-d", "--dataset", default="2", help="raw dataset with imagesTs, labelsTs, healthyTs")
    parser.add_argument("--models", nargs="*", default=[], help="ldiff model folders (model.json + checkpoint)")
    parser.add_argument("--checkpoint", default="final", choices=("final", "latest"))
    parser.add_argument("--sampler", default=None, help="ldiff sampler (default: the task's default)")
    parser.add_argument("--steps", type=int, default=None, help="ldiff sampler steps (default: the sampler's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=None, help="samples per network call, draws included (default: the model's)")
    parser.add_argument("--num-samples", type=int, nargs="+",
                        help="ldiff draws averaged per crop (in each view); several values give one row each (e.g. 1 4)")
    parser.add_argument("--variants", nargs="+",
                        help="ldiff sampling variants, one row each: default (the model's own sampling) or key=value,... "
                             "of the prediction options, e.g. views=axial,num_samples=1 (default: default, or one per "
                             "--num-samples)")
    parser.add_argument("--cases", type=int, default=None, help="only the first N test cases")
    parser.add_argument("--dilation", type=int, default=None, help="dilation in voxels (default: the first model's)")
    parser.add_argument("--no-lpips", action="store_true")
    parser.add_argument("-o", "--output", type=Path, default=Path("benchmark_results/fill_comparison"))
    parser.add_argument("--replot", action="store_true",
                        help="only redraw comparison.png from -o's comparison.json and the methods' summary.json files")
    arguments = parser.parse_args()
    if arguments.replot:
        stored = json.loads((arguments.output / "comparison.json").read_text())["rows"]
        header = list(stored[0])
        rows = [[entry[key] for key in header] for entry in stored]
        plot(rows, header, arguments.output / "comparison.png", per_case_values(arguments.output, [row[0] for row in rows]))
        return

    name = paths.find_dataset_name(arguments.dataset, [paths.raw_root()])
    dataset = RawDataset(paths.raw_root() / name)
    cases = dataset.cases("Ts")[: arguments.cases]
    if not cases or not (dataset.folder / "healthyTs").is_dir():
        raise SystemExit(f"{dataset.folder} needs imagesTs, labelsTs and healthyTs (ldiff_make_example writes them).")
    models = [Path(m) for m in arguments.models]
    descriptions = [read_model_json(m) for m in models]
    radius = arguments.dilation
    if radius is None:
        radius = int(descriptions[0]["mask_dilation"]["radius_voxels"]) if descriptions else 1
    output = arguments.output
    masks = write_dilated_masks(dataset, cases, radius, output / "masks")

    # The models may use fewer channels than the dataset has; score the channels every method fills.
    channel_sets = [[dataset.channel_names.index(c) for c in d["channel_names"]] for d in descriptions]
    scored = sorted(set.intersection(*map(set, channel_sets))) if channel_sets else list(range(dataset.num_channels))
    inputs = output / "inputs"
    references = output / "references"
    for case in cases:
        for index in scored:
            for source, folder in ((case.image_files[index], inputs), (case.healthy_files[index], references)):
                target = folder / source.name
                if not target.exists():
                    write_image_atomic(read_image(source), target)

    results: dict[str, dict] = {}
    timings: dict[str, float] = {}
    print(f"{len(cases)} test case(s); region: lesion masks dilated by {radius} voxel(s); {len(CLASSIC_METHODS)} classic "
          f"fillers, then {len(models) * max(1, len(arguments.variants or []) + len(arguments.num_samples or []))} ldiff setting(s) (on a 2-core CPU about half a "
          f"minute per case and draw), then scoring.", flush=True)
    for method in tqdm(CLASSIC_METHODS, desc="classic fillers", unit="method"):
        start = time.perf_counter()
        fill_classic_files(inputs, output / method, method=method, masks_dir=masks, progress=False)
        timings[method] = (time.perf_counter() - start) / len(cases)
    variants = [variant_options(text) for text in (arguments.variants or [])]
    variants += [{"num_samples": draws} for draws in (arguments.num_samples or [])]
    for model, description in zip(models, descriptions):
        for variant in variants or [{}]:
            predictor = load_predictor(model, arguments.sampler, arguments.steps, arguments.device,
                                       arguments.checkpoint, arguments.batch_size, variant)
            label = variant_label(description, predictor)
            if len(models) > 1:  # models of one task and configuration would share a label
                label = f"{model_label(model)}: {label}"
            timings[label] = run_ldiff(predictor, model, cases, scored, output / folder_name(label), label)
    for method in tqdm(list(timings), desc="scoring", unit="method"):
        folder = output / folder_name(method)
        results[method] = evaluate_folder(references, folder, masks, output_json=folder / "summary.json",
                                          lpips=not arguments.no_lpips, num_processes=1)

    header = ["method", "seconds/case"] + [f"{p} {m}" for p, m in COLUMNS]
    rows = []
    for method, result in results.items():
        row = [method, timings[method]]
        for protocol, metric in COLUMNS:
            entry = result["aggregate"].get(protocol, {}).get(metric)
            row.append(None if entry is None else entry["mean"])
        rows.append(row)
    description = (f"Dataset {name}, {len(cases)} test cases, channels {', '.join(dataset.channel_names[i] for i in scored)}; "
                   f"region: lesion masks dilated by {radius} voxel(s); means over cases and channels.\n"
                   f"thesis = images scaled to [-1, 1], SSIM map (7x7, data range 2) averaged in the region, "
                   f"PSNR = 10 log10(4 / MSE); brats2023 = BraTS inpainting protocol (percentile-normalised, in the region).")
    table = write_report(output, "comparison", description, header, rows,
                         result_provenance(models, arguments.checkpoint))
    plot(rows, header, output / "comparison.png", per_case_values(output, [row[0] for row in rows]))
    print(description)
    print(table)


PLOT_PANELS = (("thesis ssim_in", "SSIM inside the dilated mask\n(thesis protocol; 1 = identical to the truth)"),
               ("thesis psnr_in", "PSNR inside the dilated mask (dB)\n(thesis protocol; higher is better)"),
               ("seconds/case", "seconds per case (log scale)\n(this machine; lower is better)"))


def per_case_values(output: Path, methods: list[str]) -> dict[str, dict[str, list[float]]]:
    """{method: {"thesis ssim_in": [...], "thesis psnr_in": [...]}} from each method's summary.json."""
    values: dict[str, dict[str, list[float]]] = {}
    for method in methods:
        summary = output / folder_name(method) / "summary.json"
        if not summary.is_file():
            continue
        cases = json.loads(summary.read_text())["cases"]
        values[method] = {f"thesis {metric}": [case["thesis"][metric] for case in cases if metric in case.get("thesis", {})]
                          for metric in ("ssim_in", "psnr_in")}
    return values


def plot(rows: list[list], header: list[str], path: Path, per_case: dict[str, dict[str, list[float]]] | None = None) -> None:
    """Means (bars) and per-case values (dots) of in-region SSIM and PSNR, and seconds per case, per method.

    The quality axes start just below the lowest value shown, not at 0, so that differences between
    the close methods are visible; the bars are drawn from that floor.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_case = per_case or {}
    methods = [row[0] for row in rows]
    colours = ["tab:orange" if m.startswith("ldiff") else "tab:grey" for m in methods]
    figure, axes = plt.subplots(1, 3, figsize=(14, 4.6))
    for axis, (column, title) in zip(axes, PLOT_PANELS):
        means = [row[header.index(column)] for row in rows]
        if column == "seconds/case":
            axis.bar(range(len(methods)), [value or 0 for value in means], color=colours)
            axis.set_yscale("log")
        else:
            points = [per_case.get(method, {}).get(column, []) for method in methods]
            shown = [value for value in means if value is not None] + [v for group in points for v in group]
            low, high = min(shown), max(shown)
            floor = low - 0.08 * (high - low or 1.0)
            axis.bar(range(len(methods)), [(value or floor) - floor for value in means], bottom=floor, color=colours,
                     alpha=0.75)
            for index, group in enumerate(points):
                axis.scatter([index] * len(group), group, s=12, color="black", zorder=3,
                             label="one test case" if index == 0 and group else None)
            axis.set_ylim(floor, high + 0.05 * (high - low or 1.0))
            if any(points):
                axis.legend(loc="lower right", fontsize=7)
        axis.set_xticks(range(len(methods)), methods, rotation=30, ha="right", fontsize=8)
        axis.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
