"""The conversion report: ``conversion_report.json`` (for tools and ``--continue``) and ``.md`` (for people).

It lists per source case what was taken (source file -> target name, lesion voxels, remarks) and what
was skipped and why, with the settings, the channels chosen, the mask rule and the dataset's licence.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ldiff.io import atomic_path, save_json_atomic

REPORT_NAME = "conversion_report"


def report_paths(dataset_folder: Path) -> tuple[Path, Path]:
    return dataset_folder / f"{REPORT_NAME}.json", dataset_folder / f"{REPORT_NAME}.md"


def _markdown(report: dict[str, Any]) -> str:
    taken, skipped = report["taken"], report["skipped"]
    lines = [
        f"# Conversion report: {report['dataset']}",
        "",
        f"- format: `{report['settings']['format']}` ({report['title']})",
        f"- source: `{report['settings']['source']}`",
        f"- status: {report['status']}",
        f"- channels: {', '.join(report['settings']['channels'])} ({report['channel_choice']})",
        f"- mask rule: {report['mask_rule']}",
        f"- obtained from: {report['url']}",
        f"- licence / terms: {report['licence']}",
    ]
    lines += [f"- {key}: {value}" for key, value in report["settings"].items() if key not in ("format", "source", "channels")]
    lines += [f"- note: {note}" for note in report["notes"]]
    lines += ["", f"## Taken: {len(taken)} case(s)", ""]
    if taken:
        lines += ["| case | split | source | files | lesion voxels | remarks |", "|---|---|---|---|---|---|"]
        for entry in taken:
            files = "<br>".join(f"`{source}` -> `{target}`" for target, source in entry["files"].items())
            remarks = "; ".join(entry["notes"]) or "-"
            lines.append(f"| {entry['case']} | {entry['split']} | `{entry['source']}` | {files} | "
                         f"{entry['lesion_voxels']} | {remarks} |")
    lines += ["", f"## Skipped: {len(skipped)} case(s)", ""]
    lines += [f"- `{entry['source']}`" + (f" ({entry['case']})" if entry.get("case") else "") + f": {entry['reason']}"
              for entry in skipped]
    return "\n".join(lines) + "\n"


def write_report(dataset_folder: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """Write both files atomically; returns (json path, markdown path)."""
    json_path, markdown_path = report_paths(dataset_folder)
    save_json_atomic(report, json_path)
    with atomic_path(markdown_path) as temporary:
        temporary.write_text(_markdown(report), encoding="utf-8")
    return json_path, markdown_path
