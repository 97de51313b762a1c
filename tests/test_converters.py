"""ldiff_convert: every format's mock layout (exact public file names, tiny arrays) converts and verifies.

Each channel of a mock case holds a distinct constant (T1w 100, FLAIR 200, T2w 300, PDw 400, T1wKS 500),
so the channel order of the output is checked by value; one image grid has a non-identity spacing,
origin and direction, and the outputs must carry it unchanged.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ldiff.cli.convert import main as convert_main
from ldiff.dataset.converters import CONVERTERS, ConvertOptions
from ldiff.dataset.converters.run import convert_dataset
from ldiff.dataset.raw import RawDataset
from ldiff.dataset.verify import verify_dataset
from ldiff.errors import LdiffError

SHAPE = (8, 10, 12)  # (z, y, x)
VALUES = {"T1w": 100.0, "FLAIR": 200.0, "T2w": 300.0, "PDw": 400.0, "T1wKS": 500.0}
_ANGLE = np.deg2rad(20)
ROTATION = (np.cos(_ANGLE), -np.sin(_ANGLE), 0.0, np.sin(_ANGLE), np.cos(_ANGLE), 0.0, 0.0, 0.0, 1.0)
ODD = {"spacing": (0.9, 1.1, 3.0), "origin": (-10.5, 20.25, 3.0), "direction": ROTATION}
PLAIN = {"spacing": (1.0, 1.0, 1.0), "origin": (0.0, 0.0, 0.0), "direction": (1, 0, 0, 0, 1, 0, 0, 0, 1)}
OTHER_GRID = {**PLAIN, "origin": (5.0, 0.0, 0.0)}
LESION = (slice(2, 5), slice(3, 6), slice(4, 8))  # 36 voxels
LESION_VOXELS = 36
REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "open_ms_data"


def write(path: Path, array: np.ndarray, geometry: dict = ODD) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(geometry["spacing"])
    image.SetOrigin(geometry["origin"])
    image.SetDirection(geometry["direction"])
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def channel(path: Path, name: str, geometry: dict = ODD) -> Path:
    return write(path, np.full(SHAPE, VALUES[name], np.float32), geometry)


def mask(path: Path, value: float = 1, dtype=np.uint8, geometry: dict = ODD, extra: tuple = ()) -> Path:
    """A cuboid lesion of ``value``; ``extra`` holds (index, value) pairs written over it."""
    array = np.zeros(SHAPE, dtype)
    array[LESION] = value
    for index, other in extra:
        array[index] = other
    return write(path, array, geometry)


def convert(format_name: str, source: Path, target: Path, resume: bool = False, **options):
    return convert_dataset(CONVERTERS[format_name], source, target, ConvertOptions(**options), resume, progress=False)


def read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def assert_case(folder: Path, case: str, channels: list[str], split: str = "Tr", geometry: dict = ODD,
                lesion_voxels: int = LESION_VOXELS) -> None:
    """Channel values in order, geometry as the source's, label uint8 0/1 with the expected count."""
    for index, name in enumerate(channels):
        image = sitk.ReadImage(str(folder / f"images{split}" / f"{case}_{index:04d}.nii.gz"))
        assert np.all(sitk.GetArrayViewFromImage(image) == VALUES[name]), (case, name)
        np.testing.assert_allclose(image.GetSpacing(), geometry["spacing"], atol=1e-6)
        np.testing.assert_allclose(image.GetOrigin(), geometry["origin"], atol=1e-5)
        np.testing.assert_allclose(image.GetDirection(), geometry["direction"], atol=1e-6)
    label = sitk.ReadImage(str(folder / f"labels{split}" / f"{case}.nii.gz"))
    assert label.GetPixelID() == sitk.sitkUInt8
    array = sitk.GetArrayViewFromImage(label)
    assert set(np.unique(array)) <= {0, 1} and int(array.sum()) == lesion_voxels
    np.testing.assert_allclose(label.GetOrigin(), geometry["origin"], atol=1e-5)
    np.testing.assert_allclose(label.GetDirection(), geometry["direction"], atol=1e-6)


def report_of(folder: Path) -> dict:
    return json.loads((folder / "conversion_report.json").read_text())


def skipped_reasons(folder: Path) -> dict[str, str]:
    return {entry["case"]: entry["reason"] for entry in report_of(folder)["skipped"]}


def test_registry_names_every_format():
    assert sorted(CONVERTERS) == ["bids", "isbi2015", "ljubljana", "mslesseg", "msseg2016", "wmh2017"]
    assert all(name == converter.format_name for name, converter in CONVERTERS.items())


@pytest.fixture
def msseg(tmp_path) -> Path:
    source = tmp_path / "MSSEG"
    patient = source / "Training" / "Center_01" / "Patient_01"
    for name, stem in (("T1w", "T1"), ("FLAIR", "FLAIR"), ("T2w", "T2"), ("PDw", "DP"), ("T1wKS", "GADO")):
        channel(patient / "Preprocessed_Data" / f"{stem}_preprocessed.nii.gz", name)
    channel(patient / "Raw_Data" / "FLAIR.nii.gz", "T2w", PLAIN)  # unprocessed: must not be used
    mask(patient / "Masks" / "Consensus.nii.gz", extra=[((0, 0, 0), 2)])  # values 0/1/2
    mask(patient / "Masks" / "ManualSegmentation_1.nii.gz", extra=[((1, 1, 1), 1)])
    old_naming = source / "Training" / "Center_07" / "Patient_02"
    channel(old_naming / "Preprocessed_Data" / "3DT1_preprocessed.nii.gz", "T1w")
    channel(old_naming / "Preprocessed_Data" / "3DFLAIR_preprocessed.nii.gz", "FLAIR")
    mask(old_naming / "Masks" / "Consensus.nii.gz")
    no_flair = source / "Training" / "Center_08" / "Patient_03"
    channel(no_flair / "Preprocessed_Data" / "T1_preprocessed.nii.gz", "T1w")
    mask(no_flair / "Masks" / "Consensus.nii.gz")
    test = source / "Testing" / "Center_03" / "Patient_01"
    channel(test / "Preprocessed_Data" / "T1_preprocessed.nii.gz", "T1w", PLAIN)
    channel(test / "Preprocessed_Data" / "FLAIR_preprocessed.nii.gz", "FLAIR", PLAIN)
    mask(test / "Masks" / "Consensus.nii.gz", geometry=PLAIN)
    return source


def test_msseg2016(msseg, tmp_path):
    target = tmp_path / "raw" / "Dataset012_MSSEG2016"
    result = convert("msseg2016", msseg, target)
    assert result.training_cases == ["MSSEG2016_C01P01", "MSSEG2016_C07P02"]
    assert result.test_cases == ["MSSEG2016_test_C03P01"]
    assert verify_dataset(RawDataset(target)) == []
    dataset = json.loads((target / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "T1w", "1": "FLAIR"} and dataset["numTraining"] == 2
    assert dataset["labels"] == {"background": 0, "lesion": 1} and dataset["file_ending"] == ".nii.gz"
    assert_case(target, "MSSEG2016_C01P01", ["T1w", "FLAIR"], lesion_voxels=LESION_VOXELS + 1)  # the 2 counts
    assert_case(target, "MSSEG2016_C07P02", ["T1w", "FLAIR"])
    assert_case(target, "MSSEG2016_test_C03P01", ["T1w", "FLAIR"], split="Ts", geometry=PLAIN)
    assert skipped_reasons(target) == {"MSSEG2016_C08P03": "no FLAIR image in Training/Center_08/Patient_03/Preprocessed_Data"}
    (taken,) = [e for e in report_of(target)["taken"] if e["case"] == "MSSEG2016_C01P01"]
    assert taken["files"]["imagesTr/MSSEG2016_C01P01_0001.nii.gz"].startswith(
        "Training/Center_01/Patient_01/Preprocessed_Data/FLAIR_preprocessed.nii.gz")
    assert any("every value > 0 counted as lesion" in note for note in taken["notes"])
    assert "MSSEG2016_C08P03" in (target / "conversion_report.md").read_text()


def test_msseg2016_more_channels_in_the_order_given(msseg, tmp_path):
    target = tmp_path / "Dataset013_M"
    result = convert("msseg2016", msseg, target, channels=("FLAIR", "T1wKS", "PDw", "T2w"))
    assert result.training_cases == ["MSSEG2016_C01P01"]  # the others lack T1wKS/PDw/T2w
    assert_case(target, "MSSEG2016_C01P01", ["FLAIR", "T1wKS", "PDw", "T2w"], lesion_voxels=LESION_VOXELS + 1)


def test_refuses_non_empty_target_and_continue_keeps_complete_cases(msseg, tmp_path):
    target = tmp_path / "Dataset012_MSSEG2016"
    convert("msseg2016", msseg, target)
    with pytest.raises(LdiffError, match="already exists and is not empty"):
        convert("msseg2016", msseg, target)
    kept = target / "imagesTr" / "MSSEG2016_C07P02_0000.nii.gz"
    kept_time = kept.stat().st_mtime_ns
    lost = target / "labelsTr" / "MSSEG2016_C01P01.nii.gz"
    lost.unlink()  # as if interrupted before this case was complete
    (target / "dataset.json").unlink()
    result = convert("msseg2016", msseg, target, resume=True)
    assert result.training_cases == ["MSSEG2016_C01P01", "MSSEG2016_C07P02"]
    assert lost.is_file() and kept.stat().st_mtime_ns == kept_time
    (entry,) = [e for e in report_of(target)["taken"] if e["case"] == "MSSEG2016_C07P02"]
    assert "complete before --continue: kept" in entry["notes"]
    with pytest.raises(LdiffError, match=r"other settings \(channels\)"):
        convert("msseg2016", msseg, target, resume=True, channels=("FLAIR",))


def test_mask_or_channel_on_another_grid_skips_the_case(msseg, tmp_path):
    mask(msseg / "Training" / "Center_07" / "Patient_02" / "Masks" / "Consensus.nii.gz", geometry=PLAIN)
    channel(msseg / "Testing" / "Center_03" / "Patient_01" / "Preprocessed_Data" / "FLAIR_preprocessed.nii.gz",
            "FLAIR", OTHER_GRID)
    target = tmp_path / "Dataset012_MSSEG2016"
    result = convert("msseg2016", msseg, target)
    assert result.training_cases == ["MSSEG2016_C01P01"] and result.test_cases == []
    reasons = skipped_reasons(target)
    assert reasons["MSSEG2016_C07P02"].startswith("mask Consensus.nii.gz is not on the grid of 3DT1_preprocessed.nii.gz")
    assert reasons["MSSEG2016_test_C03P01"].startswith("FLAIR image FLAIR_preprocessed.nii.gz is not on the grid")
    assert not (target / "labelsTr" / "MSSEG2016_C07P02.nii.gz").exists()


@pytest.fixture
def isbi(tmp_path) -> Path:
    source = tmp_path / "ISBI"
    for patient, timepoints in (("01", ("01", "02")), ("02", ("01",))):
        folder = source / "training" / f"training{patient}"
        for timepoint in timepoints:
            for modality, name in (("flair", "FLAIR"), ("mprage", "T1w"), ("pd", "PDw"), ("t2", "T2w")):
                channel(folder / "preprocessed" / f"training{patient}_{timepoint}_{modality}_pp.nii", name)
            mask(folder / "masks" / f"training{patient}_{timepoint}_mask1.nii")
            mask(folder / "masks" / f"training{patient}_{timepoint}_mask2.nii", extra=[((0, slice(None), slice(None)), 1)])
            channel(folder / "orig" / f"training{patient}_{timepoint}_flair.nii.gz", "T2w", PLAIN)
    channel(source / "testdata_website" / "test01" / "preprocessed" / "test01_01_flair_pp.nii", "FLAIR")
    return source


@pytest.mark.parametrize("rater, lesion_voxels", [(1, LESION_VOXELS), (2, LESION_VOXELS + 120)])
def test_isbi2015_rater_and_first_timepoints(isbi, tmp_path, rater, lesion_voxels):
    target = tmp_path / f"Dataset014_ISBI{rater}"
    result = convert("isbi2015", isbi, target, rater=rater)
    assert result.training_cases == ["ISBI2015_P01T01", "ISBI2015_P02T01"]
    for case in result.training_cases:
        assert_case(target, case, ["T1w", "FLAIR"], lesion_voxels=lesion_voxels)
    reasons = skipped_reasons(target)
    assert reasons["ISBI2015_P01T02"].startswith("later timepoint")
    assert reasons["ISBI2015_test_P01T01"].startswith("no mask")
    assert report_of(target)["settings"]["rater"] == rater


def test_isbi2015_all_timepoints_and_four_channels(isbi, tmp_path):
    target = tmp_path / "Dataset015_ISBI"
    result = convert("isbi2015", isbi, target, timepoints="all", channels=("T1w", "FLAIR", "T2w", "PDw"))
    assert result.training_cases == ["ISBI2015_P01T01", "ISBI2015_P01T02", "ISBI2015_P02T01"]
    assert_case(target, "ISBI2015_P01T02", ["T1w", "FLAIR", "T2w", "PDw"])


def test_ljubljana_original_layout(tmp_path):
    source = tmp_path / "Ljubljana"
    for number in ("01", "02"):
        folder = source / f"patient{number}"
        for stem, name in (("T1W", "T1w"), ("T1WKS", "T1wKS"), ("FLAIR", "FLAIR")):
            channel(folder / f"patient{number}_{stem}.nii.gz", name)
        channel(folder / f"patient{number}_T2W.nii.gz", "T2w", OTHER_GRID if number == "02" else ODD)
        write(folder / f"patient{number}_brainmask.nii.gz", np.ones(SHAPE, np.uint8))
        mask(folder / f"patient{number}_consensus_gt.nii.gz")
        channel(folder / "raw" / f"patient{number}_FLAIR.nii.gz", "T2w", PLAIN)  # own space: not used
    (source / "patient03").mkdir()
    target = tmp_path / "Dataset016_Ljubljana"
    result = convert("ljubljana", source, target, channels=("T1w", "FLAIR", "T1wKS", "T2w"))
    assert result.training_cases == ["Ljubljana_patient01"]
    assert_case(target, "Ljubljana_patient01", ["T1w", "FLAIR", "T1wKS", "T2w"])
    reasons = skipped_reasons(target)
    assert "not on the grid" in reasons["Ljubljana_patient02"] and "no consensus mask" in reasons["Ljubljana_patient03"]


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="needs ../shared/data/open_ms_data")
def test_ljubljana_real_mni_mirror(tmp_path, monkeypatch):
    monkeypatch.setenv("ldiff_raw", str(tmp_path / "raw"))
    with pytest.raises(SystemExit) as exit_status:
        convert_main(["ljubljana", str(REAL_DATA), "-d", "7", "--no-progress"])
    assert exit_status.value.code == 0
    target = tmp_path / "raw" / "Dataset007_Ljubljana"
    assert RawDataset(target).case_identifiers() == ["Ljubljana_patient07", "Ljubljana_patient19"]
    for patient in ("patient07", "patient19"):
        source_mask = read(REAL_DATA / patient / "lesion_mask.nii.gz")
        assert np.array_equal(read(target / "labelsTr" / f"Ljubljana_{patient}.nii.gz"), source_mask > 0)
    assert int(read(target / "labelsTr" / "Ljubljana_patient07.nii.gz").sum()) == 1300


def test_mslesseg_timepoints_test_split_and_probability_masks(tmp_path):
    source = tmp_path / "MSLesSeg Dataset"
    for patient, timepoint in (("1", "1"), ("1", "2"), ("2", "1")):
        folder = source / "train" / f"P{patient}" / f"T{timepoint}"
        for kind, name in (("T1", "T1w"), ("T2", "T2w"), ("FLAIR", "FLAIR")):
            channel(folder / f"P{patient}_T{timepoint}_{kind}.nii.gz", name)
        mask(folder / f"P{patient}_T{timepoint}_MASK.nii.gz", 0.7, np.float32, extra=[((0, 0, 0), 0.3)])
    channel(source / "train" / "P3" / "T1" / "P3_T1_FLAIR.nii.gz", "FLAIR")  # no MASK
    test = source / "test" / "P54"
    for kind, name in (("T1", "T1w"), ("T2", "T2w"), ("FLAIR", "FLAIR")):
        channel(test / f"P54_{kind}.nii.gz", name)
    mask(test / "P54_MASK.nii.gz")
    target = tmp_path / "Dataset017_MSLesSeg"
    result = convert("mslesseg", source, target, timepoints="all")
    assert result.training_cases == ["MSLesSeg_P01_tp1", "MSLesSeg_P01_tp2", "MSLesSeg_P02_tp1"]
    assert result.test_cases == ["MSLesSeg_test_P54"]
    assert_case(target, "MSLesSeg_P01_tp2", ["T1w", "FLAIR"])  # 0.7 -> 1, 0.3 -> 0
    assert_case(target, "MSLesSeg_test_P54", ["T1w", "FLAIR"], split="Ts")
    assert skipped_reasons(target)["MSLesSeg_P03_tp1"].startswith("no mask")
    first = convert("mslesseg", source, tmp_path / "Dataset018_First")
    assert first.training_cases == ["MSLesSeg_P01_tp1", "MSLesSeg_P02_tp1"]


@pytest.fixture
def wmh(tmp_path) -> Path:
    source = tmp_path / "WMH"
    for site, number in (("Utrecht", "0"), ("Singapore", "50"), ("Amsterdam/GE3T", "100")):
        folder = source / "training" / site / number
        channel(folder / "pre" / "T1.nii.gz", "T1w")
        channel(folder / "pre" / "FLAIR.nii.gz", "FLAIR")
        channel(folder / "orig" / "FLAIR.nii.gz", "T2w", PLAIN)
        other = [((7, slice(0, 2), slice(0, 5)), 2)] if number == "0" else []  # 10 voxels of label 2
        mask(folder / "wmh.nii.gz", 1, np.float32, extra=other)
    test = source / "test" / "Amsterdam" / "Philips_VU .PETMR_01." / "137"
    channel(test / "pre" / "T1.nii.gz", "T1w")
    channel(test / "pre" / "FLAIR.nii.gz", "FLAIR")
    mask(test / "wmh.nii.gz")
    return source


@pytest.mark.parametrize("rule, utrecht_voxels", [(None, LESION_VOXELS), ("lesion", LESION_VOXELS + 10)])
def test_wmh2017_other_pathology_label(wmh, tmp_path, rule, utrecht_voxels):
    target = tmp_path / "Dataset019_WMH2017"
    result = convert("wmh2017", wmh, target, wmh_other_label=rule)
    assert result.training_cases == ["WMH2017_Amsterdam_GE3T_100", "WMH2017_Singapore_50", "WMH2017_Utrecht_0"]
    assert result.test_cases == ["WMH2017_test_Amsterdam_Philips_VU_PETMR_01_137"]
    assert_case(target, "WMH2017_Utrecht_0", ["T1w", "FLAIR"], lesion_voxels=utrecht_voxels)
    assert_case(target, "WMH2017_test_Amsterdam_Philips_VU_PETMR_01_137", ["T1w", "FLAIR"], split="Ts")
    (entry,) = [e for e in report_of(target)["taken"] if e["case"] == "WMH2017_Utrecht_0"]
    assert f"label 2 (other pathology): 10 voxels, made {rule or 'background'}" in entry["notes"]


def test_wmh2017_skip_cases_with_other_pathology(wmh, tmp_path):
    target = tmp_path / "Dataset019_WMH2017"
    result = convert("wmh2017", wmh, target, wmh_other_label="skip-case")
    assert "WMH2017_Utrecht_0" not in result.training_cases and len(result.training_cases) == 2
    assert "label 2" in skipped_reasons(target)["WMH2017_Utrecht_0"]


def test_bids_subjects_sessions_and_derivative_masks(tmp_path):
    source = tmp_path / "bids"
    source.mkdir()
    (source / "dataset_description.json").write_text(json.dumps({"Name": "MS mock", "License": "CC0"}))
    derivatives = source / "derivatives" / "lesions"
    channel(source / "sub-01" / "anat" / "sub-01_T1w.nii.gz", "T1w")
    channel(source / "sub-01" / "anat" / "sub-01_ce-gadolinium_T1w.nii.gz", "T1wKS")
    channel(source / "sub-01" / "anat" / "sub-01_FLAIR.nii.gz", "FLAIR")
    mask(derivatives / "sub-01" / "anat" / "sub-01_space-orig_label-lesion_mask.nii.gz")
    for session in ("ses-01", "ses-02"):
        anat = source / "sub-02" / session / "anat"
        channel(anat / f"sub-02_{session}_T1w.nii.gz", "T1w", PLAIN)
        channel(anat / f"sub-02_{session}_acq-3D_FLAIR.nii.gz", "FLAIR", PLAIN)
        mask(derivatives / "sub-02" / session / "anat" / f"sub-02_{session}_label-lesion_mask.nii.gz", geometry=PLAIN)
    channel(source / "sub-03" / "anat" / "sub-03_T1w.nii.gz", "T1w")
    channel(source / "sub-03" / "anat" / "sub-03_FLAIR.nii.gz", "FLAIR")
    target = tmp_path / "Dataset020_BIDS"
    result = convert("bids", source, target, channels=("T1w", "FLAIR", "T1wKS"))
    assert result.training_cases == ["sub-01"]
    assert_case(target, "sub-01", ["T1w", "FLAIR", "T1wKS"])
    result = convert("bids", source, tmp_path / "Dataset021_BIDS")
    assert result.training_cases == ["sub-01", "sub-02_ses-01", "sub-02_ses-02"]
    assert_case(tmp_path / "Dataset021_BIDS", "sub-02_ses-02", ["T1w", "FLAIR"], geometry=PLAIN)
    assert skipped_reasons(target)["sub-03"].startswith("no mask matching derivatives/*/sub-03/anat/")
    assert any("licence: CC0" in note for note in report_of(target)["notes"])


def test_nothing_recognised_and_wrong_options_are_refused(tmp_path, msseg, monkeypatch, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LdiffError, match="no usable .* case found"):
        convert("wmh2017", empty, tmp_path / "Dataset030_X")
    with pytest.raises(LdiffError, match="unknown channel name"):
        convert("msseg2016", msseg, tmp_path / "Dataset030_X", channels=("T1",))
    assert not (tmp_path / "Dataset030_X").exists()
    monkeypatch.setenv("ldiff_raw", str(tmp_path / "raw"))
    with pytest.raises(SystemExit) as exit_status:
        convert_main(["msseg2016", str(msseg), "-d", "12", "--rater", "2"])
    assert exit_status.value.code == 1
    assert "--rater: does not apply to the format msseg2016" in capsys.readouterr().err
    (tmp_path / "raw" / "Dataset012_Other").mkdir(parents=True)
    with pytest.raises(SystemExit):
        convert_main(["msseg2016", str(msseg), "-d", "12"])
    assert "already used by Dataset012_Other" in capsys.readouterr().err
