"""Tests of ldiff_make_lesion_masks: proposed lesion masks in WM, counts, loads, seeds, grids, transfer, errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from conftest import phantom_case, write_nifti
from ldiff.errors import LdiffError
from ldiff.masks.lesion_mask_files import MaskRequest, load_lesion_library, make_lesion_masks
from ldiff.masks.lesion_masks import propose_lesion_mask
from ldiff.masks.target_anatomy import anatomy_from_t1, anatomy_from_tissue
from ldiff.io import Geometry
from ldiff.masks import LesionLibrary, label_components

CASES = ("case_000", "case_001")
# A grid with everything non-default: anisotropic, shifted, and axes rotated away from RAS+.
ODD_GRID = {"spacing": (1.0, 0.9, 1.2), "origin": (10.0, -20.0, 5.0),
            "direction": (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)}
TISSUE_WM, TISSUE_CSF = 3, 1


def healthy(seed: int = 0, shape=(36, 44, 40)) -> tuple[np.ndarray, np.ndarray]:
    """(t1 float32, tissue uint8) of a lesion-free head phantom, (z, y, x)."""
    t1, _, _, tissue = phantom_case(shape_zyx=shape, seed=seed, lesion_centres=())
    return t1, tissue


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> dict:
    """Two healthy cases as {case}_0000.nii.gz plus tissue maps, on the default (LPS) 1 mm grid."""
    root = tmp_path_factory.mktemp("healthy")
    tissues = {}
    for index, case in enumerate(CASES):
        t1, tissue = healthy(seed=index)
        write_nifti(t1, root / "images" / f"{case}_0000.nii.gz")
        write_nifti(tissue, root / "tissue" / f"{case}.nii.gz")
        tissues[case] = tissue
    return {"images": root / "images", "tissue": root / "tissue", "tissues": tissues}


def read_mask(path: Path) -> np.ndarray:
    image = sitk.ReadImage(str(path))
    assert image.GetPixelID() == sitk.sitkUInt8
    array = sitk.GetArrayFromImage(image)
    assert set(np.unique(array)) <= {0, 1}
    return array.astype(bool)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


# ---------------------------------------------------------------- proposals


@pytest.mark.parametrize("count", [1, 7])
def test_count_is_met_and_every_voxel_is_tissue_wm(folder, tmp_path, count):
    record = make_lesion_masks(folder["images"], tmp_path, MaskRequest(count=count, tissue=folder["tissue"]))
    assert json.loads((tmp_path / "masks.json").read_text()) == json.loads(json.dumps(record))
    for case in CASES:
        mask = read_mask(tmp_path / f"{case}.nii.gz")
        tissue = folder["tissues"][case]
        assert label_components(mask)[1] == count  # lesions never merge
        assert np.all(tissue[mask] == TISSUE_WM)  # so never CSF, GM or background
        entry = record["cases"][case]
        assert entry["lesions"] == count and entry["method"] == "synthetic"
        assert entry["load_ml"] == pytest.approx(np.count_nonzero(mask) / 1000.0, abs=1e-4)


def test_derived_white_matter_keeps_lesions_in_true_white_matter(folder, tmp_path):
    make_lesion_masks(folder["images"], tmp_path, MaskRequest(count=6, seed=3))
    for case in CASES:
        mask, tissue = read_mask(tmp_path / f"{case}.nii.gz"), folder["tissues"][case]
        assert label_components(mask)[1] == 6
        assert np.mean(tissue[mask] == TISSUE_WM) >= 0.9
        assert not np.any(tissue[mask] == TISSUE_CSF) and not np.any(tissue[mask] == 0)


@pytest.mark.parametrize("load_ml", [0.4, 1.0])
def test_load_reaches_the_requested_volume(folder, tmp_path, load_ml):
    record = make_lesion_masks(folder["images"], tmp_path, MaskRequest(load_ml=load_ml, tissue=folder["tissue"]))
    for case in CASES:
        mask = read_mask(tmp_path / f"{case}.nii.gz")
        # At most 2 % above; below by less than a small shape (1 mm voxels: mL = voxels / 1000).
        assert load_ml - 0.03 <= np.count_nonzero(mask) / 1000.0 <= 1.02 * load_ml
        assert record["cases"][case]["lesions"] == label_components(mask)[1] >= 2


def test_same_seed_same_masks_other_seed_other_masks(folder, tmp_path):
    masks = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        make_lesion_masks(folder["images"], tmp_path / name, MaskRequest(count=4, seed=seed))
        masks[name] = [read_mask(tmp_path / name / f"{case}.nii.gz") for case in CASES]
    assert all(np.array_equal(a, b) for a, b in zip(masks["a"], masks["b"]))
    assert not any(np.array_equal(a, c) for a, c in zip(masks["a"], masks["c"]))
    # Each case has its own stream: the two cases of one run differ.
    assert not np.array_equal(masks["a"][0], masks["a"][1])


def test_single_file_keeps_the_exact_grid_and_matches_the_folder_run(folder, tmp_path):
    t1, tissue = healthy(seed=0)
    write_nifti(t1, tmp_path / "odd" / "case_000_0000.nii.gz", **ODD_GRID)
    write_nifti(tissue, tmp_path / "odd" / "tissue.nii.gz", **ODD_GRID)
    output = tmp_path / "out" / "mask.nii.gz"
    make_lesion_masks(tmp_path / "odd" / "case_000_0000.nii.gz", output,
                      MaskRequest(count=3, tissue=tmp_path / "odd" / "tissue.nii.gz"))
    image = sitk.ReadImage(str(output))
    assert Geometry.of(image) == Geometry.of(sitk.ReadImage(str(tmp_path / "odd" / "case_000_0000.nii.gz")))
    mask = read_mask(output)
    assert np.all(tissue[mask] == TISSUE_WM) and label_components(mask)[1] == 3
    record = json.loads((tmp_path / "out" / "mask.json").read_text())
    assert record["cases"]["case_000"]["lesions"] == 3


def test_a_case_gets_the_same_mask_alone_or_in_its_folder(folder, tmp_path):
    request = MaskRequest(count=3, seed=2)
    make_lesion_masks(folder["images"], tmp_path / "all", request)
    make_lesion_masks(folder["images"] / "case_001_0000.nii.gz", tmp_path / "one.nii.gz", request)
    assert np.array_equal(read_mask(tmp_path / "one.nii.gz"), read_mask(tmp_path / "all" / "case_001.nii.gz"))


def test_periventricular_preference_moves_lesions_towards_the_ventricles():
    _, tissue = healthy(shape=(48, 60, 56))
    anatomy = anatomy_from_tissue(tissue, (1.0, 1.0, 1.0))
    distance = ndimage.distance_transform_edt(~anatomy.ventricles)
    means = {}
    for scale in (2.0, None):
        masks = [propose_lesion_mask(anatomy, np.random.default_rng(seed), count=4, radius_mm=(1.5, 3.0),
                                     periventricular_mm=scale).mask for seed in range(8)]
        means[scale] = np.mean([distance[mask].mean() for mask in masks])
    assert means[2.0] < 0.75 * means[None]


def test_ventricles_are_the_deep_csf_whether_given_or_derived():
    t1, tissue = healthy()
    for anatomy in (anatomy_from_tissue(tissue, (1.0, 1.0, 1.0)), anatomy_from_t1(t1, (1.0, 1.0, 1.0))):
        assert np.array_equal(anatomy.ventricles, tissue == TISSUE_CSF)


def test_library_shapes_are_placed_instead_of_ellipsoids(folder, tmp_path):
    box = np.ones((2, 3, 4), dtype=bool)  # (z, y, x): an ellipsoid of >= 1.5 mm is 3 voxels tall
    LesionLibrary([box], (1.0, 1.0, 1.0)).to_npz(tmp_path / "library.npz")
    record = make_lesion_masks(folder["images"], tmp_path / "out",
                               MaskRequest(count=3, library_source=str(tmp_path / "library.npz"),
                                           tissue=folder["tissue"]))
    assert record["method"] == "library"
    for case in CASES:
        mask = read_mask(tmp_path / "out" / f"{case}.nii.gz")
        labels, count = label_components(mask)
        assert count == 3
        sizes = np.bincount(labels.ravel())[1:]
        assert np.all(sizes >= 0.9 * box.sum())  # at most the 10 % outside WM is cut off
        for box_slices in ndimage.find_objects(labels):
            height, *sides = [s.stop - s.start for s in box_slices]
            # Flips and axial 90-degree turns keep the height 2 and the in-plane sides {3, 4}.
            assert height <= 2 and sorted(sides)[0] <= 3 and sorted(sides)[1] <= 4


def test_library_from_a_preprocessed_dataset_id(data_roots):
    folder = data_roots["ldiff_preprocessed"] / "Dataset042_Shapes"
    (folder / "ldiffPlans_1mm").mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps({"data_identifier": "ldiffPlans_1mm", "target_spacing": [1, 1, 1]}))
    lesion = np.zeros((20, 20, 20), dtype=np.uint8)
    lesion[2:5, 2:5, 2:5] = 1
    lesion[10:12, 10:14, 10:13] = 1
    np.savez(folder / "ldiffPlans_1mm" / "c1.npz", lesion=lesion)
    library = load_lesion_library("042")
    assert sorted(int(shape.sum()) for shape in library.shapes) == [24, 27]


# ---------------------------------------------------------------- transfer


def test_transfer_lands_back_on_the_patient_lesion_inside_white_matter(tmp_path):
    t1, tissue = healthy(seed=0)
    patient_t1, _, lesion, patient_tissue = phantom_case(seed=1, lesion_centres=((18, 22, 14),))
    # Plus a patch of mask in cortex (no WM there in the target either), which must be dropped.
    cortical = np.zeros_like(lesion)
    cortical[17:20, 36:39, 19:22] = 1
    assert np.all(patient_tissue[cortical == 1] == 2)
    patient, patient_mask = sitk.GetImageFromArray(patient_t1), sitk.GetImageFromArray(lesion | cortical)
    # The patient is a shifted, rotated, slightly scaled copy of the same head.
    deformation = sitk.AffineTransform(3)
    deformation.SetCenter((19.5, 21.5, 17.5))
    rotation = np.array(sitk.Euler3DTransform((0, 0, 0), 0.05, -0.03, 0.04).GetMatrix()).reshape(3, 3)
    deformation.SetMatrix((rotation @ np.diag([1.05, 0.97, 1.02])).ravel().tolist())
    deformation.SetTranslation((2.0, -1.5, 1.0))
    moved_t1 = sitk.Resample(patient, patient, deformation, sitk.sitkLinear, 0.0)
    moved_mask = sitk.Resample(patient_mask, patient_mask, deformation, sitk.sitkNearestNeighbor, 0)
    assert dice(sitk.GetArrayFromImage(moved_mask) > 0, lesion > 0) < 0.5  # the deformation matters
    sitk.WriteImage(moved_t1, str(tmp_path / "patient_t1.nii.gz"))
    sitk.WriteImage(moved_mask, str(tmp_path / "patient_mask.nii.gz"))
    write_nifti(t1, tmp_path / "healthy_0000.nii.gz")
    write_nifti(tissue, tmp_path / "tissue.nii.gz")

    record = make_lesion_masks(tmp_path / "healthy_0000.nii.gz", tmp_path / "out" / "moved.nii.gz", MaskRequest(
        tissue=tmp_path / "tissue.nii.gz", transfer_t1=tmp_path / "patient_t1.nii.gz",
        transfer_mask=tmp_path / "patient_mask.nii.gz"))
    mask = read_mask(tmp_path / "out" / "moved.nii.gz")
    assert dice(mask, lesion > 0) > 0.6
    assert np.all(tissue[mask] == TISSUE_WM)
    entry = record["cases"]["healthy"]
    assert entry["method"] == "transfer" and entry["lesions"] == 1
    assert entry["registered_load_ml"] >= entry["load_ml"] == pytest.approx(np.count_nonzero(mask) / 1000, abs=1e-4)
    assert entry["lost_outside_wm_ml"] == pytest.approx(entry["registered_load_ml"] - entry["load_ml"], abs=1e-3)
    assert 0.1 < entry["lost_fraction"] < 0.5  # the cortical patch (27 of ~150 voxels) and little else


# ---------------------------------------------------------------- command line


def run_cli(*arguments) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ldiff.cli.make_lesion_masks", *map(str, arguments)],
                          capture_output=True, text=True, timeout=120)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_cli_defaults_are_the_library_defaults():
    from ldiff.cli.make_lesion_masks import build_parser
    from ldiff.masks import lesion_masks

    arguments = build_parser().parse_args(["-i", "in.nii.gz", "-o", "out.nii.gz"])
    assert tuple(arguments.radius_mm) == lesion_masks.DEFAULT_RADIUS_MM
    assert arguments.periventricular_mm == lesion_masks.DEFAULT_PERIVENTRICULAR_MM
    assert f"default {lesion_masks.DEFAULT_COUNT} " in build_parser().format_help()


def test_cli_writes_a_mask_on_the_input_grid_and_a_record(tmp_path):
    t1, tissue = healthy()
    write_nifti(t1, tmp_path / "t1.nii.gz", **ODD_GRID)
    result = run_cli("-i", tmp_path / "t1.nii.gz", "-o", tmp_path / "mask.nii.gz", "--count", 2, "--seed", 1)
    assert result.returncode == 0, result.stderr
    image = sitk.ReadImage(str(tmp_path / "mask.nii.gz"))
    assert Geometry.of(image) == Geometry.of(sitk.ReadImage(str(tmp_path / "t1.nii.gz")))
    assert label_components(read_mask(tmp_path / "mask.nii.gz"))[1] == 2
    assert json.loads((tmp_path / "mask.json").read_text())["cases"]["t1"]["seed"] > 0


def test_cli_errors_are_one_sentence(tmp_path):
    t1, _ = healthy()
    write_nifti(t1, tmp_path / "t1.nii.gz")
    write_nifti(np.zeros_like(t1), tmp_path / "empty.nii.gz")
    (tmp_path / "broken.nii.gz").write_text("not an image")
    out = tmp_path / "mask.nii.gz"
    assert "broken.nii.gz" in one_line_error(run_cli("-i", tmp_path / "broken.nii.gz", "-o", out))
    assert "no white matter" in one_line_error(run_cli("-i", tmp_path / "empty.nii.gz", "-o", out))
    assert "missing.npz: lesion library file not found" in one_line_error(
        run_cli("-i", tmp_path / "t1.nii.gz", "-o", out, "--library-from", tmp_path / "missing.npz"))
    assert "--count or --load" in one_line_error(run_cli("-i", tmp_path / "t1.nii.gz", "-o", out,
                                                         "--count", 3, "--load", 2))
    assert "same as -i" in one_line_error(run_cli("-i", tmp_path / "t1.nii.gz", "-o", tmp_path / "t1.nii.gz"))
    assert not out.exists()


def test_outputs_never_replace_inputs(folder, tmp_path):
    before = {path: path.read_bytes() for path in folder["tissue"].iterdir()}
    with pytest.raises(LdiffError, match="would overwrite the input"):
        make_lesion_masks(folder["images"], folder["tissue"], MaskRequest(tissue=folder["tissue"]))
    assert {path: path.read_bytes() for path in folder["tissue"].iterdir()} == before
