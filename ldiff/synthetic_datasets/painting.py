"""The writing half of ``ldiff_synthesize_dataset``: each case's mask, lesions, label and links, resumably.

:func:`run_cases` skips every case whose files all exist (they are only ever renamed into place, so
an existing file is complete), links the real cases, and for each healthy scan with a missing case
reads the scan and its anatomy once, then draws, paints and writes its missing synthetic cases.
Inputs are checked by :mod:`ldiff.synthetic_datasets.build` before this runs.
"""
from __future__ import annotations

import logging
from itertools import groupby
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ldiff.synthetic_datasets.build import FILE_ENDING, RECORD_NAME, OutputCase, link_or_copy
from ldiff.inference.files import write_case_outputs
from ldiff.inference.predictor import Predictor
from ldiff.io import Geometry, array_to_image, read_image, save_json_atomic, write_image_atomic
from ldiff.io.cases import case_seed
from ldiff.masks import LesionLibrary
from ldiff.masks.lesion_mask_files import MaskJob, MaskRequest, load_target, propose_mask

logger = logging.getLogger("ldiff")


def _is_done(entry: OutputCase, output: Path, names: tuple[str, ...], healthy: bool) -> bool:
    return all(path.is_file() for path in entry.files(output, names, healthy))


def _write_real(entry: OutputCase, output: Path, names: tuple[str, ...], healthy: bool) -> None:
    """Link (or copy) a real case's images, label, tissue map and healthy twin under its new id."""
    sources = list(entry.source.files.values())
    if healthy:
        sources += list(entry.source.healthy_files.values())
    if entry.source.tissue_file is not None:
        sources.append(entry.source.tissue_file)
    sources.append(entry.source.label_file)
    for source, target in zip(sources, entry.files(output, names, healthy)):
        link_or_copy(source, target)


def _t1_file(files: dict[str, Path]) -> Path:
    """The T1-weighted channel's file (the first channel when none is named so: a tissue map is then used)."""
    return next((path for name, path in files.items() if "t1" in name.casefold()), next(iter(files.values())))


def _synthesise_scan(entries: list[OutputCase], output: Path, names: tuple[str, ...], healthy: bool,
                     predictor: Predictor, masks: MaskRequest, library: LesionLibrary | None, record: dict[str, Any],
                     cache: dict, bar: Any, lesion_intensity: Sequence[str] | None = None) -> None:
    """The missing synthetic cases of one healthy scan, each written whole (images, links, then the label)."""
    scan = entries[0].source
    files = tuple(scan.files.values())
    images = [read_image(path) for path in files]
    geometry = Geometry.of(images[0])
    t1_image, reorientation, anatomy = load_target(MaskJob(scan.case, _t1_file(scan.files), scan.tissue_file,
                                                           output / "labelsTr" / f"{scan.case}{FILE_ENDING}"))
    for entry in entries:
        seed = case_seed(masks.seed, entry.case)
        mask_image, drawn = propose_mask(t1_image, reorientation, anatomy, masks, library, seed, cache)
        mask = sitk.GetArrayFromImage(mask_image).astype(bool)
        result = predictor.predict(images, mask, seed=seed, mask_name=f"the lesion mask drawn for {entry.case}",
                                   image_name=str(files[0]), lesion_intensity=lesion_intensity)
        # The lesion is the undilated mask; the dilated rim the model also paints is its border (LABEL_POLICY).
        label = mask & result.changed
        targets = entry.files(output, names, healthy)
        image_targets, label_target = targets[: len(names)], targets[-1]
        links = list(files) if healthy else []
        if scan.tissue_file is not None:
            links.append(scan.tissue_file)
        for source, target in zip(links, targets[len(names):-1]):
            link_or_copy(source, target)
        write_case_outputs(entry.case, result.images, image_targets)
        write_image_atomic(array_to_image(label.astype(np.uint8), geometry), label_target)
        voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
        record["cases"][entry.case] = {
            "source_case": scan.case, "source_files": [str(path) for path in files],
            "tissue_file": None if scan.tissue_file is None else str(scan.tissue_file),
            "index": entry.index, "seed": seed, **drawn,
            "mask_voxels": int(mask.sum()), "painted_voxels": int(result.changed.sum()),
            "label_voxels": int(label.sum()), "label_ml": round(float(label.sum()) * voxel_ml, 4),
        }
        save_json_atomic(record, output / RECORD_NAME)
        logger.info("%s: %d lesion(s), %.2f mL labelled, %d voxels painted", entry.case, drawn["lesions"],
                    record["cases"][entry.case]["label_ml"], int(result.changed.sum()))
        bar.update()


def run_cases(output: Path, planned: list[OutputCase], names: tuple[str, ...], healthy: bool, predictor: Predictor,
              masks: MaskRequest, library: LesionLibrary | None, record: dict[str, Any], progress: bool,
              lesion_intensity: Sequence[str] | None = None) -> None:
    """Write every planned case that is not complete yet; ``record`` (synthesis.json) is saved after each.
    ``lesion_intensity``: what a model that takes one is told (None: its default)."""
    pending = [entry for entry in planned if not _is_done(entry, output, names, healthy)]
    if len(pending) < len(planned):
        logger.info("--continue: %d of %d case(s) already complete, kept", len(planned) - len(pending), len(planned))
    for entry in pending:
        if entry.index is None:
            _write_real(entry, output, names, healthy)
    record["real_cases"] = {entry.case: entry.source.case for entry in planned if entry.index is None}
    save_json_atomic(record, output / RECORD_NAME)
    synthetic = [entry for entry in pending if entry.index is not None]
    cache: dict = {}
    # Warnings (a mask that found no room, say) go on a line of their own, not into the progress bar's line.
    with logging_redirect_tqdm(), tqdm(total=len(synthetic), desc="synthesising", unit="case",
                                       disable=not progress) as bar:
        for _, group in groupby(synthetic, key=lambda entry: entry.source.case):
            _synthesise_scan(list(group), output, names, healthy, predictor, masks, library, record, cache, bar,
                             lesion_intensity)
