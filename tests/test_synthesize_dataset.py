"""ldiff_synthesize_dataset: a raw dataset of healthy scans with synthetic lesions, checked by ldiff and nnU-Net.

The healthy scans are lesion-free phantoms (36 x 44 x 40, int16 T1w and float32 FLAIR on a rotated,
anisotropic grid) with tissue maps; the model is the tiny random-weight cond_synth network of the
prediction tests, sampled with 3 DDIM steps, so a case takes a fraction of a second. Its lesions are
noise, which is fine: these tests check files, labels, exactness outside the painted region,
seeds and resuming, not realism.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import make_nnunet_dataset, phantom_case, write_nifti
from ldiff.dataset.raw import RawDataset
from ldiff.synthetic_datasets.inputs import choose_synthesis_model, scans_from_dataset
from ldiff.synthetic_datasets.build import LABEL_POLICY, RECORD_NAME, SynthesisRequest, synthesize_dataset
from ldiff.dataset.verify import verify_dataset
from ldiff.errors import LdiffError
from ldiff.inference.model_loading import demo_models_root
from ldiff.inference.predictor import Predictor, SamplingOptions
from ldiff.io.cases import case_seed
from ldiff.masks import LesionLibrary, dilate_mask
from ldiff.masks.lesion_mask_files import MaskRequest, make_lesion_masks
from test_predict import DIRECTION, ORIGIN, make_model_folder

pytestmark = pytest.mark.usefixtures("one_thread")

SPACING = (1.0, 1.0, 1.2)
SEED = 7
MASKS = MaskRequest(count=2, radius_mm=(1.5, 2.5))
FAST = SamplingOptions(steps=3)
SCANS = ("sub0", "sub1")


def write_healthy_scans(folder: Path, tissue_folder: Path, cases=SCANS) -> None:
    """Lesion-free phantoms: T1w as int16, FLAIR as float32, and their tissue maps."""
    for index, case in enumerate(cases):
        t1, flair, _, tissue = phantom_case(seed=index, lesion_centres=())
        write_nifti(np.rint(t1).astype(np.int16), folder / f"{case}_0000.nii.gz", SPACING, ORIGIN, DIRECTION)
        write_nifti(flair, folder / f"{case}_0001.nii.gz", SPACING, ORIGIN, DIRECTION)
        write_nifti(tissue, tissue_folder / f"{case}.nii.gz", SPACING, ORIGIN, DIRECTION)


def array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def request(model: Path, **fields) -> SynthesisRequest:
    return SynthesisRequest(**{"per_scan": 2, "seed": SEED, "masks": MASKS, "model_folder": model, "device": "cpu",
                               "options": FAST, "progress": False, **fields})


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("models"), "cond_synth", "2d")


@pytest.fixture
def inputs(tmp_path, data_roots) -> tuple[Path, Path]:
    scans, tissue = tmp_path / "healthy", tmp_path / "tissue"
    write_healthy_scans(scans, tissue)
    return scans, tissue


@pytest.fixture(scope="module")
def written(tmp_path_factory, model) -> dict:
    """One run: 2 scans x 2 cases into Dataset100_Synthetic (the tests below only read it)."""
    import torch

    root = tmp_path_factory.mktemp("synthesis")
    scans, tissue = root / "healthy", root / "tissue"
    write_healthy_scans(scans, tissue)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        for variable in ("ldiff_raw", "ldiff_preprocessed", "ldiff_results"):
            (root / variable).mkdir()
            patch.setenv(variable, str(root / variable))
        folder = synthesize_dataset("Dataset100_Synthetic", request(model), healthy_folder=scans, tissue_folder=tissue)
    torch.set_num_threads(threads)
    return {"folder": folder, "scans": scans, "tissue": tissue, "root": root}


def test_every_case_has_every_channel_on_the_healthy_grid_and_pixel_type(written):
    folder, scans = written["folder"], written["scans"]
    cases = [f"{scan}_syn{k:02d}" for scan in SCANS for k in range(2)]
    assert RawDataset(folder).case_identifiers("Tr") == cases
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == sorted(f"{c}_{i:04d}.nii.gz" for c in cases
                                                                              for i in range(2))
    for case in cases:
        for channel, pixel in ((0, "16-bit signed integer"), (1, "32-bit float")):
            image = sitk.ReadImage(str(folder / "imagesTr" / f"{case}_{channel:04d}.nii.gz"))
            healthy = sitk.ReadImage(str(scans / f"{case[:4]}_{channel:04d}.nii.gz"))
            assert image.GetPixelIDTypeAsString() == pixel
            assert (image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()) == (
                healthy.GetSize(), healthy.GetSpacing(), healthy.GetOrigin(), healthy.GetDirection())
        label = sitk.ReadImage(str(folder / "labelsTr" / f"{case}.nii.gz"))
        assert label.GetPixelIDTypeAsString() == "8-bit unsigned integer"
        assert label.GetOrigin() == healthy.GetOrigin() and label.GetDirection() == healthy.GetDirection()


def test_label_is_the_mask_ldiff_make_lesion_masks_draws_and_only_its_dilation_changed(written, tmp_path):
    folder, scans, tissue = written["folder"], written["scans"], written["tissue"]
    record = json.loads((folder / RECORD_NAME).read_text())
    for scan in SCANS:
        healthy = [array(scans / f"{scan}_{c:04d}.nii.gz") for c in range(2)]
        wm = array(tissue / f"{scan}.nii.gz") == 3
        labels = []
        for k in range(2):
            case = f"{scan}_syn{k:02d}"
            label = array(folder / "labelsTr" / f"{case}.nii.gz")
            # The same mask ldiff_make_lesion_masks draws for a scan of this case's name and the run's seed.
            renamed, tissue_renamed = tmp_path / case / "scans", tmp_path / case / "tissue"
            write_nifti(healthy[0], renamed / f"{case}_0000.nii.gz", SPACING, ORIGIN, DIRECTION)
            write_nifti(array(tissue / f"{scan}.nii.gz"), tissue_renamed / f"{case}.nii.gz", SPACING, ORIGIN,
                        DIRECTION)
            make_lesion_masks(renamed, tmp_path / case / "masks",
                              MaskRequest(count=2, radius_mm=(1.5, 2.5), seed=SEED, tissue=tissue_renamed))
            mask = array(tmp_path / case / "masks" / f"{case}.nii.gz").astype(bool)
            assert set(np.unique(label)) == {0, 1} and np.array_equal(label.astype(bool), mask)
            assert not (mask & ~wm).any()
            region = dilate_mask(mask, spacing=SPACING, radius_mm=1.0, shape="ball")
            for channel in range(2):
                synthetic = array(folder / "imagesTr" / f"{case}_{channel:04d}.nii.gz")
                assert np.array_equal(synthetic[~region], healthy[channel][~region])  # bit for bit
                assert np.any(synthetic[mask] != healthy[channel][mask])
            entry = record["cases"][case]
            assert entry["seed"] == case_seed(SEED, case) and entry["source_case"] == scan
            assert entry["label_voxels"] == entry["mask_voxels"] == int(mask.sum()) and entry["lesions"] == 2
            assert entry["painted_voxels"] == int(region.sum())
            labels.append(mask)
        assert not np.array_equal(labels[0], labels[1])  # each case its own mask


def test_healthy_twins_tissue_maps_and_dataset_json(written, model):
    folder, scans, tissue = written["folder"], written["scans"], written["tissue"]
    for case in ("sub0_syn00", "sub1_syn01"):
        for channel in range(2):
            assert (folder / "healthyTr" / f"{case}_{channel:04d}.nii.gz").read_bytes() == (
                scans / f"{case[:4]}_{channel:04d}.nii.gz").read_bytes()
        assert (folder / "tissueTr" / f"{case}.nii.gz").read_bytes() == (tissue / f"{case[:4]}.nii.gz").read_bytes()
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["channel_names"] == {"0": "T1w", "1": "FLAIR"}
    assert dataset_json["labels"] == {"background": 0, "lesion": 1}
    assert dataset_json["numTraining"] == 4 and dataset_json["file_ending"] == ".nii.gz"
    synthesis = dataset_json["ldiff_synthesis"]
    assert synthesis["checkpoint_sha256"] == hashlib.sha256((model / "checkpoint_final.pth").read_bytes()).hexdigest()
    assert synthesis["model"] == str(model.resolve()) and synthesis["task"] == "cond_synth"
    assert synthesis["mask_dilation"] == {"radius_mm": 1.0, "shape": "ball"}
    assert synthesis["sampling"] == "ddim 3 steps, one draw per crop"
    assert synthesis["label_policy"] == LABEL_POLICY and synthesis["seed"] == SEED and synthesis["per_scan"] == 2
    assert synthesis["masks"]["count"] == 2
    assert verify_dataset(RawDataset(folder)) == []


@pytest.mark.skipif(importlib.util.find_spec("nnunetv2") is None,
                    reason="nnunetv2 is not installed (pip install --no-deps nnunetv2 acvl-utils blosc2 ...)")
def test_nnunet_verifies_the_written_dataset(written, capfd, monkeypatch):
    monkeypatch.setenv("nnUNet_raw", str(written["root"] / "ldiff_raw"))
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(written["folder"]), num_processes=1)  # raises on any error
    printed = capfd.readouterr().out
    assert "verify_dataset_integrity Done" in printed
    assert "Error" not in printed and "Warning" not in printed, printed


def test_continue_redoes_only_the_missing_case_and_matches_the_uninterrupted_run(model, inputs, data_roots,
                                                                                monkeypatch):
    scans, tissue = inputs
    folder = synthesize_dataset("Dataset101_Resumed", request(model), healthy_folder=scans, tissue_folder=tissue)
    files = sorted(path for path in folder.rglob("*.nii.gz"))
    before = {path: (array(path), path.stat().st_ino, path.stat().st_mtime_ns) for path in files}
    record = json.loads((folder / RECORD_NAME).read_text())
    # A run killed while writing sub1_syn00: its FLAIR and label never arrived, and dataset.json neither.
    lost = [folder / "imagesTr" / "sub1_syn00_0001.nii.gz", folder / "labelsTr" / "sub1_syn00.nii.gz"]
    for path in lost + [folder / "dataset.json"]:
        path.unlink()
    with pytest.raises(LdiffError, match=r"Dataset101_Resumed: already exists and is not empty.*--continue"):
        synthesize_dataset("Dataset101_Resumed", request(model), healthy_folder=scans, tissue_folder=tissue)
    with pytest.raises(LdiffError, match=r"synthesis.json: was written with other settings \(seed differ\)"):
        synthesize_dataset("Dataset101_Resumed", request(model, seed=SEED + 1, continue_run=True),
                           healthy_folder=scans, tissue_folder=tissue)
    painted = []
    original_predict = Predictor.predict

    def counting_predict(self, images, mask, **keywords):
        painted.append(keywords["mask_name"])
        return original_predict(self, images, mask, **keywords)

    monkeypatch.setattr(Predictor, "predict", counting_predict)
    synthesize_dataset("Dataset101_Resumed", request(model, continue_run=True), healthy_folder=scans,
                       tissue_folder=tissue)
    assert painted == ["the lesion mask drawn for sub1_syn00"]
    redone = {folder / "imagesTr" / f"sub1_syn00_{c:04d}.nii.gz" for c in range(2)} | set(lost)
    for path, (values, inode, mtime) in before.items():
        if path not in redone:
            assert (path.stat().st_ino, path.stat().st_mtime_ns) == (inode, mtime), path  # untouched
        assert np.array_equal(array(path), values), path  # the uninterrupted run's result
    assert json.loads((folder / RECORD_NAME).read_text())["cases"] == record["cases"]
    assert verify_dataset(RawDataset(folder)) == []


def _twin_dataset(raw_root: Path) -> Path:
    """Dataset050_Twins: 2 training cases with lesions, their healthy twins and tissue maps."""
    folder = raw_root / "Dataset050_Twins"
    for index in range(2):
        case = f"case_{index:03d}"
        t1, flair, lesion, tissue = phantom_case(seed=index, lesion_centres=((16 + index, 20, 13),))
        twin_t1, twin_flair, _, _ = phantom_case(seed=index, lesion_centres=())
        for split, images in (("imagesTr", (t1, flair)), ("healthyTr", (twin_t1, twin_flair))):
            for channel, values in enumerate(images):
                write_nifti(values, folder / split / f"{case}_{channel:04d}.nii.gz", SPACING)
        write_nifti(lesion, folder / "labelsTr" / f"{case}.nii.gz", SPACING)
        write_nifti(tissue, folder / "tissueTr" / f"{case}.nii.gz", SPACING)
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1w", "1": "FLAIR"}, "labels": {"background": 0, "lesion": 1},
        "numTraining": 2, "file_ending": ".nii.gz"}))
    return folder


def test_a_datasets_healthy_twins_with_its_real_cases_added(model, data_roots):
    source = _twin_dataset(data_roots["ldiff_raw"])
    folder = synthesize_dataset("Dataset102_Mixed", request(model, per_scan=1, add_real="050"), source_dataset="50")
    cases = ["case_000_syn00", "case_001_syn00", "real_case_000", "real_case_001"]
    assert RawDataset(folder).case_identifiers("Tr") == cases
    assert json.loads((folder / "dataset.json").read_text())["numTraining"] == 4
    for index in range(2):
        case = f"case_{index:03d}"
        # Real cases are the source's files (hard links here), every part of them.
        for new, old in ((f"imagesTr/real_{case}_0001.nii.gz", f"imagesTr/{case}_0001.nii.gz"),
                         (f"labelsTr/real_{case}.nii.gz", f"labelsTr/{case}.nii.gz"),
                         (f"healthyTr/real_{case}_0000.nii.gz", f"healthyTr/{case}_0000.nii.gz"),
                         (f"tissueTr/real_{case}.nii.gz", f"tissueTr/{case}.nii.gz")):
            assert (folder / new).stat().st_ino == (source / old).stat().st_ino
        # Synthetic cases start from the healthy twin, not from the image with lesions.
        assert (folder / f"healthyTr/{case}_syn00_0000.nii.gz").read_bytes() == (
            source / f"healthyTr/{case}_0000.nii.gz").read_bytes()
    record = json.loads((folder / RECORD_NAME).read_text())
    assert record["real_cases"] == {"real_case_000": "case_000", "real_case_001": "case_001"}
    assert record["settings"]["healthy_scans"] == "Dataset050_Twins (healthyTr)"
    assert verify_dataset(RawDataset(folder)) == []


def test_without_healthy_twins_the_empty_label_cases_are_the_healthy_scans(data_roots):
    source = make_nnunet_dataset(data_roots["ldiff_raw"], num_cases=3)
    label = source / "labelsTr" / "case_001.nii.gz"
    write_nifti(np.zeros_like(array(label)), label, (1.0, 1.0, 1.2))
    assert [scan.case for scan in scans_from_dataset(RawDataset(source))] == ["case_001"]
    write_nifti(array(source / "labelsTr" / "case_000.nii.gz"), label, (1.0, 1.0, 1.2))
    with pytest.raises(LdiffError, match=r"Dataset042_HandMade: has no healthyTr and no training case with an empty"):
        scans_from_dataset(RawDataset(source))


def test_bad_inputs_are_one_sentence_and_write_nothing(model, inputs, data_roots, tmp_path):
    scans, tissue = inputs
    raw = data_roots["ldiff_raw"]

    def refused(pattern: str, output: str = "Dataset103_Refused", **arguments) -> None:
        arguments = {"healthy_folder": scans, "tissue_folder": tissue, **arguments}
        with pytest.raises(LdiffError, match=pattern):
            synthesize_dataset(output, arguments.pop("request", request(model)), **arguments)
        assert not (raw / "Dataset103_Refused").exists()

    refused(rf"{scans}: has no channel FLAIR \(it has T1w, T2w\); the model .* needs T1w, FLAIR",
            channel_names=["T1w", "T2w"])
    refused(rf"{tmp_path / 'nowhere'}: the folder of healthy scans does not exist",
            healthy_folder=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    refused(rf"{tmp_path / 'empty'}: contains no healthy scans", healthy_folder=tmp_path / "empty")
    refused(r"either as a folder \(-i\) or as a raw dataset \(-d\)", source_dataset="050")
    shifted = tmp_path / "shifted_tissue"
    for case in SCANS:
        write_nifti(array(tissue / f"{case}.nii.gz"), shifted / f"{case}.nii.gz", SPACING, (0.0, 0.0, 0.0), DIRECTION)
    refused(rf"{shifted / 'sub0.nii.gz'}: its grid differs from {scans / 'sub0_0000.nii.gz'} \(origin",
            tissue_folder=shifted)
    refused(r"--per-scan must be at least 1", request=request(model, per_scan=0))
    refused(r"give either --count or --load", request=request(model, masks=MaskRequest(count=2, load_ml=1.0)))
    fill_model = make_model_folder(tmp_path / "fill", "cond_fill", "2d")
    refused(r"holds a cond_fill model, which cannot synthesise lesions", request=request(fill_model))
    # A cond_synth model takes a lesion intensity as the contrast to match, unless matching is off.
    unmatched = dataclasses.replace(FAST, match_contrast=False)
    refused(r"--lesion-intensity is for synthesis models .* takes none",
            request=request(model, lesion_intensity=("-0.2",), options=unmatched))
    refused(r"is not a dataset name of the form DatasetNNN_Name", output="Synthetic")
    (raw / "Dataset104_Taken").mkdir()
    refused(r"Dataset104_Taken: already uses the dataset id 104", output="Dataset104_Other")
    (raw / "Dataset105_Full").mkdir()
    (raw / "Dataset105_Full" / "notes.txt").write_text("mine")
    refused(r"Dataset105_Full: already exists and is not empty", output="Dataset105_Full")
    refused(r"Dataset105_Full: holds no synthesis.json, so ldiff_synthesize_dataset did not write it",
            output="Dataset105_Full", request=request(model, continue_run=True))
    assert sorted(p.name for p in (raw / "Dataset105_Full").iterdir()) == ["notes.txt"]


def test_the_default_model_is_the_one_synthesis_model_for_the_channels(data_roots):
    demo = demo_models_root() / "t1_flair_cond_synth"
    assert choose_synthesis_model(None, "final", ["flair", "T1w", "T2w"], 3) == demo
    assert choose_synthesis_model(None, "final", None, 2) == demo
    with pytest.raises(LdiffError, match=r"No synthesis model \(cond_synth or uncond_synth\) for the channels T1w"):
        choose_synthesis_model(None, "final", ["T1w"], 1)
    trained = make_model_folder(data_roots["ldiff_results"], "cond_synth", "2d")
    assert choose_synthesis_model(None, "final", ["T1w", "FLAIR"], 2) == trained


def test_command_line_with_real_lesion_shapes(model, inputs, data_roots, capsys, tmp_path):
    from ldiff.cli.synthesize_dataset import main

    scans, tissue = inputs
    _, _, lesion, _ = phantom_case(lesion_centres=((18, 22, 14),), lesion_radius=2.0)
    library = tmp_path / "shapes.npz"
    LesionLibrary.from_lesion_masks([lesion.astype(bool)], (1.0, 1.0, 1.0)).to_npz(library)
    with pytest.raises(SystemExit) as exit_info:
        main(["-i", str(scans), "--tissue", str(tissue), "-o", "Dataset106_Cli", "--per-scan", "1", "--count", "1",
              "--library-from", str(library), "-m", str(model), "--steps", "2", "--device", "cpu", "--seed", "3"])
    assert exit_info.value.code == 0
    folder = data_roots["ldiff_raw"] / "Dataset106_Cli"
    assert "Wrote" in capsys.readouterr().out
    assert RawDataset(folder).case_identifiers("Tr") == ["sub0_syn00", "sub1_syn00"]
    synthesis = json.loads((folder / "dataset.json").read_text())["ldiff_synthesis"]
    assert synthesis["seed"] == 3 and synthesis["masks"]["count"] == 1 and synthesis["sampling"].startswith("ddim 2")
    assert synthesis["masks"]["library_source"] == str(library)
    cases = json.loads((folder / RECORD_NAME).read_text())["cases"]
    assert {entry["shape_source"] for entry in cases.values()} == {"library"}
    assert all(entry["label_voxels"] > 0 for entry in cases.values())
    with pytest.raises(SystemExit) as exit_info:
        main(["-i", str(scans / "missing"), "-o", "Dataset107_Cli", "-m", str(model)])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip() == (f"ldiff: error: {scans / 'missing'}: the folder of healthy scans "
                                               f"does not exist.")


def test_a_cued_model_is_told_the_lesion_intensity_and_the_record_keeps_it(inputs, data_roots, tmp_path, monkeypatch):
    scans, tissue = inputs
    cued = make_model_folder(tmp_path / "models", "cond_synth", "2d", lesion_level_cue=True)
    told = []
    original = Predictor.predict

    def recording(self, images, mask, **keywords):
        told.append(keywords["lesion_intensity"])
        return original(self, images, mask, **keywords)

    monkeypatch.setattr(Predictor, "predict", recording)
    folder = synthesize_dataset("Dataset106_Cued", request(cued, per_scan=1, lesion_intensity=("-0.2", "0.3")),
                                healthy_folder=scans, tissue_folder=tissue)
    assert told == [("-0.2", "0.3")] * len(SCANS)
    assert json.loads((folder / RECORD_NAME).read_text())["settings"]["lesion_intensity"] == ["-0.2", "0.3"]

