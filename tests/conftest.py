"""Shared fixtures: small hand-made datasets in the nnU-Net raw format, built in seconds."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk


def phantom_case(shape_zyx=(36, 44, 40), seed=0, lesion_centres=((18, 22, 14),), lesion_radius=3.0):
    """A skull-stripped head phantom: ellipsoidal brain, GM shell, WM core, CSF ventricle, spherical lesions.

    Returns (t1, flair, lesion, tissue) arrays in (z, y, x) order. Intensities are known by construction:
    T1 WM 1000 > GM 700 > CSF 300, FLAIR GM 800 > WM 600 > CSF 150; lesions T1 450, FLAIR 1200.
    """
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape_zyx, dtype=np.float64)
    centre = (np.array(shape_zyx) - 1) / 2
    radii = np.array(shape_zyx) * 0.42
    distance = np.sqrt(((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((x - centre[2]) / radii[2]) ** 2)
    tissue = np.zeros(shape_zyx, np.uint8)
    tissue[distance < 1.0] = 2
    tissue[distance < 0.75] = 3
    ventricle = ((z - centre[0]) / 3) ** 2 + ((y - centre[1]) / 6) ** 2 + ((x - centre[2]) / 2) ** 2 < 1
    tissue[ventricle] = 1
    lesion = np.zeros(shape_zyx, np.uint8)
    for lz, ly, lx in lesion_centres:
        lesion[(z - lz) ** 2 + (y - ly) ** 2 + (x - lx) ** 2 <= lesion_radius**2] = 1
    lesion &= tissue == 3
    t1_values = np.array([0, 300, 700, 1000], np.float32)
    flair_values = np.array([0, 150, 800, 600], np.float32)
    t1, flair = t1_values[tissue], flair_values[tissue]
    t1[lesion == 1], flair[lesion == 1] = 450, 1200
    brain = tissue > 0
    t1[brain] += rng.normal(0, 20, brain.sum()).astype(np.float32)
    flair[brain] += rng.normal(0, 20, brain.sum()).astype(np.float32)
    return t1, flair, lesion, tissue


def write_nifti(array: np.ndarray, path: Path, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def make_nnunet_dataset(raw_root: Path, name="Dataset042_HandMade", num_cases=4, with_tissue=False, spacing=(1.0, 1.0, 1.2)) -> Path:
    """Write an nnU-Net v2 MS-lesion dataset (T1w + FLAIR, binary labels) by hand."""
    folder = raw_root / name
    for index in range(num_cases):
        case = f"case_{index:03d}"
        centres = [(16 + index % 3, 20, 13), (20, 24, 27)][: 1 + index % 2]
        t1, flair, lesion, tissue = phantom_case(seed=index, lesion_centres=centres)
        write_nifti(t1, folder / "imagesTr" / f"{case}_0000.nii.gz", spacing)
        write_nifti(flair, folder / "imagesTr" / f"{case}_0001.nii.gz", spacing)
        write_nifti(lesion, folder / "labelsTr" / f"{case}.nii.gz", spacing)
        if with_tissue:
            write_nifti(tissue, folder / "tissueTr" / f"{case}.nii.gz", spacing)
    dataset_json = {
        "channel_names": {"0": "T1w", "1": "FLAIR"},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": num_cases,
        "file_ending": ".nii.gz",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    return folder


@pytest.fixture
def data_roots(tmp_path, monkeypatch):
    """Point the three ldiff folder variables at fresh temporary folders."""
    roots = {}
    for variable in ("ldiff_raw", "ldiff_preprocessed", "ldiff_results"):
        roots[variable] = tmp_path / variable
        roots[variable].mkdir()
        monkeypatch.setenv(variable, str(roots[variable]))
    return roots


@pytest.fixture
def one_thread():
    """Tiny convolutions are 10-20 times slower with OpenMP threads fighting on a shared 2-core machine;
    modules of torch-heavy tests use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
