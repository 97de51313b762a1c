"""The classic fillers (nawm, rim, patch, biharmonic, ringmedian, slf), their file layer and
ldiff_fill_classic.

Synthetic 32^3 volumes with known truth: a white-matter cube at 100 with noise of sd 5, grey matter
at 60 around it, and dark lesions (30) inside the WM.
"""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ldiff.errors import LdiffError
from ldiff.evaluation.classic import CLASSIC_METHODS, classic_fill, fill_classic_files
from ldiff.io import Geometry, geometry_mismatch

WM_MEAN, WM_SD, GM_MEAN, LESION_MEAN = 100.0, 5.0, 60.0, 30.0
SHAPE = (32, 32, 32)


def sphere(centre, radius, shape=SHAPE) -> np.ndarray:
    z, y, x = np.indices(shape)
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2


def wm_phantom(lesions=(((16, 16, 16), 3.5),), seed=0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image float32, lesion bool, wm bool): WM cube of side 21 at 100 +- 5, GM at 60 +- 5, lesions at 30 +- 5."""
    rng = np.random.default_rng(seed)
    wm = np.zeros(SHAPE, bool)
    wm[6:27, 6:27, 6:27] = True
    image = np.where(wm, WM_MEAN, GM_MEAN) + rng.normal(0, WM_SD, SHAPE)
    lesion = np.zeros(SHAPE, bool)
    for centre, radius in lesions:
        lesion |= sphere(centre, radius)
    lesion &= wm
    image[lesion] = LESION_MEAN + rng.normal(0, WM_SD, int(lesion.sum()))
    return image.astype(np.float32), lesion, wm


# A central lesion and one touching the WM border, so that cortex is part of its neighbourhood.
TWO_LESIONS = (((16, 16, 16), 3.5), ((16, 10, 24), 2.5))


@pytest.mark.parametrize("method", CLASSIC_METHODS)
@pytest.mark.parametrize("use_wm", [False, True])
def test_only_lesion_voxels_change_and_outside_is_bit_identical(method, use_wm):
    image, lesion, wm = wm_phantom(TWO_LESIONS)
    original = image.copy()
    filled = classic_fill(image, lesion, method, (1.0, 1.0, 1.0), seed=3, wm_mask=wm if use_wm else None)
    assert filled.dtype == image.dtype and filled.shape == image.shape
    assert np.array_equal(filled.view(np.uint32)[~lesion], image.view(np.uint32)[~lesion])
    assert np.array_equal(image, original), "the input must not be modified in place"
    assert np.mean(filled[lesion] != image[lesion]) > 0.99


@pytest.mark.parametrize("method", CLASSIC_METHODS)
def test_fill_is_close_to_surrounding_normal_white_matter(method):
    image, lesion, wm = wm_phantom()
    # slf's estimate without a mask needs a brain-like histogram (zero background, WM a large share),
    # which this phantom, grey matter over 72 % of the field of view, lacks; see the slf tests below.
    wm_mask = wm if method == "slf" else None
    filled = classic_fill(image, lesion, method, (1.0, 1.0, 1.0), seed=0, wm_mask=wm_mask)
    assert abs(filled[lesion].mean() - WM_MEAN) < 3.0


def test_nawm_fill_has_the_local_nawm_spread():
    image, lesion, wm = wm_phantom(((((16, 16, 16), 4.5),)))
    for wm_mask in (None, wm):
        for distribution in ("gaussian", "empirical"):
            filled = classic_fill(image, lesion, "nawm", (1, 1, 1), seed=1, wm_mask=wm_mask, distribution=distribution)
            assert abs(filled[lesion].mean() - WM_MEAN) < 1.5
            assert 0.8 * WM_SD < filled[lesion].std() < 1.2 * WM_SD


def test_nawm_without_wm_mask_ignores_neighbouring_grey_matter():
    # A lesion on the WM border: almost 40 % of its 5 mm shell is grey matter at 60, which drags
    # the shell's mean and even its median away from WM.
    image, lesion, wm = wm_phantom(((((16, 16, 26), 2.5),)))
    from ldiff.evaluation.classic.lesions import shell_within

    shell = shell_within(lesion, 5.0, (1, 1, 1))
    assert np.median(image[shell]) < WM_MEAN - 4, "the test needs a mixed neighbourhood to mean anything"
    filled = classic_fill(image, lesion, "nawm", (1, 1, 1), seed=0)
    assert abs(filled[lesion].mean() - WM_MEAN) < 2.0
    assert filled[lesion].std() < 1.3 * WM_SD


def test_rim_hypointense_only_draws_only_from_rim_at_or_above_lesion_mean():
    image, lesion, _ = wm_phantom()
    # A dark CSF-like slab (10, below the lesion's 30) touching one side of the lesion's rim.
    image[:, :, 19:22] = 10.0
    image[lesion] = LESION_MEAN + np.random.default_rng(0).normal(0, WM_SD, int(lesion.sum()))
    from scipy import ndimage

    rim = ndimage.binary_dilation(lesion, np.ones((3, 3, 3), bool)) & ~lesion
    lesion_mean = image[lesion].mean()
    plain = classic_fill(image, lesion, "rim", (1, 1, 1), seed=0)
    assert np.isin(plain[lesion], image[rim]).all()
    assert (plain[lesion] < lesion_mean).any(), "without the option, dark rim voxels are drawn too"
    ants = classic_fill(image, lesion, "rim", (1, 1, 1), seed=0, hypointense_only=True)
    assert np.isin(ants[lesion], image[rim]).all()
    assert (ants[lesion] >= lesion_mean).all()


@pytest.mark.parametrize("method", CLASSIC_METHODS)
def test_same_seed_same_fill(method):
    image, lesion, _ = wm_phantom(TWO_LESIONS)
    first = classic_fill(image, lesion, method, (1, 1, 1), seed=7)
    second = classic_fill(image, lesion, method, (1, 1, 1), seed=7)
    assert np.array_equal(first, second)


@pytest.mark.parametrize("method", ["nawm", "rim", "slf"])
def test_random_methods_differ_across_seeds(method):
    image, lesion, _ = wm_phantom()
    first = classic_fill(image, lesion, method, (1, 1, 1), seed=1)
    second = classic_fill(image, lesion, method, (1, 1, 1), seed=2)
    assert np.mean(first[lesion] != second[lesion]) > 0.5


def test_patch_reproduces_a_periodic_texture_better_than_a_constant():
    z, y, x = np.indices(SHAPE)
    truth = 100 + 20 * np.sin(2 * np.pi * x / 8) + 10 * np.cos(2 * np.pi * z / 6)
    truth = truth + np.random.default_rng(0).normal(0, 1, SHAPE)
    lesion = sphere((16, 16, 16), 4)
    image = truth.copy()
    image[lesion] = 30.0
    filled = classic_fill(image, lesion, "patch", (1, 1, 1), seed=0)
    patch_mse = np.mean((filled[lesion] - truth[lesion]) ** 2)
    constant_mse = np.mean((image[~lesion].mean() - truth[lesion]) ** 2)
    assert patch_mse < 0.2 * constant_mse


def test_biharmonic_reproduces_a_linear_ramp():
    z, y, x = np.indices(SHAPE)
    ramp = 50.0 + 2.0 * x + 3.0 * y - 1.0 * z
    lesion = sphere((16, 16, 16), 4) | sphere((12, 20, 13), 2)
    image = ramp.copy()
    image[lesion] = 0.0
    filled = classic_fill(image, lesion, "biharmonic", (1, 1, 1))
    assert np.abs(filled[lesion] - ramp[lesion]).max() < 1e-6


def test_dispatcher_rejects_unknown_methods_and_keeps_empty_masks_unchanged():
    image, _, _ = wm_phantom()
    with pytest.raises(ValueError, match="unknown classic fill method"):
        classic_fill(image, np.zeros(SHAPE, bool), "median", (1, 1, 1))
    for method in CLASSIC_METHODS:
        assert np.array_equal(classic_fill(image, np.zeros(SHAPE, bool), method, (1, 1, 1)), image)


def test_integer_images_are_filled_in_float():
    image, lesion, _ = wm_phantom()
    integer = np.rint(image).astype(np.int16)
    filled = classic_fill(integer, lesion, "nawm", (1, 1, 1))
    assert filled.dtype == np.float64
    assert np.array_equal(filled[~lesion], integer[~lesion])


# --- files and command line ---------------------------------------------------------------------

SPACING, ORIGIN = (0.9, 1.1, 1.3), (-12.0, 4.5, 30.25)
DIRECTION = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def write(array: np.ndarray, path: Path, spacing=SPACING) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(ORIGIN)
    image.SetDirection(DIRECTION)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def run_cli(*arguments) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ldiff.cli.fill_classic", *map(str, arguments)],
                          capture_output=True, text=True, timeout=120)


def test_cli_single_file_keeps_geometry_and_pixel_type(tmp_path):
    image, lesion, _ = wm_phantom()
    t1 = write(np.rint(image * 10).astype(np.int16), tmp_path / "t1.nii.gz")
    mask = write(lesion.astype(np.uint8), tmp_path / "lesions.nii.gz")
    result = run_cli("-i", t1, "--mask", mask, "-o", tmp_path / "filled.nii.gz", "--method", "patch")
    assert result.returncode == 0, result.stderr
    source, filled = sitk.ReadImage(str(t1)), sitk.ReadImage(str(tmp_path / "filled.nii.gz"))
    assert filled.GetPixelID() == source.GetPixelID() == sitk.sitkInt16
    assert geometry_mismatch(Geometry.of(source), Geometry.of(filled)) is None
    before, after = sitk.GetArrayFromImage(source), sitk.GetArrayFromImage(filled)
    assert np.array_equal(before[~lesion], after[~lesion])
    assert abs(after[lesion].mean() - 10 * WM_MEAN) < 30


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_cli_refuses_to_overwrite_its_input(tmp_path):
    image, lesion, _ = wm_phantom()
    t1 = write(image, tmp_path / "t1.nii.gz")
    mask = write(lesion.astype(np.uint8), tmp_path / "lesions.nii.gz")
    before = t1.read_bytes()
    message = one_line_error(run_cli("-i", t1, "--mask", mask, "-o", t1, "--method", "nawm"))
    assert "same as -i" in message
    assert t1.read_bytes() == before


def test_cli_mask_grid_mismatch_is_one_sentence_and_writes_nothing(tmp_path):
    image, lesion, _ = wm_phantom()
    t1 = write(image, tmp_path / "t1.nii.gz")
    mask = write(lesion.astype(np.uint8), tmp_path / "lesions.nii.gz", spacing=(1.0, 1.0, 1.0))
    out = tmp_path / "out" / "filled.nii.gz"
    message = one_line_error(run_cli("-i", t1, "--mask", mask, "-o", out, "--method", "rim"))
    assert str(mask) in message and "grid differs" in message
    assert not out.exists() and not out.parent.exists()


def make_folder(tmp_path: Path, masks_elsewhere: bool) -> tuple[Path, Path | None, dict]:
    """Two cases with two channels each; returns (image folder, mask folder or None, lesions per case)."""
    images = tmp_path / "images"
    masks = tmp_path / "masks" if masks_elsewhere else images
    lesions = {}
    for index, case in enumerate(("case_a", "case_b")):
        image, lesion, _ = wm_phantom(seed=index)
        write(image, images / f"{case}_0000.nii.gz")
        write(200.0 - image, images / f"{case}_0001.nii.gz")  # a second contrast with bright lesions
        write(lesion.astype(np.uint8), masks / f"{case}.nii.gz")
        lesions[case] = lesion
    return images, masks if masks_elsewhere else None, lesions


def test_folder_mode_fills_every_channel_with_every_method(tmp_path):
    images, masks, lesions = make_folder(tmp_path, masks_elsewhere=True)
    written = fill_classic_files(images, tmp_path / "out", "all", masks_dir=masks, progress=False)
    assert len(written) == len(CLASSIC_METHODS) * 2 * 2
    for method in CLASSIC_METHODS:
        for case, lesion in lesions.items():
            for channel in ("0000", "0001"):
                source = sitk.ReadImage(str(images / f"{case}_{channel}.nii.gz"))
                filled = sitk.ReadImage(str(tmp_path / "out" / method / f"{case}_{channel}.nii.gz"))
                assert filled.GetPixelID() == source.GetPixelID()
                assert geometry_mismatch(Geometry.of(source), Geometry.of(filled)) is None
                before, after = sitk.GetArrayFromImage(source), sitk.GetArrayFromImage(filled)
                assert np.array_equal(before[~lesion], after[~lesion])
                expected = WM_MEAN if channel == "0000" else 200 - WM_MEAN
                if method != "slf":  # without a WM mask slf needs a T1 brain histogram (see its tests)
                    assert abs(after[lesion].mean() - expected) < 3


def test_folder_mode_checks_everything_before_writing(tmp_path):
    images, _, _ = make_folder(tmp_path, masks_elsewhere=False)
    out = tmp_path / "out"
    with pytest.raises(LdiffError, match="same as -i"):
        fill_classic_files(images, images, "nawm", progress=False)
    bad = sitk.ReadImage(str(images / "case_b.nii.gz"))
    write(sitk.GetArrayFromImage(bad) * 2, images / "case_b.nii.gz")  # labels 0/2: not binary
    with pytest.raises(LdiffError, match=r"case_b\.nii\.gz: lesion mask is not binary"):
        fill_classic_files(images, out, "nawm", progress=False)
    (images / "case_b.nii.gz").unlink()
    with pytest.raises(LdiffError, match=r"case_b\.nii\.gz: lesion mask of case case_b not found"):
        fill_classic_files(images, out, "nawm", progress=False)
    assert not out.exists(), "case_a must not have been written before case_b was checked"


def test_empty_mask_writes_the_input_unchanged_with_a_warning(tmp_path, caplog):
    image, lesion, _ = wm_phantom()
    t1 = write(image, tmp_path / "t1.nii.gz")
    mask = write(np.zeros_like(lesion, dtype=np.uint8), tmp_path / "empty.nii.gz")
    with caplog.at_level(logging.WARNING, logger="ldiff"):
        fill_classic_files(t1, tmp_path / "out.nii.gz", "rim", mask=mask, progress=False)
    assert "empty" in caplog.text
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out.nii.gz"))), image)


def test_dilation_grows_the_filled_region(tmp_path):
    image, lesion, _ = wm_phantom()
    t1 = write(image, tmp_path / "t1.nii.gz")
    mask = write(lesion.astype(np.uint8), tmp_path / "lesions.nii.gz")
    fill_classic_files(t1, tmp_path / "out.nii.gz", "biharmonic", mask=mask, dilate=1, progress=False)
    after = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out.nii.gz")))
    changed = after != image
    assert changed.sum() > lesion.sum() and not changed[~sphere((16, 16, 16), 5.5)].any()


def test_cli_dilate_like_a_model_replaces_the_region_ldiff_would(tmp_path):
    image, lesion, _ = wm_phantom()
    t1 = write(image, tmp_path / "t1.nii.gz")
    mask = write(lesion.astype(np.uint8), tmp_path / "lesions.nii.gz")
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text('{"task": "cond_fill", "network": {}, "mask_dilation": {"radius_voxels": 1}}')
    result = run_cli("-i", t1, "--mask", mask, "-o", tmp_path / "like.nii.gz", "--method", "biharmonic",
                     "--dilate-like", model)
    assert result.returncode == 0, result.stderr
    fill_classic_files(t1, tmp_path / "one.nii.gz", "biharmonic", mask=mask, dilate=1, progress=False)
    like, one = (sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / name))) for name in ("like.nii.gz", "one.nii.gz"))
    assert np.array_equal(like, one) and (like != image).sum() > lesion.sum()
    (model / "model.json").write_text('{"task": "cond_fill", "network": {}}')
    message = one_line_error(run_cli("-i", t1, "--mask", mask, "-o", tmp_path / "x.nii.gz", "--method", "nawm",
                                     "--dilate-like", model))
    assert "mask_dilation" in message


def test_cli_method_choices_are_the_classic_methods_and_all():
    from ldiff.cli.fill_classic import METHOD_CHOICES

    assert METHOD_CHOICES == CLASSIC_METHODS + ("all",)
