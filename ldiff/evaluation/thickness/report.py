"""What ``ldiff_evaluate_thickness`` writes (all atomically):

* ``thickness.json``: settings, provenance, every scan's region means, seconds, failures and the
  comparison rows;
* ``thickness_scans.csv``: one row per method, case and region (thickness, cortex voxels);
* ``thickness.csv``: the comparison rows (method, region, change, bias, share removed);
* ``thickness.md``: the global table and the per-region table;
* ``thickness_regions.png``: per region, each method's bias against the truth (or its change against
  the unfilled scans when there is no truth), every case as a dot;
* ``thickness_map.png``: the brain map: axial slices of the first case's cortex, each region coloured
  by a method's mean bias (or change), one row per method.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ldiff.io import atomic_path, save_json_atomic

from .regions import REGION_NAMES

REGIONS = ("global",) + REGION_NAMES


def _cell(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(study: dict, rows: list[dict], reference: str, truth: str | None, header: str) -> str:
    """The global table (one row per method) and the per-region table."""
    seconds = {m: float(np.mean(list(s.values()))) if s else float("nan") for m, s in study["seconds"].items()}
    columns = ["method", "thickness mm", f"thesis change vs {reference} %", f"% difference vs {reference}"]
    if truth is not None:
        columns += [f"bias vs {truth} mm", "|bias| mm", "bias removed"]
    columns += ["s/scan"]
    lines = [header, "", "Whole cortex (mean over cases):", "", "| " + " | ".join(columns) + " |",
             "|" + "---|" * len(columns)]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by_key = {(r["method"], r["region"]): r for r in rows}
    for method in methods:
        row = by_key[(method, "global")]
        cells = [method, _cell(row["thickness_mm"], 3), _cell(row["thesis_change_pct"], 3),
                 _cell(row["percent_difference_pct"], 3)]
        if truth is not None:
            cells += [_cell(row["bias_mm"], 3), _cell(row["abs_bias_mm"], 3), _cell(row["bias_removed"], 2)]
        cells.append(_cell(seconds.get(method), 0))
        lines.append("| " + " | ".join(cells) + " |")
    if truth is not None:
        lines.append(f"| {truth} | {_cell(_truth_mean(study, truth), 3)} | | | | | | "
                     f"{_cell(seconds.get(truth), 0)} |")
    metric, label = ("bias_mm", f"bias vs {truth}, mm") if truth is not None else ("thesis_change_pct",
                                                                                  f"thesis change vs {reference}, %")
    lines += ["", f"Per region ({label}; mean over cases):", "",
              "| method | " + " | ".join(REGIONS) + " |", "|" + "---|" * (len(REGIONS) + 1)]
    for method in methods:
        if truth is None and method == reference:
            continue
        lines.append(f"| {method} | " + " | ".join(_cell(by_key[(method, r)][metric], 3) for r in REGIONS) + " |")
    if study["failures"]:
        lines += ["", "Failed scans (left out of the means):"]
        lines += [f"- {f['method']} {f['case']} ({f['file']}): {f['error']}" for f in study["failures"]]
    return "\n".join(lines) + "\n"


def _truth_mean(study: dict, truth: str) -> float:
    values = [table["global"] for table in study["tables"].get(truth, {}).values()]
    return float(np.mean(values)) if values else float("nan")


def write_tables(output: Path, study: dict, rows: list[dict], settings: dict, text: str) -> None:
    """thickness.json, thickness_scans.csv, thickness.csv and thickness.md."""
    output.mkdir(parents=True, exist_ok=True)
    save_json_atomic({"settings": settings, **study, "comparison": rows}, output / "thickness.json")
    with atomic_path(output / "thickness_scans.csv") as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "case", "region", "thickness_mm", "seconds"])
        for method, cases in study["tables"].items():
            for case, table in cases.items():
                for region, value in table.items():
                    writer.writerow([method, case, region, value, study["seconds"][method].get(case)])
    if rows:
        with atomic_path(output / "thickness.csv") as temporary, open(temporary, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    with atomic_path(output / "thickness.md") as temporary:
        temporary.write_text(text, encoding="utf-8")


def plot_regions(path: Path, study: dict, reference: str, truth: str | None) -> None:
    """Per region, a bar per method (mean over cases) with every case as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = study["tables"]
    methods = [m for m in tables if m != truth and (truth is not None or m != reference)]
    figure, axis = plt.subplots(figsize=(max(8, 1.1 * len(REGIONS) * max(1, len(methods)) / 3), 4.5))
    width = 0.8 / max(len(methods), 1)
    colours = plt.get_cmap("tab10")
    for m, method in enumerate(methods):
        per_case = []
        for case, table in tables[method].items():
            base = tables[truth] if truth is not None else tables[reference]
            if case not in base:
                continue
            per_case.append([table[r] - base[case][r] if truth is not None
                             else 100 * abs(table[r] - base[case][r]) / (table[r] + base[case][r]) for r in REGIONS])
        if not per_case:
            continue
        values = np.asarray(per_case, dtype=float)
        positions = np.arange(len(REGIONS)) + (m - (len(methods) - 1) / 2) * width
        finite = np.isfinite(values)
        means = np.where(finite.any(axis=0), np.where(finite, values, 0).sum(axis=0) / np.maximum(finite.sum(axis=0), 1), np.nan)
        axis.bar(positions, means, width, color=colours(m % 10), label=method)
        for case_values in values:
            axis.plot(positions, case_values, ".", color="black", markersize=3)
    axis.axhline(0, color="black", linewidth=0.8)
    axis.set_xticks(range(len(REGIONS)), REGIONS, rotation=30, ha="right", fontsize=8)
    axis.set_ylabel(f"thickness bias vs {truth} (mm)" if truth is not None
                    else f"thesis change vs {reference} (%)")
    axis.legend(fontsize=7, ncol=2)
    axis.set_title("Cortical thickness per region (bars: mean over cases; dots: cases)")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)


def plot_brain_map(path: Path, rows: list[dict], sectors: np.ndarray, cortex: np.ndarray, reference: str,
                   truth: str | None, methods: Sequence[str]) -> None:
    """Axial slices of one case's cortex, each region coloured by a method's mean value (one row each)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric, label, cmap = (("bias_mm", f"bias vs {truth} (mm)", "RdBu_r") if truth is not None
                           else ("thesis_change_pct", f"thesis change vs {reference} (%)", "viridis"))
    by_key = {(r["method"], r["region"]): r[metric] for r in rows}
    occupied = np.flatnonzero(cortex.any(axis=(1, 2)))
    if occupied.size == 0 or not methods:
        return
    levels = [int(occupied[0] + f * (occupied[-1] - occupied[0])) for f in (0.35, 0.55, 0.75)]
    values = [v for m in methods for r in REGION_NAMES if math.isfinite(v := by_key.get((m, r), math.nan))]
    limit = max((abs(v) for v in values), default=1.0) or 1.0
    low, high = (-limit, limit) if truth is not None else (0.0, limit)
    figure, axes = plt.subplots(len(methods), len(levels), figsize=(2.6 * len(levels), 2.8 * len(methods)),
                                squeeze=False)
    image = None
    for row, method in enumerate(methods):
        colour_volume = np.full(sectors.shape, np.nan)
        for label_index, region in enumerate(REGION_NAMES, start=1):
            colour_volume[(sectors == label_index) & cortex] = by_key.get((method, region), math.nan)
        for column, z in enumerate(levels):
            axis = axes[row, column]
            axis.imshow(cortex[z][::-1], cmap="gray_r", alpha=0.15)
            image = axis.imshow(colour_volume[z][::-1], cmap=cmap, vmin=low, vmax=high)
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(method, fontsize=8)
    figure.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label=label)
    figure.suptitle("Per-region thickness " + ("bias" if truth is not None else "change") + " on the cortex")
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100, format="png")
    plt.close(figure)
