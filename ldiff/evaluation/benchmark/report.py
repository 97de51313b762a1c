"""What ``ldiff_benchmark`` writes: ``benchmark.md`` / ``.csv`` / ``.json``, a bar plot and previews.

* ``benchmark.json``: settings, provenance (command, commit, hardware, date), per-case information
  (shapes placed, lesion appearance measured), per-case rows and per-method summaries.
* ``benchmark.csv``: one row per case, method and channel (transplanted lesions); ``real_lesions.csv``
  the same for the real lesions, ``real_lesions_per_lesion.csv`` each real lesion on its own (its size,
  centre, residual contrast and how much non-white-matter tissue lies right beside it).
* ``benchmark.md``: the summary tables (mean over cases, std in brackets) and the per-case PSNR.
* ``benchmark.png``: per method, thesis-protocol PSNR and SSIM inside the mask (mean, with every case
  as a dot; the axes start near the data, not at 0, so close methods stay distinguishable).
* ``preview_{case}.png`` for the median and the worst case (by the first ldiff method's thesis PSNR,
  else the first method's): zoomed axial crops of input, truth and every method, and below each
  its absolute difference to the truth.
All files are written atomically.
"""
from __future__ import annotations

import csv
import datetime
import math
import os
import platform
import subprocess
import textwrap
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ldiff.io import atomic_path, save_json_atomic

SUMMARY_COLUMNS = (("thesis_ssim_in", "thesis SSIM"), ("thesis_psnr_in", "thesis PSNR"),
                   ("brats_ssim_in", "BraTS SSIM"), ("brats_psnr_in", "BraTS PSNR"), ("lpips", "LPIPS"),
                   ("level_error_pct", "level error %"), ("seconds", "s/case"))
REAL_COLUMNS = (("residual_contrast_abs_pct", "|residual contrast| %"),
                ("residual_contrast_signed_pct", "signed contrast %"), ("wm_fraction", "WM fraction"),
                ("seconds", "s/case"))


def provenance(command: str, models: Sequence[str | Path] = (), checkpoint: str = "final") -> dict[str, Any]:
    """Command, commit, hardware and date of a result file; with ``models`` (model folders) also
    ``models``: the SHA-256 of each one's ``checkpoint`` file, so a number names the weights behind it."""
    import hashlib

    import torch

    from ldiff.io.model_files import checkpoint_file

    root = Path(__file__).resolve().parents[3]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        commit += "+changes" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    device = (torch.cuda.get_device_name(0) if torch.cuda.is_available()
              else f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"{torch.get_num_threads()} torch threads")
    record = {"command": command, "commit": commit, "hardware": device,
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    if models:
        record["models"] = {str(folder): hashlib.sha256((Path(folder) / checkpoint_file(checkpoint)).read_bytes()).hexdigest()
                            for folder in models}
    return record


def short_label(method: str) -> str:
    """A method's label for plots: ``ldiff:.../Dataset019_X/cond_fill__2d/fold_all@steps=3`` becomes
    ``ldiff Dataset019_X`` and ``steps=3`` on a second line (tables keep the full label)."""
    if not method.startswith("ldiff"):
        return method
    head, _, settings = method.partition("@")
    folder = Path(head.partition(":")[2]) if ":" in head else None
    name = "ldiff"
    if folder is not None and folder.parts:
        name += " " + (folder.parts[-3] if folder.name.startswith("fold_") and len(folder.parts) >= 3 else folder.name)
    return name + ("\n" + settings.replace(",", ", ") if settings else "")


def _cell(value: Any, std: Any = None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    if std is not None and isinstance(std, float) and math.isfinite(std):
        text += f" ({std:.{digits}f})"
    return text


def markdown_table(summary: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    header = ["method", "channel", "cases"] + [title for _, title in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in summary:
        cells = [entry["method"], entry["channel"], str(entry["cases"])]
        for key, _ in columns:
            digits = 1 if key == "seconds" or key.endswith("_pct") else (2 if "psnr" in key else 3)
            digits = 2 if key == "level_error_pct" else digits  # fills are within a few % of the truth
            cells.append(_cell(entry.get(key), entry.get(f"{key}_std"), digits))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_case_table(rows: Sequence[dict[str, Any]], key: str) -> str:
    methods = list(dict.fromkeys(row["method"] for row in rows))
    cases = list(dict.fromkeys((row["case"], row["channel"]) for row in rows))
    values = {(row["case"], row["channel"], row["method"]): row.get(key) for row in rows}
    lines = ["| case | channel | " + " | ".join(methods) + " |", "|" + "---|" * (len(methods) + 2)]
    for case, channel in cases:
        lines.append(f"| {case} | {channel} | " + " | ".join(_cell(values.get((case, channel, m)), digits=2)
                                                             for m in methods) + " |")
    return "\n".join(lines)


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    if not rows:
        return
    keys = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_path(path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def ranking_case(rows: Sequence[dict[str, Any]], methods: Sequence[str]) -> tuple[str | None, str | None]:
    """(median case, worst case) by the thesis PSNR of the first ldiff method (else the first method)."""
    label = next((m for m in methods if m.startswith("ldiff")), methods[0] if methods else None)
    first_channel = rows[0]["channel"] if rows else None
    scores = [(row["thesis_psnr_in"], row["case"]) for row in rows
              if row["method"] == label and row["channel"] == first_channel]
    if not scores:
        return None, None
    ordered = sorted(scores)
    return ordered[len(ordered) // 2][1], ordered[0][1]


def write_previews(previews: dict[str, dict], cases: Sequence[str | None], channels: Sequence[str],
                   output: Path) -> list[Path]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    written = []
    for case in dict.fromkeys(c for c in cases if c is not None):
        data = previews[case]
        methods = list(data["methods"])
        columns = ["input", "truth"] + methods
        figure = Figure(figsize=(1.9 * len(columns), 3.9 * len(channels) + 0.5))
        FigureCanvasAgg(figure)
        axes = figure.subplots(2 * len(channels), len(columns), squeeze=False)
        for index, channel in enumerate(channels):
            truth = data["truth"][index]
            panels = [data["input"][index], truth] + [data["methods"][m].get(channel) for m in methods]
            known = truth[data["mask"] == 0] if np.any(data["mask"] == 0) else truth
            low, high = np.percentile(known, [1, 99]) if known.size else (0.0, 1.0)
            spread = float(high - low) or 1.0
            for column, (title, panel) in enumerate(zip(columns, panels)):
                top, bottom = axes[2 * index][column], axes[2 * index + 1][column]
                for axis in (top, bottom):
                    axis.set_xticks([])
                    axis.set_yticks([])
                if panel is None:
                    top.set_visible(False)
                    bottom.set_visible(False)
                    continue
                top.imshow(panel, cmap="gray", vmin=low, vmax=high, origin="lower", interpolation="nearest")
                if data["mask"].any():
                    top.contour(data["mask"].astype(np.float32), levels=[0.5], colors="#ff3030", linewidths=0.6)
                bottom.imshow(np.abs(panel - truth), cmap="magma", vmin=0, vmax=0.25 * spread, origin="lower",
                              interpolation="nearest")
                if index == 0:
                    top.set_title("\n".join(textwrap.fill(line, 24) for line in short_label(title).split("\n")),
                                  fontsize=6)
                if column == 0:
                    top.set_ylabel(channel, fontsize=8)
                    bottom.set_ylabel("|error|", fontsize=8)
        figure.suptitle(f"{case}: transplanted lesion (red outline: drawn mask), zoomed axial slice; "
                        f"error scale 0-25 % of the tissue range", fontsize=8)
        figure.tight_layout()
        path = output / f"preview_{case}.png"
        with atomic_path(path, suffix=".png") as temporary:
            figure.savefig(temporary, format="png", dpi=110)
        written.append(path)
    return written


def write_plot(result: dict[str, Any], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = result["rows"]
    channels = result["channels"]
    methods = list(dict.fromkeys(row["method"] for row in rows))
    metrics = (("thesis_psnr_in", "thesis PSNR in mask (dB)"), ("thesis_ssim_in", "thesis SSIM in mask"))
    figure = Figure(figsize=(1.0 + 0.9 * len(methods) * 2, 3.2 * len(channels)))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(channels), 2, squeeze=False)
    for row_index, channel in enumerate(channels):
        for column, (key, title) in enumerate(metrics):
            axis = axes[row_index][column]
            present = [m for m in methods if any(r["method"] == m and r["channel"] == channel for r in rows)]
            values = [[r[key] for r in rows if r["method"] == m and r["channel"] == channel
                       and math.isfinite(r[key])] for m in present]
            means = [float(np.mean(v)) if v else math.nan for v in values]
            positions = np.arange(len(present))
            axis.bar(positions, means, color=["#999999" if m == "input" else "#4477aa" if m.startswith("ldiff")
                                              else "#cc6677" for m in present])
            for position, v in zip(positions, values):
                axis.scatter(np.full(len(v), position), v, s=8, color="black", zorder=3)
            everything = [x for v in values for x in v]
            if everything:
                low, high = min(everything), max(everything)
                axis.set_ylim(low - 0.1 * (high - low + 1e-9), high + 0.1 * (high - low + 1e-9))
            axis.set_xticks(positions)
            axis.set_xticklabels([short_label(m) for m in present], rotation=30, ha="right", fontsize=6)
            axis.set_title(f"{channel}: {title}", fontsize=8)
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as temporary:
        figure.savefig(temporary, format="png", dpi=110)


def write_benchmark_report(result: dict[str, Any], previews: dict[str, dict], output: Path) -> list[Path]:
    """Write every file of the module docstring to ``output``; returns their paths."""
    output.mkdir(parents=True, exist_ok=True)
    result.setdefault("provenance", provenance(result.get("command", "")))
    settings = result["settings"]
    lines = [
        "# ldiff_benchmark",
        "",
        f"Command: `{result['provenance']['command']}`  ",
        f"Commit {result['provenance']['commit']}, {result['provenance']['hardware']}, {result['provenance']['date']}.",
        "",
        *[f"- `{model['method']}`: {model['model_folder']}, {model['checkpoint']} sha256 "
          f"{model['checkpoint_sha256'][:16]}, {model['sampling']}" for model in result.get("models", [])
          if "checkpoint_sha256" in model],
        "",
        f"## Transplanted lesions (truth known), scored inside the mask dilated by {settings['dilate_mm']:g} mm",
        "",
        "Every method replaces that dilated mask. Mean over cases (std in brackets). `input` is the painted scan "
        "itself, unfilled. PSNR and SSIM are in-mask values of the thesis protocol (volume scaled to [-1, 1] by the "
        "truth's range) and of the BraTS 2023 inpainting protocol; LPIPS on crops around the mask.",
        "",
        markdown_table(result["summary"], SUMMARY_COLUMNS),
        "",
        "Per case, thesis PSNR in the mask (dB):",
        "",
        per_case_table(result["rows"], "thesis_psnr_in"),
        "",
        "Shapes placed per case: " + ", ".join(f"{c['case']} {c['shapes_placed']}/{c['shapes_available']}"
                                              for c in result["cases"]) + ".",
    ]
    if result["real_lesions_summary"]:
        lines += ["", "## Real lesions (no truth)", "",
                  "Residual contrast of the filled region against the NAWM 2-5 mm around it (volume-weighted; "
                  "0 is ideal; `input` shows the lesions' own contrast); WM fraction: share of filled voxels "
                  "that the scan's three-class split calls WM (T1-weighted channel).", "",
                  markdown_table(result["real_lesions_summary"], REAL_COLUMNS)]
    written = [output / "benchmark.md", output / "benchmark.csv", output / "benchmark.json", output / "benchmark.png"]
    with atomic_path(written[0]) as temporary:
        temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_csv(result["rows"], written[1])
    if result["real_lesion_rows"]:
        write_csv(result["real_lesion_rows"], output / "real_lesions.csv")
        written.append(output / "real_lesions.csv")
    if result.get("real_lesion_per_lesion_rows"):
        write_csv(result["real_lesion_per_lesion_rows"], output / "real_lesions_per_lesion.csv")
        written.append(output / "real_lesions_per_lesion.csv")
    save_json_atomic(result, written[2])
    write_plot(result, written[3])
    median, worst = ranking_case(result["rows"], result["methods"])
    written += write_previews(previews, [median, worst], result["channels"], output)
    return written
