"""Dataset verification: each bad input gives its one line naming the file, and nothing is written."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from ldiff.dataset.raw import RawDataset
from ldiff.dataset.verify import verify_dataset
from ldiff.errors import LdiffError
from tests.conftest import make_nnunet_dataset, write_nifti


@pytest.fixture
def dataset_folder(data_roots):
    return make_nnunet_dataset(data_roots["ldiff_raw"], num_cases=3)


def problems_of(folder):
    return verify_dataset(RawDataset(folder))


def test_clean_dataset_has_no_problems(dataset_folder):
    assert problems_of(dataset_folder) == []


def test_missing_channel(dataset_folder):
    (dataset_folder / "imagesTr" / "case_001_0001.nii.gz").unlink()
    assert problems_of(dataset_folder) == [f"{dataset_folder / 'imagesTr' / 'case_001_0001.nii.gz'}: missing (channel 1 of case case_001)."]


def test_missing_label(dataset_folder):
    (dataset_folder / "labelsTr" / "case_002.nii.gz").unlink()
    (problem,) = problems_of(dataset_folder)
    assert problem.startswith(str(dataset_folder / "labelsTr" / "case_002.nii.gz")) and "missing" in problem


def test_geometry_mismatch(dataset_folder):
    label = dataset_folder / "labelsTr" / "case_000.nii.gz"
    image = sitk.ReadImage(str(label))
    image.SetOrigin((5.0, 0.0, 0.0))
    sitk.WriteImage(image, str(label))
    (problem,) = problems_of(dataset_folder)
    assert problem.startswith(str(label)) and "origin" in problem


def test_non_binary_label(dataset_folder):
    label = dataset_folder / "labelsTr" / "case_000.nii.gz"
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(label)))
    array[0, 0, 0] = 2
    write_nifti(array, label, spacing=(1.0, 1.0, 1.2))
    (problem,) = problems_of(dataset_folder)
    assert problem.startswith(str(label)) and "not binary" in problem


def test_nan_voxels(dataset_folder):
    path = dataset_folder / "imagesTr" / "case_001_0000.nii.gz"
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    array[3, 3, 3] = np.nan
    write_nifti(array, path, spacing=(1.0, 1.0, 1.2))
    assert problems_of(dataset_folder) == [f"{path}: contains 1 NaN or Inf voxels."]


def test_not_3d(dataset_folder):
    path = dataset_folder / "imagesTr" / "case_001_0000.nii.gz"
    sitk.WriteImage(sitk.Image(8, 8, sitk.sitkFloat32), str(path))
    (problem,) = problems_of(dataset_folder)
    assert problem.startswith(str(path)) and "2D" in problem


def test_truncated_file(dataset_folder):
    path = dataset_folder / "imagesTr" / "case_002_0001.nii.gz"
    path.write_bytes(path.read_bytes()[:200])
    (problem,) = problems_of(dataset_folder)
    assert problem.startswith(str(path)) and "truncated" in problem


def test_num_training_mismatch_and_all_problems_listed(dataset_folder):
    data = json.loads((dataset_folder / "dataset.json").read_text())
    data["numTraining"] = 7
    (dataset_folder / "dataset.json").write_text(json.dumps(data))
    (dataset_folder / "labelsTr" / "case_000.nii.gz").unlink()
    problems = problems_of(dataset_folder)
    assert len(problems) == 2
    assert any("numTraining is 7" in p for p in problems) and any("case_000.nii.gz: missing" in p for p in problems)


def test_dataset_json_problems(tmp_path):
    folder = tmp_path / "Dataset005_Bad"
    folder.mkdir()
    with pytest.raises(LdiffError, match="dataset.json: missing"):
        RawDataset(folder)
    (folder / "dataset.json").write_text("{not json")
    with pytest.raises(LdiffError, match="not valid JSON"):
        RawDataset(folder)
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T1w"}, "labels": {}}))
    with pytest.raises(LdiffError, match="file_ending"):
        RawDataset(folder)


@pytest.mark.parametrize("breakage", ["missing_channel", "non_binary", "nan"])
def test_cli_stops_with_message_and_writes_nothing(dataset_folder, data_roots, breakage):
    if breakage == "missing_channel":
        (dataset_folder / "imagesTr" / "case_001_0001.nii.gz").unlink()
        expected = "case_001_0001.nii.gz: missing"
    else:
        path = dataset_folder / ("labelsTr/case_000.nii.gz" if breakage == "non_binary" else "imagesTr/case_000_0000.nii.gz")
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)
        array[1, 1, 1] = 3 if breakage == "non_binary" else np.inf
        write_nifti(array, path, spacing=(1.0, 1.0, 1.2))
        expected = "not binary" if breakage == "non_binary" else "NaN or Inf"
    result = subprocess.run([sys.executable, "-m", "ldiff.cli.plan_and_preprocess", "-d", "42", "-np", "1"],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert list(data_roots["ldiff_preprocessed"].iterdir()) == []


def test_select_channels_derives_a_verified_single_channel_dataset(dataset_folder, data_roots):
    from ldiff.dataset.select_channels import select_channels

    target = select_channels(RawDataset(dataset_folder), data_roots["ldiff_raw"] / "Dataset043_T1Only", ["T1w"])
    derived = RawDataset(target)
    assert derived.channel_names == ["T1w"] and verify_dataset(derived) == []
    original = sitk.GetArrayFromImage(sitk.ReadImage(str(dataset_folder / "imagesTr" / "case_001_0000.nii.gz")))
    copied = sitk.GetArrayFromImage(sitk.ReadImage(str(target / "imagesTr" / "case_001_0000.nii.gz")))
    np.testing.assert_array_equal(original, copied)
    assert not (target / "imagesTr" / "case_001_0001.nii.gz").exists()
    with pytest.raises(LdiffError, match="has no channel PD"):
        select_channels(RawDataset(dataset_folder), data_roots["ldiff_raw"] / "Dataset044_X", ["PD"])
