"""Dataset verification, always run before planning (nnU-Net's --verify_dataset_integrity, made mandatory).

Every problem becomes one line ``path: problem``; all problems are collected before anything is
written, so a broken dataset produces a complete list and no output folder.

Grid tolerances (files of one case must share their grid): spacing within 1e-4 relative, origin
within 1e-3 mm, direction cosines within 1e-4 (see ``ldiff.io.images``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ldiff.dataset.raw import TISSUE_LABELS, RawCase, RawDataset
from ldiff.errors import LdiffError
from ldiff.io.images import Geometry, geometry_mismatch, read_image


@dataclass
class LoadedCase:
    """The arrays of one verified case, (z, y, x) order, as read from disk (not yet reoriented)."""

    case: RawCase
    geometry: Geometry
    images: list[np.ndarray]
    label: np.ndarray | None
    tissue: np.ndarray | None
    errors: list[str] = field(default_factory=list)


def _read(path: Path, errors: list[str]) -> sitk.Image | None:
    try:
        return read_image(path)
    except LdiffError as error:
        errors.append(str(error))
        return None


def verify_case(case: RawCase) -> LoadedCase:
    """Read and check every file of one case; problems are listed in ``LoadedCase.errors``."""
    errors: list[str] = []
    reference: Geometry | None = None
    arrays: dict[str, np.ndarray] = {}

    def load(path: Path, role: str) -> np.ndarray | None:
        nonlocal reference
        if not path.is_file():
            errors.append(f"{path}: missing ({role} of case {case.identifier}).")
            return None
        image = _read(path, errors)
        if image is None:
            return None
        geometry = Geometry.of(image)
        if reference is None:
            reference = geometry
        else:
            mismatch = geometry_mismatch(reference, geometry)
            if mismatch is not None:
                errors.append(f"{path}: {mismatch} of {case.image_files[0].name} (all files of a case must share one grid).")
                return None
        array = sitk.GetArrayFromImage(image)
        arrays[role] = array
        return array

    images = [load(path, f"channel {index}") for index, path in enumerate(case.image_files)]
    label = None
    if case.label_file is not None:
        label = load(case.label_file, "lesion label")
        if label is not None:
            values = np.unique(label)
            if not np.all(np.isin(values, (0, 1))):
                shown = ", ".join(f"{v:g}" for v in values[:6]) + (", ..." if values.size > 6 else "")
                errors.append(f"{case.label_file}: is not binary (values {shown}); lesion labels must be 0 or 1.")
            label = label.astype(np.uint8)
    tissue = None
    if case.tissue_file is not None:
        tissue = load(case.tissue_file, "tissue map")
        if tissue is not None:
            if not np.all(np.isin(np.unique(tissue), list(TISSUE_LABELS.values()))):
                errors.append(f"{case.tissue_file}: tissue map values must be 0 (background), 1 (CSF), 2 (GM) or 3 (WM).")
            tissue = tissue.astype(np.uint8)
    if case.healthy_files is not None:
        for path in case.healthy_files:
            load(path, "healthy ground truth")
    if reference is None or errors:
        return LoadedCase(case, reference, [], None, None, errors)  # type: ignore[arg-type]
    return LoadedCase(case, reference, [a.astype(np.float32) for a in images], label, tissue, [])


def verify_dataset_structure(dataset: RawDataset) -> list[str]:
    """Checks that need no image data: dataset.json against the folder contents."""
    errors: list[str] = []
    json_path = dataset.folder / "dataset.json"
    labels = dataset.labels
    if not isinstance(labels, dict) or sorted(int(v) for v in labels.values()) != [0, 1]:
        errors.append(f"{json_path}: labels must be binary, e.g. {{\"background\": 0, \"lesion\": 1}}; got {labels}.")
    train_ids = dataset.case_identifiers("Tr")
    if not train_ids:
        errors.append(f"{dataset.folder / 'imagesTr'}: no training images named {{case}}_0000{dataset.file_ending}.")
    declared = dataset.dataset_json.get("numTraining")
    if declared is not None and train_ids and int(declared) != len(train_ids):
        errors.append(f"{json_path}: numTraining is {declared} but imagesTr holds {len(train_ids)} cases.")
    for split in ("Tr", "Ts"):
        ids = set(dataset.case_identifiers(split))
        label_folder = dataset.folder / f"labels{split}"
        if label_folder.is_dir():
            for path in sorted(label_folder.glob(f"*{dataset.file_ending}")):
                if path.name[: -len(dataset.file_ending)] not in ids:
                    errors.append(f"{path}: label without images (no {path.name[: -len(dataset.file_ending)]}_0000{dataset.file_ending} in images{split}).")
        image_folder = dataset.folder / f"images{split}"
        if image_folder.is_dir():
            for path in sorted(image_folder.glob(f"*{dataset.file_ending}")):
                suffix = path.name[: -len(dataset.file_ending)].rsplit("_", 1)
                if len(suffix) != 2 or not suffix[1].isdigit() or len(suffix[1]) != 4:
                    errors.append(f"{path}: name does not end in _XXXX{dataset.file_ending} (a 4-digit channel number).")
                elif int(suffix[1]) >= dataset.num_channels:
                    errors.append(f"{path}: channel {int(suffix[1])} is not in dataset.json channel_names.")
    return errors


def verify_case_errors(case: RawCase) -> list[str]:
    """The problems of one case (a top-level function, so worker processes can run it)."""
    return verify_case(case).errors


def verify_dataset(dataset: RawDataset, num_workers: int = 1) -> list[str]:
    """Every problem of the dataset, one line each (empty when it is fine). Reads every file once."""
    from ldiff.parallel import map_cases

    errors = verify_dataset_structure(dataset)
    cases = dataset.cases("Tr") + dataset.cases("Ts")
    for case_errors in map_cases(verify_case_errors, cases, num_workers, "verifying"):
        errors.extend(case_errors)
    return errors
