"""``evaluate_thickness``: the library function behind ``ldiff_evaluate_thickness``."""
from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path
from typing import Sequence

import SimpleITK as sitk

from ldiff.io.images import read_image

from .compare import compare_methods
from .report import markdown, plot_brain_map, plot_regions, write_tables
from .study import ScanSet, find_scans, run_study
from .tools import THICKNESS_TOOLS, ThicknessTool, require_ants

logger = logging.getLogger(__name__)
TRUTH = "truth"


def _case_files(folder: Path | None) -> dict[str, Path]:
    if folder is None:
        return {}
    return dict(find_scans("masks", folder).files)


def evaluate_thickness(inputs: Sequence[Path], names: Sequence[str], output: Path, truth: Path | None = None,
                       tissue: Path | None = None, brain_masks: Path | None = None, channel: int = 0,
                       region_mode: str = "register", tool_name: str = "ants_direct",
                       tool: ThicknessTool | None = None, resume: bool = False, progress: bool = True) -> dict:
    """Measure every scan, compare the methods, write the report; returns ``thickness.json``'s content.

    ``inputs[0]`` (``names[0]``) is the reference, normally the unfilled scans. ``tool`` replaces the
    named tool (tests pass one with known output).
    """
    if tool is None:
        require_ants()
        tool = THICKNESS_TOOLS[tool_name]()
    scan_sets = [find_scans(name, folder, channel) for name, folder in zip(names, inputs)]
    if truth is not None:
        scan_sets.append(find_scans(TRUTH, truth, channel))
    if region_mode == "register":
        require_ants()
    study = run_study(scan_sets, tool, output, region_mode=region_mode, brain_masks=_case_files(brain_masks),
                      tissue_maps=_case_files(tissue), resume=resume, progress=progress)
    reference = names[0]
    truth_name = TRUTH if truth is not None else None
    rows = compare_methods(study["tables"], reference, truth_name)
    from ldiff.evaluation.benchmark.report import provenance

    settings = {"provenance": provenance("ldiff_evaluate_thickness " + " ".join(shlex.quote(a) for a in sys.argv[1:])),
                "tool": tool.name, "tool_settings": {k: v for k, v in vars(tool).items() if k != "name"}
                if hasattr(tool, "__dict__") else {}, "regions": region_mode, "channel": channel,
                "inputs": {s.name: str(s.folder) for s in scan_sets}, "reference": reference, "truth": truth_name,
                "tissue": None if tissue is None else str(tissue)}
    record = settings["provenance"]
    header = (f"Command: `{record['command']}`  \nCommit {record['commit']}, {record['hardware']}, {record['date']}.\n\n"
              f"Cortical thickness ({tool.name}; regions: {region_mode}) of {len(study['cases'])} case(s); "
              f"reference: {reference}" + (f"; truth: {truth}" if truth is not None else "") + ".  \n"
              "thesis change = 100 |x - y| / (x + y) (the reference thesis's measure, half the percent difference); "
              "bias = filled minus truth; bias removed = 1 - sum|bias filled| / sum|bias unfilled| over cases.")
    text = markdown(study, rows, reference, truth_name, header)
    write_tables(output, study, rows, settings, text)
    plot_regions(output / "thickness_regions.png", study, reference, truth_name)
    _plot_map(output, study, rows, scan_sets, reference, truth_name)
    print(text)
    print(f"Tables and plots: {output}")
    return {"settings": settings, **study, "comparison": rows}


def _plot_map(output: Path, study: dict, rows: list[dict], scan_sets: list[ScanSet], reference: str,
              truth: str | None) -> None:
    """The brain map on the first case whose region map and reference thickness map exist."""
    for case in study["cases"]:
        sectors_file = output / "regions" / f"{case}.nii.gz"
        cortex_file = output / "maps" / reference / f"{case}_thickness.nii.gz"
        if sectors_file.is_file() and cortex_file.is_file():
            sectors = sitk.GetArrayFromImage(read_image(sectors_file))
            cortex = sitk.GetArrayFromImage(read_image(cortex_file)) > 0
            methods = [s.name for s in scan_sets if s.name != truth and (truth is not None or s.name != reference)]
            plot_brain_map(output / "thickness_map.png", rows, sectors, cortex, reference, truth, methods)
            return
    logger.warning("No region map to draw the brain map on (every scan failed?).")

