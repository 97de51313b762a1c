"""The embedded example dataset: folder contract, determinism, anatomy, lesions and the CLI.

The dataset is built at 4 mm (tiny volumes) with 2 training + 1 test cases, so each build takes a few
seconds, mostly for loading the MNI152 template from nilearn.
"""
from __future__ import annotations

import json
from pathlib import Path

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from ldiff.cli.make_example import main as make_example_main
from ldiff.dataset.example import make_example_dataset
from ldiff.dataset.phantom_case import LESION_HALO_VOXELS
from ldiff.dataset.phantom_lesions import (
    lesion_partial_volume,
    sample_lesion_centres,
    sample_lesion_count,
    sample_lesion_volumes,
)
from ldiff.dataset.phantom_parameters import PhantomParameters
from ldiff.dataset.phantom_template import WM, build_phantom_template, nibabel_to_sitk
from ldiff.dataset.raw import RawDataset
from ldiff.dataset.verify import verify_dataset
from ldiff.errors import LdiffError
from ldiff.io import Geometry, geometry_mismatch

SPACING_MM = 4.0
NAME = "Dataset001_MSPhantom"
T1, FLAIR = 0, 1


def _array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _load_case(case) -> dict[str, np.ndarray]:
    return {
        "images": np.stack([_array(path) for path in case.image_files]),
        "healthy": np.stack([_array(path) for path in case.healthy_files]),
        "label": _array(case.label_file),
        "tissue": _array(case.tissue_file),
    }


@pytest.fixture(scope="module")
def dataset_folder(tmp_path_factory) -> Path:
    raw_root = tmp_path_factory.mktemp("raw")
    return make_example_dataset(
        raw_root, num_train=2, num_test=1, seed=0, spacing_mm=SPACING_MM, num_workers=1, show_progress=False
    )


@pytest.fixture(scope="module")
def cases(dataset_folder) -> list[dict[str, np.ndarray]]:
    dataset = RawDataset(dataset_folder)
    return [_load_case(case) for split in ("Tr", "Ts") for case in dataset.cases(split)]


def test_layout_follows_the_raw_dataset_contract(dataset_folder):
    dataset = RawDataset(dataset_folder)
    assert dataset.channel_names == ["T1w", "FLAIR"]
    assert [case.identifier for case in dataset.cases("Tr")] == ["MSPhantom_000", "MSPhantom_001"]
    assert [case.identifier for case in dataset.cases("Ts")] == ["MSPhantom_002"]
    for case in dataset.cases("Tr") + dataset.cases("Ts"):
        files = [*case.image_files, *case.healthy_files, case.label_file, case.tissue_file]
        assert all(path is not None and path.is_file() for path in files), case.identifier
    info = json.loads((dataset_folder / "dataset.json").read_text())
    assert info["labels"] == {"background": 0, "lesion": 1}
    assert (info["numTraining"], info["numTest"], info["file_ending"]) == (2, 1, ".nii.gz")
    assert info["seed"] == 0 and info["spacing"] == [SPACING_MM] * 3
    assert info["generator"]["periventricular_fraction"] == PhantomParameters().periventricular_fraction
    # Nothing but the finished dataset is left in the raw root (no staging folder).
    assert [path.name for path in dataset_folder.parent.iterdir()] == [NAME]
    assert verify_dataset(dataset) == []  # the checks that run before planning accept it as it is


def test_files_of_a_case_share_one_ras_grid_and_have_the_right_types(dataset_folder):
    for case in RawDataset(dataset_folder).cases("Tr"):
        reference = sitk.ReadImage(str(case.image_files[0]))
        assert reference.GetSpacing() == (SPACING_MM,) * 3
        # RAS voxel axes stored in ITK's LPS world: x and y flipped, z kept.
        assert np.allclose(np.reshape(reference.GetDirection(), (3, 3)), np.diag([-1.0, -1.0, 1.0]))
        for path in [*case.image_files, *case.healthy_files, case.label_file, case.tissue_file]:
            image = sitk.ReadImage(str(path))
            assert geometry_mismatch(Geometry.of(reference), Geometry.of(image)) is None, path.name
            expected = sitk.sitkUInt8 if path in (case.label_file, case.tissue_file) else sitk.sitkFloat32
            assert image.GetPixelID() == expected, path.name


def test_images_are_skull_stripped_and_labels_are_valid(cases):
    for case in cases:
        brain = case["tissue"] > 0
        assert set(np.unique(case["tissue"])) <= {0, 1, 2, 3}
        assert set(np.unique(case["label"])) <= {0, 1}
        for images in (case["images"], case["healthy"]):
            assert np.all(images[:, ~brain] == 0)
            assert np.all(images[:, brain] > 0)
    assert sum(case["label"].any() for case in cases) >= 2


def test_lesions_lie_in_white_matter(cases):
    for case in cases:
        lesion = case["label"] == 1
        if not lesion.any():
            continue
        assert np.all(case["tissue"][lesion] == WM)
        # Independent of the tissue file: what the lesion replaced looks like WM, not GM, on T1.
        healthy_t1 = case["healthy"][T1]
        wm_mean = healthy_t1[(case["tissue"] == 3) & ~lesion].mean()
        gm_mean = healthy_t1[case["tissue"] == 2].mean()
        under_lesion = healthy_t1[lesion].mean()
        assert abs(under_lesion - wm_mean) < abs(under_lesion - gm_mean)


def test_lesions_are_dark_on_t1_and_bright_on_flair(cases):
    for case in cases:
        lesion = case["label"] == 1
        if not lesion.any():
            continue
        lesioned, healthy = case["images"][:, lesion], case["healthy"][:, lesion]
        assert np.all(lesioned[T1] < healthy[T1])
        assert np.all(lesioned[FLAIR] > healthy[FLAIR])
        assert lesioned[T1].mean() < 0.9 * healthy[T1].mean()
        assert lesioned[FLAIR].mean() > 1.2 * healthy[FLAIR].mean()


def test_healthy_and_lesioned_differ_only_around_lesions(cases):
    for case in cases:
        lesion = case["label"] == 1
        near = ndimage.binary_dilation(lesion, np.ones((3, 3, 3), bool), iterations=LESION_HALO_VOXELS)
        assert np.array_equal(case["images"][:, ~near], case["healthy"][:, ~near])
        if not lesion.any():
            assert np.array_equal(case["images"], case["healthy"])


def test_tissue_contrast_of_t1_and_flair(cases):
    for case in cases:
        # Eroded classes: at 4 mm the class borders are mostly partial volume.
        cores = [ndimage.binary_erosion(case["tissue"] == value) for value in (1, 2, 3)]
        csf, grey, white = (case["healthy"][:, core].mean(axis=1) for core in cores)
        assert csf[T1] < grey[T1] < white[T1]
        assert csf[FLAIR] < white[FLAIR] < grey[FLAIR]


def test_same_seed_gives_identical_files_for_any_worker_count(dataset_folder, tmp_path):
    again = make_example_dataset(
        tmp_path, num_train=2, num_test=1, seed=0, spacing_mm=SPACING_MM, num_workers=2, show_progress=False
    )
    first_files = sorted(p.relative_to(dataset_folder) for p in dataset_folder.rglob("*.nii.gz"))
    second_files = sorted(p.relative_to(again) for p in again.rglob("*.nii.gz"))
    assert first_files == second_files and len(first_files) == 3 * 6
    for relative in first_files:
        assert np.array_equal(_array(dataset_folder / relative), _array(again / relative)), relative

    # --overwrite replaces the whole folder; another seed gives another case 0.
    with pytest.raises(LdiffError, match="already exists"):
        make_example_dataset(tmp_path, num_train=1, num_test=0, seed=1, spacing_mm=SPACING_MM)
    replaced = make_example_dataset(
        tmp_path, num_train=1, num_test=0, seed=1, spacing_mm=SPACING_MM, num_workers=1,
        overwrite=True, show_progress=False,
    )
    assert replaced == again
    assert json.loads((replaced / "dataset.json").read_text())["seed"] == 1
    assert not list(replaced.glob("imagesTs/*"))  # the old test cases went with the old folder
    assert [p.name for p in tmp_path.iterdir()] == [NAME]
    case_file = Path("imagesTr") / "MSPhantom_000_0000.nii.gz"
    assert not np.array_equal(_array(dataset_folder / case_file), _array(replaced / case_file))


def test_cli_reports_user_errors_in_one_sentence(dataset_folder, capsys):
    with pytest.raises(SystemExit) as exit_info:
        make_example_main(["-o", str(dataset_folder.parent), "--spacing", str(SPACING_MM)])
    assert exit_info.value.code == 1
    message = capsys.readouterr().err
    assert "already exists" in message and "--overwrite" in message and "Traceback" not in message
    with pytest.raises(SystemExit) as exit_info:
        make_example_main(["-o", str(dataset_folder.parent / "other"), "--spacing", "0"])
    assert exit_info.value.code == 1
    assert "--spacing" in capsys.readouterr().err


def test_nibabel_to_sitk_keeps_the_world_position_of_every_voxel():
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # oblique, not diagonal
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([1.5, 2.0, 3.0])
    affine[:3, 3] = [-10.0, 20.0, 5.0]
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    image = nibabel_to_sitk(nibabel.Nifti1Image(data, affine))
    array_zyx = sitk.GetArrayFromImage(image)
    for index in [(0, 0, 0), (3, 1, 2), (1, 4, 5)]:
        ras = affine @ np.array([*index, 1.0])
        lps = image.TransformIndexToPhysicalPoint(index)
        assert np.allclose(lps, [-ras[0], -ras[1], ras[2]])
        assert array_zyx[index[::-1]] == data[index]


def test_lesion_count_and_volume_distributions_are_heavy_tailed():
    params = PhantomParameters()
    rng = np.random.default_rng(0)
    volumes = sample_lesion_volumes(rng, 5000, params)
    assert volumes.min() < 10.0 and volumes.max() > 1000.0  # a few voxels up to cm^3
    assert volumes.mean() > 1.5 * np.median(volumes)
    counts = np.array([sample_lesion_count(rng, params) for _ in range(2000)])
    assert counts.min() >= params.lesion_count_minimum
    assert counts.var() > 2 * counts.mean()  # overdispersed: far from Poisson


def test_lesion_patch_has_the_requested_volume_and_soft_edges():
    params = PhantomParameters()
    rng = np.random.default_rng(1)
    ratios = []
    for _ in range(15):
        patch = lesion_partial_volume(rng, 500.0, 1.0, params)
        assert patch.min() >= 0.0 and patch.max() <= 1.0
        assert np.any((patch > 0.05) & (patch < 0.95))
        ratios.append(patch.sum() / 500.0)  # 1 mm voxels: sum of coverage = volume in mm^3
    assert 0.7 < np.median(ratios) < 1.4


def test_lesion_centres_are_in_white_matter_and_prefer_the_ventricles():
    template = build_phantom_template(SPACING_MM, PhantomParameters())
    centres = np.round(sample_lesion_centres(np.random.default_rng(2), 3000, template)).astype(int)
    centres = np.clip(centres, 0, np.array(template.shape) - 1)
    assert np.all(template.tissue_labels[tuple(centres.T)] == WM)
    distance = ndimage.distance_transform_edt(~template.ventricles, sampling=SPACING_MM)
    white_matter_average = distance[template.tissue_labels == WM].mean()
    assert distance[tuple(centres.T)].mean() < 0.7 * white_matter_average


def test_flair_lesion_gain_changes_only_the_flair_lesions():
    # The FLAIR lesion range was recalibrated (phantom_parameters.py); with the same seed, the T1w channel,
    # the labels and the healthy twins must stay what they were, and FLAIR must brighten by the gain.
    from dataclasses import replace

    from ldiff.dataset.phantom_case import simulate_case

    params = PhantomParameters()
    template = build_phantom_template(SPACING_MM, params)
    faint = simulate_case(template, 0, 1, replace(params, flair_lesion_gain_range=(0.3, 0.3)))
    bright = simulate_case(template, 0, 1, replace(params, flair_lesion_gain_range=(0.9, 0.9)))
    lesion = faint.lesion_label == 1
    assert lesion.any()
    np.testing.assert_array_equal(faint.images[T1], bright.images[T1])
    np.testing.assert_array_equal(faint.healthy_images, bright.healthy_images)
    np.testing.assert_array_equal(faint.lesion_label, bright.lesion_label)
    # Noise and bias differ nowhere between the two, so the lesion's brightening is the gain times its
    # severity: three times the gain, three times the change (up to float32 rounding and clipping at 0).
    change = lambda case: case.images[FLAIR][lesion] - case.healthy_images[FLAIR][lesion]
    assert np.all(change(faint) > 0)
    np.testing.assert_allclose(change(bright), 3 * change(faint), rtol=1e-3, atol=1e-3 * change(bright).max())
