"""The thickness study: every scan of every method through one thickness tool, region means per
scan, then the comparisons of ``compare.py``.

Folders hold one scan per case, nnU-Net style (``{case}_XXXX.nii.gz``; the T1w channel is chosen by
``channel``) or as plain ``{case}.nii.gz`` files. A case counts when every folder has it.

Per case, the brain mask (non-zero voxels of the reference scan, or ``--brain-masks``) and the
regions are computed once and shared by every method, so the methods differ only in their voxels.
Everything computed is written under ``output`` atomically: ``maps/{method}/{case}_thickness.nii.gz``,
``_segmentation.nii.gz`` and ``_regions.json`` (region means and seconds), ``regions/{case}.nii.gz``;
``resume=True`` reuses what is there, so an interrupted study continues where it stopped.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from ldiff.errors import LdiffError
from ldiff.io import array_to_image, load_json, save_json_atomic, write_image_atomic
from ldiff.io.cases import NIFTI_ENDINGS, find_case_channels, nifti_ending
from ldiff.io.images import Geometry, geometry_mismatch, read_geometry, read_image

from .regions import region_means, sectors_by_registration, sectors_from_world
from .tools import ThicknessTool

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScanSet:
    """One method's scans: ``files[case]`` is the T1w file of that case."""

    name: str
    folder: Path
    files: dict[str, Path]


def find_scans(name: str, folder: Path, channel: int = 0) -> ScanSet:
    """The T1w scans of ``folder``: channel ``channel`` of each ``{case}_XXXX`` case, or, in a folder
    without such files, every ``{case}.nii[.gz]``."""
    if not folder.is_dir():
        raise LdiffError(f"{folder}: not a folder (the scans of {name!r}).")
    files = {}
    for case in find_case_channels(folder):
        channels = dict(case.files)
        if f"{channel:04d}" in channels:
            files[case.case] = channels[f"{channel:04d}"]
    if not files:
        for path in sorted(folder.iterdir()):
            ending = nifti_ending(path)
            if ending is not None and path.is_file():
                files[path.name[: -len(ending)]] = path
    if not files:
        raise LdiffError(f"{folder}: no NIfTI scans ({' or '.join(NIFTI_ENDINGS)}) for {name!r}.")
    return ScanSet(name, folder, files)


def common_cases(scan_sets: Sequence[ScanSet]) -> list[str]:
    """The cases every set has; refuses when there are none, names the cases some sets lack."""
    cases = sorted(set.intersection(*(set(s.files) for s in scan_sets)))
    if not cases:
        raise LdiffError("No case is in every folder: " + "; ".join(f"{s.folder} has {sorted(s.files)[:3]}..."
                                                                   for s in scan_sets))
    for scan_set in scan_sets:
        missing = sorted(set(scan_set.files) - set(cases))
        if missing:
            logger.warning("%s: %d case(s) not in every folder are left out (%s).", scan_set.folder, len(missing),
                           ", ".join(missing[:5]))
    return cases


def check_grids(scan_sets: Sequence[ScanSet], cases: Sequence[str], extra: dict[str, Path]) -> None:
    """Every method's scan of a case (and its brain mask / tissue map in ``extra``, keyed ``kind:case``)
    must lie on the reference scan's grid; checked from the headers before any work starts."""
    for case in cases:
        reference_file = scan_sets[0].files[case]
        reference = read_geometry(reference_file)
        others = [s.files[case] for s in scan_sets[1:]] + [p for k, p in extra.items() if k.endswith(":" + case)]
        for path in others:
            mismatch = geometry_mismatch(reference, read_geometry(path))
            if mismatch is not None:
                raise LdiffError(f"{path}: grid differs from {reference_file} ({mismatch}).")


def _read_table(path: Path) -> dict[str, float]:
    stored = load_json(path)["regions"]
    return {region: (math.nan if entry["mean_mm"] is None else entry["mean_mm"]) for region, entry in stored.items()}


def case_regions(case: str, reference_file: Path, brain: np.ndarray, mode: str, output: Path, resume: bool
                 ) -> np.ndarray:
    """The region labels of a case (see ``regions.py``), cached as ``regions/{case}.nii.gz``."""
    path = output / "regions" / f"{case}.nii.gz"
    if resume and path.is_file():
        return sitk.GetArrayFromImage(read_image(path))
    image = read_image(reference_file)
    sectors = (sectors_from_world(Geometry.of(image)) if mode == "mni"
               else sectors_by_registration(image, brain))
    sectors = np.where(brain, sectors, 0).astype(np.uint8)
    write_image_atomic(array_to_image(sectors, Geometry.of(image)), path)
    return sectors


def run_study(scan_sets: Sequence[ScanSet], tool: ThicknessTool, output: Path, region_mode: str = "register",
              brain_masks: dict[str, Path] | None = None, tissue_maps: dict[str, Path] | None = None,
              resume: bool = False, progress: bool = True) -> dict:
    """Thickness of every scan; returns ``{"tables": {method: {case: {region: mm}}}, "voxels": ...,
    "seconds": {method: {case: s}}, "failures": [{method, case, file, error}], "cases": [...]}``.

    ``scan_sets[0]`` is the reference (unfilled) set: its scans give the brain masks and regions.
    A scan whose thickness fails is named in a warning and in ``failures``; the rest go on.
    """
    from tqdm import tqdm

    cases = common_cases(scan_sets)
    brain_masks, tissue_maps = brain_masks or {}, tissue_maps or {}
    extra = {f"brain:{c}": p for c, p in brain_masks.items() if c in cases}
    extra.update({f"tissue:{c}": p for c, p in tissue_maps.items() if c in cases})
    check_grids(scan_sets, cases, extra)
    tables: dict[str, dict[str, dict[str, float]]] = {s.name: {} for s in scan_sets}
    voxels: dict[str, dict[str, int]] = {s.name: {} for s in scan_sets}
    seconds: dict[str, dict[str, float]] = {s.name: {} for s in scan_sets}
    failures: list[dict] = []
    bar = tqdm(total=len(cases) * len(scan_sets), desc="thickness", unit="scan", disable=not progress)
    for case in cases:
        reference_file = scan_sets[0].files[case]
        if case in brain_masks:
            brain = sitk.GetArrayFromImage(read_image(brain_masks[case])) > 0
        else:
            from .tools import brain_mask_of

            brain = brain_mask_of(sitk.GetArrayFromImage(read_image(reference_file)))
        tissue = sitk.GetArrayFromImage(read_image(tissue_maps[case])) if case in tissue_maps else None
        sectors = None
        for scan_set in scan_sets:
            bar.set_postfix_str(f"{scan_set.name} {case}")
            stem = output / "maps" / scan_set.name / case
            table_file = stem.parent / f"{case}_regions.json"
            try:
                if resume and table_file.is_file():
                    stored = load_json(table_file)
                    table = _read_table(table_file)
                    voxels[scan_set.name][case] = stored["regions"]["global"]["voxels"]
                    seconds[scan_set.name][case] = stored["seconds"]
                else:
                    if sectors is None:
                        sectors = case_regions(case, reference_file, brain, region_mode, output, resume)
                    start = time.perf_counter()
                    image = read_image(scan_set.files[case])
                    result = tool.measure(image, brain, tissue)
                    elapsed = time.perf_counter() - start
                    geometry = Geometry.of(image)
                    write_image_atomic(array_to_image(result.thickness, geometry),
                                       stem.parent / f"{case}_thickness.nii.gz")
                    write_image_atomic(array_to_image(result.segmentation, geometry),
                                       stem.parent / f"{case}_segmentation.nii.gz")
                    means = region_means(result.thickness, sectors)
                    save_json_atomic({"file": str(scan_set.files[case]), "tool": tool.name, "seconds": elapsed,
                                      "regions": means}, table_file)
                    table = {region: entry["mean_mm"] for region, entry in means.items()}
                    voxels[scan_set.name][case] = means["global"]["voxels"]
                    seconds[scan_set.name][case] = elapsed
                tables[scan_set.name][case] = table
            except (LdiffError, RuntimeError, ValueError, OSError, MemoryError) as error:
                logger.warning("Thickness failed on %s (%s): %s; going on with the rest.",
                               scan_set.files[case], scan_set.name, error)
                failures.append({"method": scan_set.name, "case": case, "file": str(scan_set.files[case]),
                                 "error": str(error)})
            bar.update(1)
    bar.close()
    return {"tables": tables, "voxels": voxels, "seconds": seconds, "failures": failures, "cases": cases}
