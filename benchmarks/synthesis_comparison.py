"""Lesion synthesis on the example dataset's held-out test cases: synthetic against real lesions.

    python benchmarks/synthesis_comparison.py -d 1 --model ldiff/demo_models/t1_flair_cond_synth

Each test case of the example dataset exists twice: with simulated lesions (``imagesTs``, lesion
masks in ``labelsTs``) and without them (``healthyTs``, same noise and bias field). A synthesis
model gets the lesion-free scan and the real lesion mask and paints lesions into it; the result is
scored against the scan with the real lesions, inside the lesion mask dilated by the model's
planned dilation (``ldiff_evaluate``, thesis and BraTS protocols; the thesis's protocol for
synthesis). The lesion-free input is scored the same way as the floor a synthesis must clear.

Lesion contrast, per channel: ``100 * (mean in the lesions - mean in the surrounding normal
white matter) / mean in the surrounding normal white matter``, where the surrounding white matter
is the case's WM (``tissueTs`` label 3) within 2-5 mm of a lesion and outside the dilated mask. MS
lesions are hypointense on T1w (negative contrast) and hyperintense on FLAIR (positive contrast).

Writes ``synthesis.md`` (table), ``synthesis.csv``, ``synthesis_per_case.*`` (contrast per case), previews and the NIfTI outputs to ``--output``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from fill_comparison import folder_name, result_provenance, write_dilated_masks, write_report
from ldiff import paths
from ldiff.dataset.raw import RawDataset
from ldiff.evaluation.evaluate import evaluate_folder
from ldiff.io.model_files import read_model_json
from ldiff.io import read_image, write_image_atomic
from ldiff.io.images import Geometry
from ldiff.evaluation.synthesis_realism import DEFAULT_NOISE_FACTOR, coverage, noise_level
from ldiff.masks import dilate_mask
from ldiff.tasks import get_task

WM_LABEL = 3
SHELL_MM = (2.0, 5.0)
METRICS = [("thesis", "ssim_in"), ("thesis", "psnr_in"), ("brats2023", "ssim_in"), ("brats2023", "psnr_in")]


def lesion_contrast_percent(image: np.ndarray, lesion: np.ndarray, shell: np.ndarray) -> float:
    """``100 (mean(image[lesion]) - mean(image[shell])) / mean(image[shell])``; NaN if either region is empty."""
    if not lesion.any() or not shell.any():
        return float("nan")
    surrounding = float(image[shell].mean())
    return 100.0 * (float(image[lesion].mean()) - surrounding) / surrounding


def normal_white_matter_shell(lesion: np.ndarray, tissue: np.ndarray, excluded: np.ndarray,
                              spacing: tuple[float, ...]) -> np.ndarray:
    """WM voxels between ``SHELL_MM`` of the lesions, outside ``excluded`` (the dilated mask)."""
    inner = dilate_mask(lesion, spacing=spacing, shape="ball", radius_mm=SHELL_MM[0])
    outer = dilate_mask(lesion, spacing=spacing, shape="ball", radius_mm=SHELL_MM[1])
    return outer & ~inner & ~excluded & (tissue == WM_LABEL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-d", "--dataset", default="1", help="raw dataset with imagesTs, labelsTs, healthyTs, tissueTs")
    parser.add_argument("--model", required=True, type=Path, help="cond_synth or uncond_synth model folder")
    parser.add_argument("--checkpoint", default="final", choices=("final", "latest"))
    parser.add_argument("--sampler", default=None, help="ldiff sampler (default: the task's default)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=None, help="samples per network call, draws included (default: the model's)")
    parser.add_argument("--lesion-contrast", choices=("auto", "match", "model"), default="auto",
                        help="as ldiff_predict --lesion-contrast (match: the training lesions' contrast)")
    parser.add_argument("--cases", type=int, default=None, help="only the first N test cases")
    parser.add_argument("--no-lpips", action="store_true")
    parser.add_argument("-o", "--output", type=Path, default=Path("benchmark_results/synthesis"))
    arguments = parser.parse_args()

    from ldiff.inference.predictor import Predictor
    from ldiff.inference.preview import write_preview

    name = paths.find_dataset_name(arguments.dataset, [paths.raw_root()])
    dataset = RawDataset(paths.raw_root() / name)
    cases = dataset.cases("Ts")[: arguments.cases]
    if not cases or any(c.healthy_files is None or c.tissue_file is None for c in cases):
        raise SystemExit(f"{dataset.folder} needs imagesTs, labelsTs, healthyTs and tissueTs (ldiff_make_example writes them).")
    description = read_model_json(arguments.model)
    if not get_task(description["task"]).paints_lesions:
        raise SystemExit(f"{arguments.model}: a {description['task']} model; this benchmark needs a synthesis model.")
    channel_names = list(description["channel_names"])
    channels = [dataset.channel_names.index(channel) for channel in channel_names]
    radius = int(description["mask_dilation"]["radius_voxels"])
    output = arguments.output
    masks = write_dilated_masks(dataset, cases, radius, output / "masks")
    inputs, references = output / "inputs", output / "references"
    for case in cases:
        for index in channels:
            for source, folder in ((case.healthy_files[index], inputs), (case.image_files[index], references)):
                if not (folder / source.name).exists():
                    write_image_atomic(read_image(source), folder / source.name)

    options = {key: value for key, value in (("sampler", arguments.sampler), ("steps", arguments.steps),
                                             ("batch_size", arguments.batch_size)) if value is not None}
    options["match_contrast"] = {"auto": None, "match": True, "model": False}[arguments.lesion_contrast]
    predictor = Predictor.from_folder(arguments.model, checkpoint=arguments.checkpoint, device=arguments.device, **options)
    label = f"ldiff {description['task']} {description.get('config_name', '')} ({'+'.join(channel_names)})"
    synthesised = output / folder_name(label)
    seconds = []
    for case in cases:
        healthy = [read_image(case.healthy_files[index]) for index in channels]
        lesion = sitk.GetArrayFromImage(read_image(case.label_file)) > 0
        start = time.perf_counter()
        result = predictor.predict(healthy, lesion, seed=0)
        seconds.append(time.perf_counter() - start)
        for index, image in zip(channels, result.images):
            write_image_atomic(image, synthesised / case.image_files[index].name)
        write_preview(output / f"{case.identifier}_preview.png", [sitk.GetArrayFromImage(i) for i in healthy], lesion,
                      [sitk.GetArrayFromImage(i) for i in result.images], Geometry.of(healthy[0]), channel_names,
                      f"{case.identifier}: lesions synthesised by {arguments.model}")

    rows_by_method = {"lesion-free input (no synthesis)": (inputs, None),
                      label: (synthesised, float(np.mean(seconds))),
                      "real lesions (reference)": (references, None)}
    contrasts = {method: {channel: [] for channel in channel_names} for method in rows_by_method}
    # Coverage (issue 12): the share of the lesion mask changed from the lesion-free input by more than
    # DEFAULT_NOISE_FACTOR x the input's noise level in the surrounding normal WM, per channel.
    covered = {method: {channel: [] for channel in channel_names} for method in rows_by_method}
    for case in cases:
        lesion_image = read_image(case.label_file)
        lesion = sitk.GetArrayFromImage(lesion_image) > 0
        dilated = sitk.GetArrayFromImage(read_image(masks / case.label_file.name)) > 0
        tissue = sitk.GetArrayFromImage(read_image(case.tissue_file))
        shell = normal_white_matter_shell(lesion, tissue, dilated, lesion_image.GetSpacing())
        healthy = {index: sitk.GetArrayFromImage(read_image(inputs / case.image_files[index].name)).astype(np.float64)
                   for index in channels}
        for method, (folder, _) in rows_by_method.items():
            for index, channel in zip(channels, channel_names):
                image = sitk.GetArrayFromImage(read_image(folder / case.image_files[index].name)).astype(np.float64)
                contrasts[method][channel].append(lesion_contrast_percent(image, lesion, shell))
                threshold = DEFAULT_NOISE_FACTOR * noise_level(healthy[index], shell)
                covered[method][channel].append(coverage(healthy[index], image, lesion, threshold))

    header = (["method", "seconds/case"] + [f"{p} {m}" for p, m in METRICS]
              + [f"{channel} lesion contrast %" for channel in channel_names]
              + [f"{channel} coverage" for channel in channel_names])
    rows = []
    for method, (folder, time_per_case) in rows_by_method.items():
        row: list = [method, time_per_case]
        if folder is references:
            row += [None] * len(METRICS)
        else:
            result = evaluate_folder(references, folder, masks, output_json=folder / "summary.json",
                                     lpips=not arguments.no_lpips, num_processes=1)
            for protocol, metric in METRICS:
                entry = result["aggregate"].get(protocol, {}).get(metric)
                row.append(None if entry is None else entry["mean"])
        row += [float(np.nanmean(contrasts[method][channel])) for channel in channel_names]
        row += [float(np.nanmean(covered[method][channel])) for channel in channel_names]
        rows.append(row)
    summary = (f"Dataset {name}, {len(cases)} test cases: lesions synthesised into the lesion-free scans in the real "
               f"lesion masks, scored against the scans with the real lesions inside the masks dilated by {radius} "
               f"voxel(s) (thesis: [-1, 1], SSIM 7x7 data range 2, PSNR 10 log10(4/MSE); brats2023: percentile-"
               f"normalised). Lesion contrast: % difference of the lesion mean from the normal WM {SHELL_MM[0]:g}-"
               f"{SHELL_MM[1]:g} mm around it (T1w lesions are darker, FLAIR lesions brighter). Coverage: share of the "
               f"lesion mask changed from the lesion-free input by more than {DEFAULT_NOISE_FACTOR:g} x its noise level "
               f"in that WM.")
    provenance = result_provenance([Path(arguments.model)], arguments.checkpoint)
    table = write_report(output, "synthesis", summary, header, rows, provenance)
    print(summary)
    print(table)
    print(write_per_case(output, [case.identifier for case in cases], channel_names, contrasts[label],
                         contrasts["real lesions (reference)"], provenance))


def write_per_case(output: Path, cases: list[str], channel_names: list[str], synthetic: dict[str, list[float]],
                   real: dict[str, list[float]], provenance: dict) -> str:
    """``synthesis_per_case.*``: each case's real and synthetic lesion contrast per channel.

    The example phantoms' lesion contrast differs from case to case (as it does between patients); a
    synthesiser that follows the scan paints contrasts that track the real ones across cases. The
    description gives the Pearson correlation over cases and the mean ratio synthetic / real.
    """
    header = ["case"] + [f"{c} {kind} %" for c in channel_names for kind in ("real", "synthetic")]
    rows = [[case] + [value for c in channel_names for value in (real[c][i], synthetic[c][i])]
            for i, case in enumerate(cases)]
    notes = []
    for channel in channel_names:
        r, y = np.asarray(real[channel]), np.asarray(synthetic[channel])
        keep = np.isfinite(r) & np.isfinite(y)
        correlation = float(np.corrcoef(r[keep], y[keep])[0, 1]) if keep.sum() > 2 else float("nan")
        notes.append(f"{channel}: real {np.nanmin(r):.1f} to {np.nanmax(r):.1f} %, synthetic {np.nanmin(y):.1f} to "
                     f"{np.nanmax(y):.1f} %, mean ratio synthetic/real {float(np.nanmean(y / r)):.2f}, correlation "
                     f"over cases {correlation:.2f}")
    description = ("Lesion contrast per test case (same definition as synthesis.md): does the synthesiser follow "
                   "each scan's own lesion contrast? " + "; ".join(notes) + ".")
    return write_report(output, "synthesis_per_case", description, header, rows, provenance)


if __name__ == "__main__":
    main()
