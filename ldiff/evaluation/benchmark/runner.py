"""``ldiff_benchmark``: fill quality of every method on a user's own scans.

For each case:

1. **Transplanted lesions, truth known** (:mod:`transplant`): the case's lesion shapes (or those of
   ``shapes_from``) are moved into its normal-appearing WM and painted with its own lesion
   appearance. Every method fills them; each filled channel is scored against the real tissue inside
   the mask dilated by ``dilate`` voxels (the region every method replaces) in both protocols of
   ``ldiff_evaluate`` (thesis and BraTS 2023) and with LPIPS. The painted input itself is scored too
   (row ``input``): what a method must improve on.
2. **Real lesions, no truth**: every method fills the case's real lesions; scored by the residual
   contrast of the filled region against the NAWM 2-5 mm around it (% of that NAWM, weighted by
   volume; 0 is ideal, row ``input`` shows the lesions' own contrast) and, on the T1-weighted
   channel, the fraction of filled voxels that the scan's three-class intensity split calls WM.

Seconds per case are measured around each fill. Everything is seeded from ``seed`` and the case name,
so a run is deterministic and a case's numbers do not depend on the other cases.
"""
from __future__ import annotations

import logging
import math
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from ldiff.errors import LdiffError
from ldiff.evaluation.benchmark.cases import BenchmarkCase, LoadedCase, load_case
from ldiff.evaluation.benchmark.lesion_context import (WM_CLASS, normal_appearing_wm, per_lesion_contrast,
                                                        summarise_contrasts, tissue_centres, tissue_classes,
                                                        wm_fraction)
from ldiff.preprocessing.brain_masks import derive_brain_mask
from ldiff.evaluation.benchmark.methods import MethodRunner, MethodSpec
from ldiff.evaluation.benchmark.transplant import TransplantSettings, make_transplanted_case, shapes_of
from ldiff.masks import dilate_mask

logger = logging.getLogger("ldiff")

INPUT_ROW = "input"
PREVIEW_HALF_WIDTH = 24  # voxels either side of the lesion centre in the zoomed previews


@dataclass(frozen=True)
class BenchmarkSettings:
    """``dilate``: voxels (ball, counted along the finest axis) every method replaces around the mask;
    None = the first ldiff model's planned dilation (none without an ldiff method). ``t1_channel``: the channel that gives the tissue
    split (None = the first whose name contains "t1", else channel 0)."""

    seed: int = 0
    dilate: int | None = None
    lpips: bool = True
    real_lesions: bool = True
    t1_channel: int | None = None
    device: str = "auto"
    transplant: TransplantSettings = field(default_factory=TransplantSettings)


def pick_t1_channel(channel_names: Sequence[str], requested: int | None) -> int:
    """The channel index of the tissue split (see :class:`BenchmarkSettings`)."""
    if requested is not None:
        if not 0 <= requested < len(channel_names):
            raise LdiffError(f"--t1-channel {requested}: the cases have {len(channel_names)} channel(s).")
        return requested
    return next((i for i, name in enumerate(channel_names) if "t1" in name.lower()), 0)


def resolve_dilation(runners: Sequence[MethodRunner], requested: int | None, num_channels: int,
                     spacing: Sequence[float]) -> float:
    """The dilation radius (mm) every method replaces (see :class:`BenchmarkSettings`); warns when a model's
    own dilation differs, since it then repaints another region than the one scored."""
    planned = []
    for runner in runners:
        if runner.spec.is_ldiff:
            runner.predictor(num_channels)
            planned.append((runner.spec.label, runner.dilation_mm()))
    finest = float(min(spacing))
    radius = requested * finest if requested is not None else (planned[0][1] if planned else 0.0)
    for label, model_mm in planned:
        if abs(model_mm - radius) > 1e-6:
            logger.warning("%s dilates by %.2f mm, the benchmark scores %.2f mm around the mask: its numbers "
                           "include voxels it does not repaint, or leave out some it does.", label, model_mm, radius)
    return float(radius)


def score_channel(prediction: np.ndarray, truth: np.ndarray, region: np.ndarray, lpips: bool) -> dict[str, float]:
    """In-region metrics of one channel in both protocols (``thesis_*``, ``brats_*``, ``lpips``) and
    ``level_error_pct``: the region's mean intensity against the truth's, in % of the truth's (negative =
    the fill is too dark). Squared-error scores mix a wrong level with wrong structure; this says which
    way a method's level leans on a scanner, which a user can check before trusting it."""
    from ldiff.evaluation.metrics import brats_metrics, thesis_metrics

    thesis = thesis_metrics(prediction, truth, region, (float(truth.min()), float(truth.max())), include_lpips=lpips)
    brats = brats_metrics(prediction, truth, region)
    row = {f"thesis_{key}": thesis[key] for key in ("ssim_in", "psnr_in", "mse_in")}
    row.update({f"brats_{key}": brats[key] for key in ("ssim_in", "psnr_in", "mse_in")})
    true_level = float(np.mean(truth[region]))
    row["level_error_pct"] = (100.0 * (float(np.mean(prediction[region])) - true_level) / abs(true_level)
                              if true_level else math.nan)
    if lpips:
        row["lpips"] = thesis["lpips_crops"]
    return row


def preview_crop(volume: np.ndarray, centre: Sequence[int]) -> np.ndarray:
    """The axial (y, x) window of :data:`PREVIEW_HALF_WIDTH` around ``centre`` (z, y, x), float32."""
    z, y, x = centre
    h = PREVIEW_HALF_WIDTH
    ys = slice(max(0, y - h), min(volume.shape[1], y + h))
    xs = slice(max(0, x - h), min(volume.shape[2], x + h))
    return np.asarray(volume[z, ys, xs], dtype=np.float32)


def case_seed(seed: int, case: str) -> list[int]:
    return [int(seed), zlib.crc32(case.encode("utf-8"))]


def _shape_library(shapes_from: Sequence[Path] | None, spacing: Sequence[float], min_voxels: int) -> list | None:
    if not shapes_from:
        return None
    from ldiff.io import Geometry, read_image
    import SimpleITK as sitk

    shapes = []
    for path in shapes_from:
        image = read_image(path)
        if not np.allclose(image.GetSpacing(), spacing, rtol=0.01):
            raise LdiffError(f"{path}: --shapes-from spacing {tuple(round(s, 3) for s in image.GetSpacing())} mm "
                             f"differs from the scans' {tuple(round(s, 3) for s in spacing)} mm.")
        shapes.extend(shapes_of(sitk.GetArrayFromImage(image) > 0, Geometry.of(image).spacing, min_voxels))
    if not shapes:
        raise LdiffError(f"--shapes-from: no lesion of at least {min_voxels} voxels in {len(shapes_from)} mask(s).")
    return shapes


def benchmark_case(loaded: LoadedCase, channel_names: Sequence[str], runners: Sequence[MethodRunner],
                   settings: BenchmarkSettings, dilate_mm: float, t1: int, shapes: list | None) -> dict[str, Any]:
    """Both parts of the benchmark on one case (module docstring); returns its rows and previews."""
    spacing = loaded.geometry.spacing
    rng = np.random.default_rng(case_seed(settings.seed, loaded.name))
    try:
        case = make_transplanted_case(loaded.images, loaded.lesion, spacing, rng, t1, shapes, settings.transplant)
    except ValueError as error:
        raise LdiffError(f"{loaded.name}: cannot build transplanted lesions: {error}.") from None
    region = dilate_mask(case.mask, spacing=spacing, radius_mm=dilate_mm)
    wm = tissue_classes(case.images[t1], region) == WM_CLASS
    rows, real_rows, lesion_rows = [], [], []
    centre = _largest_centre(case.mask)
    previews = {"mask": preview_crop(case.mask, centre), "truth": [preview_crop(v, centre) for v in case.truth],
                INPUT_ROW: [preview_crop(v, centre) for v in case.images], "methods": {}}
    outputs = [(INPUT_ROW, {c: case.images[c] for c in range(len(channel_names))}, 0.0)]
    for runner in runners:
        channels = runner.channels(channel_names)
        filled, seconds = runner.fill(case.images, case.mask, region, wm, loaded.geometry, channels,
                                      settings.seed, loaded.name)
        outputs.append((runner.spec.label, filled, seconds))
    for label, filled, seconds in outputs:
        for channel, values in filled.items():
            row = {"case": loaded.name, "method": label, "channel": channel_names[channel], "seconds": seconds,
                   "voxels": int(region.sum())}
            row.update(score_channel(values, case.truth[channel], region, settings.lpips))
            rows.append(row)
        if label != INPUT_ROW:
            previews["methods"][label] = {channel_names[c]: preview_crop(v, centre) for c, v in filled.items()}
    if settings.real_lesions and loaded.lesion.any():
        real_rows, lesion_rows = real_lesion_rows(loaded, channel_names, runners, settings, dilate_mm, t1)
    info = {"case": loaded.name, "shapes_placed": case.placed, "shapes_available": case.available,
            "scored_voxels": int(region.sum()), **case.info,
            "appearance": {channel_names[c]: a.to_dict() for c, a in enumerate(case.appearances)}}
    return {"rows": rows, "real_rows": real_rows, "lesion_rows": lesion_rows, "info": info, "previews": previews}


def real_lesion_rows(loaded: LoadedCase, channel_names: Sequence[str], runners: Sequence[MethodRunner],
                     settings: BenchmarkSettings, dilate_mm: float,
                     t1: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Part 2 of the module docstring on one case: a row per method and channel, and a row per method, channel
    and lesion (:func:`per_lesion_contrast`)."""
    spacing = loaded.geometry.spacing
    region = dilate_mask(loaded.lesion, spacing=spacing, radius_mm=dilate_mm)
    brain = derive_brain_mask(loaded.images[t1], region)
    centres = tissue_centres(loaded.images[t1], region, brain)
    classes = tissue_classes(loaded.images[t1], region, brain, centres)
    nawm = normal_appearing_wm(classes, region, spacing)
    outputs = [(INPUT_ROW, {c: loaded.images[c] for c in range(len(channel_names))}, 0.0)]
    for runner in runners:
        filled, seconds = runner.fill(loaded.images, loaded.lesion, region, classes == WM_CLASS, loaded.geometry,
                                      runner.channels(channel_names), settings.seed, loaded.name)
        outputs.append((runner.spec.label, filled, seconds))
    rows, lesion_rows = [], []
    for label, filled, seconds in outputs:
        for channel, values in filled.items():
            lesions = per_lesion_contrast(values, region, nawm, classes, spacing)
            contrast = summarise_contrasts([(lesion["voxels"], lesion["contrast_pct"]) for lesion in lesions])
            lesion_rows += [{"case": loaded.name, "method": label, "channel": channel_names[channel], "lesion": index,
                             **lesion} for index, lesion in enumerate(lesions, start=1)]
            row = {"case": loaded.name, "method": label, "channel": channel_names[channel], "seconds": seconds,
                   "lesions": len(contrast.per_lesion), "voxels": int(region.sum()),
                   "residual_contrast_abs_pct": contrast.weighted_abs,
                   "residual_contrast_signed_pct": contrast.weighted_signed,
                   "wm_fraction": (wm_fraction(values, region, centres) if channel == t1
                                   else math.nan)}
            rows.append(row)
    return rows, lesion_rows


def _largest_centre(mask: np.ndarray) -> tuple[int, int, int]:
    from ldiff.inference.preview import largest_lesion_centre

    return largest_lesion_centre(mask)


def summarise_rows(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """Mean, std and median of ``metrics`` per (method, channel), in the order rows first name them."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["channel"]), []).append(row)
    summary = []
    for (method, channel), members in groups.items():
        entry: dict[str, Any] = {"method": method, "channel": channel, "cases": len(members)}
        for metric in metrics:
            values = np.array([m[metric] for m in members if metric in m], dtype=np.float64)
            values = values[~np.isnan(values)]
            finite = values[np.isfinite(values)]
            entry[metric] = float(np.mean(values)) if values.size else math.nan
            entry[f"{metric}_std"] = float(np.std(finite)) if finite.size else math.nan
            entry[f"{metric}_median"] = float(np.median(values)) if values.size else math.nan
        summary.append(entry)
    return summary


def run_benchmark(cases: Sequence[BenchmarkCase], channel_names: Sequence[str] | None, methods: Sequence[MethodSpec],
                  output: str | Path, settings: BenchmarkSettings = BenchmarkSettings(),
                  shapes_from: Sequence[Path] | None = None, progress: bool = True,
                  command: str = "") -> dict[str, Any]:
    """Run the benchmark (module docstring) and write its report to ``output``; returns the result dict."""
    from ldiff.evaluation.benchmark.report import write_benchmark_report

    if not cases:
        raise LdiffError("no case to benchmark.")
    if not methods:
        raise LdiffError("no method to benchmark: give at least one with --methods.")
    counts = {len(case.image_files) for case in cases}
    if len(counts) != 1:
        raise LdiffError("the cases have different numbers of channels; benchmark them separately.")
    num_channels = counts.pop()
    names = list(channel_names) if channel_names else [f"{c:04d}" for c in range(num_channels)]
    if len(names) != num_channels:
        raise LdiffError(f"{len(names)} channel name(s) given for cases with {num_channels} channel(s).")
    t1 = pick_t1_channel(names, settings.t1_channel)
    spacing = None
    for case in tqdm(cases, desc="checking inputs", unit="case", disable=not progress or len(cases) < 2, leave=False):
        checked = load_case(case)  # every file readable and consistent before the long work
        spacing = spacing or checked.geometry.spacing
    runners = [MethodRunner(spec, settings.device) for spec in methods]
    for runner in runners:
        runner.channels(names)  # loads each model, checks its channels: before the long work
    dilate_mm = resolve_dilation(runners, settings.dilate, num_channels, spacing)
    shapes = _shape_library(shapes_from, spacing, settings.transplant.min_voxels)
    results = []
    for case in tqdm(cases, desc="benchmark", unit="case", disable=not progress):
        results.append(benchmark_case(load_case(case), names, runners, settings, dilate_mm, t1, shapes))
    rows = [row for result in results for row in result["rows"]]
    real_rows = [row for result in results for row in result["real_rows"]]
    lesion_rows = [row for result in results for row in result["lesion_rows"]]
    quality = [key for key in rows[0] if key.startswith(("thesis_", "brats_", "lpips", "level_"))] + ["seconds"]
    result = {
        "command": command, "settings": {**asdict(settings), "dilate_mm": dilate_mm, "t1_channel": names[t1]},
        "methods": [spec.label for spec in methods], "models": [runner.describe() for runner in runners],
        "channels": names,
        "cases": [r["info"] for r in results],
        "summary": summarise_rows(rows, quality),
        "real_lesions_summary": summarise_rows(real_rows, ["residual_contrast_abs_pct", "residual_contrast_signed_pct",
                                                           "wm_fraction", "seconds"]) if real_rows else [],
        "rows": rows, "real_lesion_rows": real_rows, "real_lesion_per_lesion_rows": lesion_rows,
    }
    write_benchmark_report(result, {r["info"]["case"]: r["previews"] for r in results}, Path(output))
    return result
