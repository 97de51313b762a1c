"""Evaluate filled images against a known truth: predictions, references and masks in folders.

Layout (``ending`` is ``.nii.gz`` or ``.nii``): the prediction folder holds ``{case}_XXXX{ending}``
files (``_0000`` must exist for a case to count; every channel present is evaluated), the
reference folder the files of the same names (e.g. the healthy ground truth ``healthyTs``), the
mask folder ``{case}{ending}`` (the region that was filled). Three single files work as one case.
Reference files without a prediction are listed in the summary and a warning, not evaluated.

Every file is read and checked before any metric is computed (missing files, grids, binary masks,
NaN, constant references), so a refused run costs seconds and writes nothing. A case whose mask is
empty (after the optional dilation) has no in-mask metrics: it is skipped with a warning and listed
under ``skipped``; since every method of a benchmark is evaluated with the same masks, they all
skip the same cases. ``dilate`` grows each mask by N voxels before evaluation, with the kernel of
``ldiff_fill_classic --dilate`` (a ball counted along the finest axis; ``cube`` with N = 1 is the
thesis's 3x3x3 kernel).

Metrics come from :mod:`ldiff.evaluation.metrics` under two protocols (see ``PROTOCOL_DESCRIPTIONS``);
every key and column carries the protocol's name. The thesis protocol's [-1, 1] scaling uses the
reference's min and max for both images (metrics.py's default), so a prediction with the wrong
intensity scale is penalised rather than rescaled. PSNR of identical images is ``inf`` and metrics of
an empty region ``nan`` in the returned dict; the JSON file has ``null`` for both.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import logging
import math
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from ldiff.errors import LdiffError
from ldiff.io import Geometry, atomic_path, geometry_mismatch, read_image, save_json_atomic
from ldiff.io.images import read_geometry
from ldiff.io.cases import find_case_channels, nifti_ending, read_binary_mask, split_channel_name
from ldiff.parallel import default_num_workers, map_cases

logger = logging.getLogger("ldiff")

PROTOCOLS = ("thesis", "brats2023")
PROTOCOL_DESCRIPTIONS = {
    "thesis": "Reference-thesis protocol: prediction and reference mapped to [-1, 1] with one linear map from "
    "the reference's (min, max) (recorded as intensity_low/high), clipped; SSIM maps of skimage per axial "
    "slice (7x7 uniform window, data_range 2) averaged over the mask voxels (ssim_in), the others (ssim_out) "
    "and all (ssim_full); MSE likewise; PSNR = 10 log10(4 / MSE). lpips_crops: LPIPS (AlexNet v0.1) on the "
    "same [-1, 1] images, mean over the axial slices holding mask voxels, each cut to the mask's bounding "
    "box plus 8 pixels (at least 32x32).",
    "brats2023": "BraTS 2023 healthy-tissue-inpainting protocol: both images multiplied by the mask, clipped to "
    "the 0.5th/99.5th percentiles of the reference with the mask voided (lower bound at least 0; recorded as "
    "intensity_low/high) and mapped to [0, 1]; MSE, PSNR (data range 1) and Gaussian-window SSIM (sigma 1.5, "
    "2D per sagittal plane) over the mask voxels (_in); _full repeats them on the unmasked normalised volumes.",
    "aggregation": "Per metric over the evaluated (case, channel) pairs: mean, std (population, ddof 0), median and "
    "n, ignoring undefined (NaN) values; an infinite PSNR (identical images) makes the mean infinite. JSON writes "
    "infinite and undefined values as null. aggregate_by_channel repeats this per channel.",
}
_METRIC_PREFIXES = ("ssim", "mse", "psnr", "lpips")
# The columns of the console table: the in-mask numbers each protocol is known for.
TABLE_METRICS = (
    ("thesis", "ssim_in"), ("thesis", "psnr_in"), ("thesis", "mse_in"), ("thesis", "lpips_crops"),
    ("brats2023", "ssim_in"), ("brats2023", "psnr_in"), ("brats2023", "mse_in"),
)


@dataclasses.dataclass(frozen=True)
class EvaluationCase:
    """One case: its mask and, per channel, (channel, prediction file, reference file)."""

    identifier: str
    mask_file: Path
    channels: tuple[tuple[str, Path, Path], ...]


@dataclasses.dataclass(frozen=True)
class EvaluationOptions:
    """How each case is evaluated; ``single_thread`` is set in worker processes to avoid oversubscription."""

    dilate: int = 0
    dilate_shape: str = "ball"
    lpips: bool = True
    single_thread: bool = False


def plan_cases(reference: Path, prediction: Path, masks: Path) -> tuple[list[EvaluationCase], list[str]]:
    """The cases to evaluate and the reference files that have no prediction; raises for missing files."""
    for path, what in ((prediction, "prediction"), (reference, "reference"), (masks, "mask")):
        if not path.exists():
            raise LdiffError(f"{path}: {what} not found.")
    if prediction.is_file():
        for path, what in ((reference, "reference"), (masks, "mask")):
            if not path.is_file():
                raise LdiffError(
                    f"{path}: is a folder, but the prediction {prediction} is one file; give its {what} file."
                )
        parts = split_channel_name(prediction.name)
        ending = nifti_ending(prediction)
        identifier = parts[0] if parts else (prediction.name[: -len(ending)] if ending else prediction.stem)
        return [EvaluationCase(identifier, masks, ((parts[1] if parts else "0000", prediction, reference),))], []
    for path, what in ((reference, "reference images"), (masks, "masks")):
        if not path.is_dir():
            raise LdiffError(
                f"{path}: is a file, but the prediction {prediction} is a folder; give a folder of {what}."
            )
    cases = []
    for found in find_case_channels(prediction):
        mask_file = masks / f"{found.case}{found.ending}"
        if not mask_file.is_file():
            raise LdiffError(f"{mask_file}: mask of case {found.case} not found.")
        channels = []
        for channel, predicted in found.files:
            reference_file = reference / predicted.name
            if not reference_file.is_file():
                raise LdiffError(f"{reference_file}: reference of the prediction {predicted} not found.")
            channels.append((channel, predicted, reference_file))
        cases.append(EvaluationCase(found.case, mask_file, tuple(channels)))
    if not cases:
        raise LdiffError(f"{prediction}: contains no {{case}}_0000.nii.gz predictions to evaluate.")
    predicted = {path.name for case in cases for _, path, _ in case.channels}
    unmatched = [
        str(path) for found in find_case_channels(reference) for _, path in found.files if path.name not in predicted
    ]
    return cases, unmatched


def _read_volume(path: Path) -> tuple[np.ndarray, Geometry]:
    """float64 (z, y, x) voxels and grid of an image; NaN/Inf refused (also in non-NIfTI formats)."""
    image = read_image(path)
    voxels = sitk.GetArrayFromImage(image).astype(np.float64)
    if not np.isfinite(voxels).all():
        raise LdiffError(f"{path}: contains NaN or infinite voxels.")
    return voxels, Geometry.of(image)


def iter_case_volumes(
    case: EvaluationCase, options: EvaluationOptions
) -> Iterator[tuple[str, Path, Path, np.ndarray, np.ndarray, np.ndarray]]:
    """Read and check a case channel by channel, so only one channel's volumes are in memory at a time.

    Yields (channel, prediction file, reference file, prediction, reference, mask), the mask dilated as
    ``options`` ask. Raises LdiffError naming the file for any grid, mask or content problem.
    """
    from ldiff.masks.morphology import dilate_mask

    mask, case_geometry = None, None
    for channel, prediction_file, reference_file in case.channels:
        reference, geometry = _read_volume(reference_file)
        if mask is None:
            case_geometry = geometry
            mask = read_binary_mask(case.mask_file, geometry, reference_file, "mask")
            if options.dilate > 0:
                mask = dilate_mask(mask, options.dilate, spacing=geometry.spacing, shape=options.dilate_shape)
        elif (mismatch := geometry_mismatch(case_geometry, geometry)) is not None:
            raise LdiffError(f"{reference_file}: grid differs from the mask {case.mask_file} ({mismatch}).")
        if not reference.max() > reference.min():
            raise LdiffError(
                f"{reference_file}: the reference is constant ({reference.min():g}); it has no intensity range."
            )
        prediction, prediction_geometry = _read_volume(prediction_file)
        if (mismatch := geometry_mismatch(geometry, prediction_geometry)) is not None:
            raise LdiffError(f"{prediction_file}: grid differs from its reference {reference_file} ({mismatch}).")
        yield channel, prediction_file, reference_file, prediction, reference, mask


def check_case(case: EvaluationCase, options: EvaluationOptions) -> int:
    """Check a case's grids (from the file headers, no voxels read) and its mask; returns the mask's voxel count.

    The images' voxels are read once, by :func:`evaluate_case`, which also refuses NaN and constant
    references; nothing is written before every case has been evaluated.
    """
    mask, case_geometry = None, None
    for _, prediction_file, reference_file in case.channels:
        geometry = read_geometry(reference_file)
        if mask is None:
            case_geometry = geometry
            mask = read_binary_mask(case.mask_file, geometry, reference_file, "mask")
        elif (mismatch := geometry_mismatch(case_geometry, geometry)) is not None:
            raise LdiffError(f"{reference_file}: grid differs from the mask {case.mask_file} ({mismatch}).")
        if (mismatch := geometry_mismatch(geometry, read_geometry(prediction_file))) is not None:
            raise LdiffError(f"{prediction_file}: grid differs from its reference {reference_file} ({mismatch}).")
    return int(mask.sum()) if mask is not None else 0


def evaluate_case(case: EvaluationCase, options: EvaluationOptions) -> list[dict[str, Any]]:
    """Both protocols' metrics for every channel of ``case``: one row (dict) per channel."""
    # Imported here: metrics pulls in torch (LPIPS), which input errors and --help should not wait for.
    from ldiff.evaluation.metrics import brats_metrics, thesis_metrics

    if options.single_thread:
        import torch

        torch.set_num_threads(1)
    rows = []
    for channel, prediction_file, reference_file, prediction, reference, mask in iter_case_volumes(case, options):
        intensity_range = (float(reference.min()), float(reference.max()))
        try:
            thesis = thesis_metrics(prediction, reference, mask, intensity_range, include_lpips=options.lpips)
            brats = brats_metrics(prediction, reference, mask)
        except ValueError as error:  # e.g. volumes smaller than the SSIM window or the LPIPS crop
            raise LdiffError(f"{prediction_file}: cannot be evaluated against {reference_file}: {error}.") from None
        thesis.update(intensity_low=intensity_range[0], intensity_high=intensity_range[1])
        rows.append({
            "case": case.identifier, "channel": channel, "voxels_in": int(mask.sum()),
            "prediction": str(prediction_file), "reference": str(reference_file), "mask": str(case.mask_file),
            "thesis": _protocol_values(thesis), "brats2023": _protocol_values(brats),
        })
    return rows


def _protocol_values(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A protocol's entry of a row: metrics first, then the intensity bounds (``protocol``, ``voxels_in``
    dropped because the row already says them)."""
    values = {key: value for key, value in metrics.items() if key.startswith(_METRIC_PREFIXES)}
    values.update((key, value) for key, value in metrics.items() if key.startswith("intensity_"))
    return values


def summarise(values: Sequence[float]) -> dict[str, float | int]:
    """mean, std (population, ddof 0), median and n of the defined (non-NaN) values."""
    array = np.asarray(values, dtype=np.float64)
    defined = array[~np.isnan(array)]
    if defined.size == 0:
        return {"mean": math.nan, "std": math.nan, "median": math.nan, "n": 0}
    with np.errstate(invalid="ignore"):  # std of values including inf is nan, which is what we report
        return {"mean": float(np.mean(defined)), "std": float(np.std(defined)),
                "median": float(np.median(defined)), "n": int(defined.size)}


def aggregate_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, float | int]]]:
    """``{protocol: {metric: summarise(values over rows)}}`` for every metric key of the rows."""
    return {
        protocol: {
            key: summarise([row[protocol][key] for row in rows])
            for key in rows[0][protocol] if key.startswith(_METRIC_PREFIXES)
        }
        for protocol in PROTOCOLS
    }


def flat_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """One CSV row: the row's plain fields, then ``{protocol}_{key}`` for every protocol value."""
    flat = {key: value for key, value in row.items() if key not in PROTOCOLS}
    for protocol in PROTOCOLS:
        flat.update({f"{protocol}_{key}": value for key, value in row[protocol].items()})
    return flat


def write_summary(result: Mapping[str, Any], output_json: Path) -> Path:
    """Write the CSV (one row per case and channel) and then the JSON, each atomically; returns the CSV path."""
    output_csv = output_json.with_suffix(".csv")
    flat = [flat_row(row) for row in result["cases"]]
    with atomic_path(output_csv) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(flat[0]))
            writer.writeheader()
            writer.writerows(flat)
    save_json_atomic(result, output_json)
    return output_csv


def default_output_json(prediction: str | Path) -> Path:
    """``summary.json`` in a prediction folder; ``{name}_summary.json`` beside a single prediction file."""
    prediction = Path(prediction)
    if prediction.is_dir():
        return prediction / "summary.json"
    ending = nifti_ending(prediction) or prediction.suffix
    return prediction.with_name(f"{prediction.name[: len(prediction.name) - len(ending)]}_summary.json")


def evaluate_folder(
    reference: str | Path,
    prediction: str | Path,
    masks: str | Path,
    output_json: str | Path | None = None,
    dilate: int = 0,
    lpips: bool = True,
    dilate_shape: str = "ball",
    num_processes: int | None = 1,
) -> dict[str, Any]:
    """Evaluate every prediction against its reference inside its (optionally dilated) mask.

    ``reference``, ``prediction``, ``masks``: folders (module docstring) or three single files.
    ``output_json``: where to write the summary (the CSV beside it, same stem); None writes nothing.
    ``lpips``: also compute LPIPS (slow on CPU). ``num_processes``: worker processes (None: CPU count,
    at most 8). Returns the summary: ``inputs``, ``outputs`` (the files written, or None),
    ``protocols`` (descriptions), ``num_cases``, ``aggregate`` (e.g.
    ``result["aggregate"]["thesis"]["psnr_in"]["mean"]``), ``aggregate_by_channel``
    (``[channel][protocol][metric]``), ``cases`` (one entry per case and channel, with a dict of values
    per protocol), ``skipped`` and ``unmatched_references``. Values are floats with ``inf``/``nan``
    kept (the JSON file has null). Raises LdiffError for bad inputs: grids and masks before computing
    anything (file headers only), voxel problems (NaN, a constant reference) when the case is read; in
    every case before anything is written.
    """
    reference, prediction, masks = (Path(path).absolute() for path in (reference, prediction, masks))
    if dilate < 0:
        raise LdiffError(f"--dilate must be 0 or more voxels, got {dilate}.")
    if dilate_shape not in ("ball", "cube"):
        raise LdiffError(f"the dilation shape must be ball or cube, got {dilate_shape!r}.")
    if output_json is not None and Path(output_json).suffix != ".json":
        raise LdiffError(f"{output_json}: the summary must be a .json file (the CSV gets the same stem).")
    cases, unmatched = plan_cases(reference, prediction, masks)
    if unmatched:
        logger.warning(
            "%d reference image(s) have no prediction and are not evaluated, e.g. %s.", len(unmatched), unmatched[0]
        )
    workers = default_num_workers() if num_processes is None else max(1, num_processes)
    options = EvaluationOptions(dilate, dilate_shape, lpips)

    voxel_counts = map_cases(functools.partial(check_case, options=options), cases, workers, "checking")
    evaluated, skipped = [], []
    for case, voxels in zip(cases, voxel_counts):
        if voxels == 0:
            logger.warning("%s: the mask is empty; case %s is skipped.", case.mask_file, case.identifier)
            skipped.append({"case": case.identifier, "mask": str(case.mask_file), "reason": "empty mask"})
        else:
            evaluated.append(case)
    if not evaluated:
        raise LdiffError(f"{masks}: every mask is empty, so there is nothing to evaluate.")
    # map_cases runs a single case in this process, whose torch threads must then stay as the caller set them.
    options = dataclasses.replace(options, single_thread=workers > 1 and len(evaluated) > 1)
    per_case = map_cases(functools.partial(evaluate_case, options=options), evaluated, workers, "evaluating")
    rows = [row for case_rows in per_case for row in case_rows]

    channels = sorted({row["channel"] for row in rows})
    result: dict[str, Any] = {
        "inputs": {"reference": str(reference), "prediction": str(prediction), "masks": str(masks),
                   "dilate": dilate, "dilate_shape": dilate_shape, "lpips": lpips},
        "outputs": None,
        "protocols": dict(PROTOCOL_DESCRIPTIONS),
        "num_cases": len(evaluated),
        "aggregate": aggregate_rows(rows),
        "aggregate_by_channel": {
            channel: aggregate_rows([row for row in rows if row["channel"] == channel]) for channel in channels
        },
        "cases": rows,
        "skipped": skipped,
        "unmatched_references": unmatched,
    }
    if output_json is not None:
        output_json = Path(output_json).absolute()
        result["outputs"] = {"json": str(output_json), "csv": str(output_json.with_suffix(".csv"))}
        write_summary(result, output_json)
    return result


def _format_cell(value: Any) -> tuple[str, bool]:
    """The text of one table cell and whether it is a number (numbers are right-aligned)."""
    if value is None:
        return "-", True
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return str(value), False
    if isinstance(value, (int, np.integer)):
        return str(value), True
    return f"{float(value):.4g}", True


def format_table(rows: Sequence[Mapping[str, Any] | Sequence[Any]], columns: Sequence[str]) -> str:
    """A fixed-width, markdown-style table; rows are dicts keyed by column name or sequences of cells.

    Floats get 4 significant digits (``inf``/``nan`` as such), None and missing keys print as ``-``;
    numbers are right-aligned, text left-aligned.
    """
    cells = [
        [_format_cell(row.get(column) if isinstance(row, Mapping) else row[index])
         for index, column in enumerate(columns)]
        for row in rows
    ]
    widths = [max([len(column)] + [len(row[index][0]) for row in cells]) for index, column in enumerate(columns)]
    lines = ["| " + " | ".join(column.ljust(width) for column, width in zip(columns, widths)) + " |",
             "|" + "|".join("-" * (width + 2) for width in widths) + "|"]
    for row in cells:
        texts = [text.rjust(width) if numeric else text.ljust(width) for (text, numeric), width in zip(row, widths)]
        lines.append("| " + " | ".join(texts) + " |")
    return "\n".join(lines)


def summary_table(result: Mapping[str, Any]) -> str:
    """Cases x main in-mask metrics of an :func:`evaluate_folder` result, with mean rows at the bottom."""
    metrics = [(protocol, key) for protocol, key in TABLE_METRICS if key in result["aggregate"][protocol]]
    columns = ["case", "channel", "voxels_in"] + [f"{protocol} {key}" for protocol, key in metrics]
    rows: list[dict[str, Any]] = [
        {"case": row["case"], "channel": row["channel"], "voxels_in": row["voxels_in"],
         **{f"{protocol} {key}": row[protocol][key] for protocol, key in metrics}}
        for row in result["cases"]
    ]
    means = [("all", result["aggregate"])]
    if len(result["aggregate_by_channel"]) > 1:
        means += list(result["aggregate_by_channel"].items())
    for channel, aggregate in means:
        rows.append({"case": "mean", "channel": channel,
                     **{f"{protocol} {key}": aggregate[protocol][key]["mean"] for protocol, key in metrics}})
    return format_table(rows, columns)
