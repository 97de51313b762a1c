"""Prediction library: ROI selection, the Predictor on every task, bad inputs (model loading and choice:
test_model_choice.py).

Models are built by hand (``build_network`` + the trainer's checkpoint helpers, random weights) with
the tiny network of the training tests, so a prediction takes a fraction of a second. Their output
is noise-like, which is fine: these tests check geometry, pixel types, exactness outside the
dilated mask, reproducibility and the error sentences, not quality.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import phantom_case
from ldiff.errors import LdiffError
from ldiff.inference.model_loading import load_model
from ldiff.inference.lesion_intensity import lesion_intensities
from ldiff.inference.predictor import Predictor
from ldiff.inference.roi import coverage_in_preprocessed_space
from ldiff.io import save_json_atomic
from ldiff.masks import dilate_mask
from ldiff.networks import build_network
from ldiff.preprocessing import PercentileNormalizer
from ldiff.tasks import TASKS, get_task
from ldiff.training import checkpoints
from training_fixtures import TINY_NETWORK

TASK_NAMES = tuple(TASKS)
SPACING = (1.0, 1.2, 2.0)  # anisotropic, resampled to the plan's 1 mm
# A 90 degree rotation about z: not the identity, so reorientation and its inverse are exercised.
DIRECTION = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
ORIGIN = (3.0, -4.0, 5.0)
FAST = {"steps": 3}
FAST_REPAINT = {"steps": 3, "jump_length": 1, "resamplings": 2}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_plans(dataset_name: str = "Dataset901_Tiny", channel_names=("T1w", "FLAIR")) -> dict:
    def configuration(architecture: str, stack_depth: int) -> dict:
        return {"slice_axis": 0, "slice_size": [48, 48], "patch_size": [16, 16], "stack_depth": stack_depth,
                "network": {"architecture": architecture, "in_channels": 1, "out_channels": 1, **TINY_NETWORK},
                "batch_size": 2, "num_training_steps": 4, "learning_rate": 1e-3, "warmup_steps": 2}

    return {"dataset_name": dataset_name, "channel_names": list(channel_names), "orientation": "RAS",
            "data_identifier": "ldiffPlans_1x1x1mm", "target_spacing": [1.0, 1.0, 1.0],
            "normalization": {"scheme": "percentile_clip", "lower_percentile": 0.5, "upper_percentile": 99.5},
            "wm_channel": 0, "mask_dilation": {"radius_voxels": 1, "radius_mm": 1.0, "shape": "ball"},
            "diffusion": {"num_train_timesteps": 1000},
            "configurations": {"2d": configuration("unet2d", 1), "p3d": configuration("unet_p3d", 3)}}


def make_model_folder(root: Path, task_name: str, config_name: str = "p3d", dataset_name: str = "Dataset901_Tiny",
                      channel_names=("T1w", "FLAIR"), fold: str = "0", latest: bool = False,
                      lesion_level_cue: bool = False) -> Path:
    """A results fold folder with model.json and checkpoint_final.pth (or checkpoint_latest.pth), random weights."""
    plans = tiny_plans(dataset_name, channel_names)
    task = get_task(task_name, lesion_level_cue)
    network_config = {**plans["configurations"][config_name]["network"],
                      "in_channels": task.in_channels(len(channel_names)), "out_channels": len(channel_names)}
    torch.manual_seed(0)
    network = build_network(network_config)
    description = checkpoints.model_description(plans, {}, dataset_name, task, config_name, network_config,
                                                {"batch_size": 2})
    folder = root / dataset_name / f"{task_name}__{config_name}" / f"fold_{fold}"
    save_json_atomic(description, folder / "model.json")
    if latest:
        state = {"format_version": checkpoints.CHECKPOINT_FORMAT_VERSION, "kind": "latest", "step": 1,
                 "model": {k: torch.zeros_like(v) for k, v in network.state_dict().items()},
                 "ema": {"decay": 0.9, "warmup": True, "num_updates": 1, "weights": network.state_dict()}}
        checkpoints.save_checkpoint(state, folder / checkpoints.LATEST_NAME)
    else:
        state = checkpoints.final_checkpoint_state(1, network.state_dict(), description)
        checkpoints.save_checkpoint(state, folder / checkpoints.FINAL_NAME)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[tuple[str, str], Path]:
    root = tmp_path_factory.mktemp("models")
    return {(task, config): make_model_folder(root, task, config) for task in TASK_NAMES for config in ("2d", "p3d")}


def as_image(array: np.ndarray, dtype=np.float32, spacing=SPACING) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(dtype))
    image.SetSpacing(spacing)
    image.SetOrigin(ORIGIN)
    image.SetDirection(DIRECTION)
    return image


@pytest.fixture(scope="module")
def case() -> tuple[list[sitk.Image], np.ndarray]:
    """int16 T1 and float32 FLAIR phantoms (36 x 44 x 40) with two lesions, on a rotated anisotropic grid."""
    t1, flair, lesion, _ = phantom_case(lesion_centres=((18, 22, 14), (20, 24, 27)))
    return [as_image(np.rint(t1), np.int16), as_image(flair)], lesion.astype(bool)


def dilated(mask: np.ndarray) -> np.ndarray:
    return dilate_mask(mask, spacing=SPACING, radius_mm=1.0, shape="ball")


def arrays_of(images: list[sitk.Image]) -> list[np.ndarray]:
    return [sitk.GetArrayFromImage(image) for image in images]


def options_for(task: str) -> dict:
    return FAST_REPAINT if task == "uncond_fill" else FAST


# ---- the mask between the original grid and the model space -----------------------------------------
def test_the_mask_carried_into_the_model_space_maps_back_over_every_mask_voxel(case):
    from ldiff.preprocessing import preprocess_images, restore_to_original

    images, lesion = case
    region = dilated(lesion)
    config = {"target_spacing": [1.0, 0.9, 0.8], "normalization": tiny_plans()["normalization"]}
    arrays, properties = preprocess_images(images, None, None, config, None, "case")
    coverage = coverage_in_preprocessed_space(region, properties)
    assert coverage.shape == arrays["brain"].shape and 0 <= coverage.min() and coverage.max() <= 1
    back = sitk.GetArrayFromImage(restore_to_original(coverage > 0, properties, None, is_mask=True)) > 0
    assert back[region].all()


# ---- the Predictor on every task --------------------------------------------------------------------
@pytest.mark.parametrize("config_name", ["2d", "p3d"])
@pytest.mark.parametrize("task_name", TASK_NAMES)
def test_every_task_keeps_the_grid_the_pixel_type_and_every_voxel_outside_the_dilated_mask(models, case, task_name,
                                                                                          config_name):
    images, lesion = case
    predictor = Predictor.from_folder(models[(task_name, config_name)], **options_for(task_name))
    result = predictor.predict(images, lesion, seed=3)
    region = dilated(lesion)
    assert result.crops > 0 and result.network_calls > 0 and result.changed.any()
    assert not (result.changed & ~region).any()
    for source, output in zip(images, result.images):
        assert output.GetPixelID() == source.GetPixelID()
        assert output.GetSize() == source.GetSize() and output.GetSpacing() == source.GetSpacing()
        assert output.GetOrigin() == source.GetOrigin() and output.GetDirection() == source.GetDirection()
        before, after = sitk.GetArrayFromImage(source), sitk.GetArrayFromImage(output)
        assert np.array_equal(before[~region].view(np.uint8), after[~region].view(np.uint8)), "bit for bit outside"
        assert np.mean(before[lesion] != after[lesion]) > 0.9, "the model's output replaces the lesion"
        assert np.all(np.isfinite(after))


@pytest.mark.parametrize("task_name", ["cond_fill", "uncond_fill", "uncond_synth"])
def test_same_seed_same_output_other_seed_other_output(models, case, task_name):
    images, lesion = case
    predictor = Predictor.from_folder(models[(task_name, "p3d")], **options_for(task_name))
    first = arrays_of(predictor.predict(images, lesion, seed=7).images)
    again = arrays_of(predictor.predict(images, lesion, seed=7).images)
    other = arrays_of(predictor.predict(images, lesion, seed=8).images)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[1], other[1])


@pytest.mark.parametrize("sampler", ["ddpm", "dpm_solver"])
def test_other_conditional_samplers_keep_the_outside(models, case, sampler):
    images, lesion = case
    result = Predictor.from_folder(models[("cond_fill", "2d")], sampler=sampler, steps=4).predict(images, lesion)
    outside = ~dilated(lesion)
    assert all(np.array_equal(a[outside], b[outside]) for a, b in zip(arrays_of(images), arrays_of(result.images)))


def test_numpy_api_returns_the_same_shape_and_dtype(models, case):
    _, lesion = case
    volumes = np.stack(arrays_of(case[0])).astype(np.int16)
    predictor = Predictor.from_folder(models[("cond_fill", "p3d")], **FAST)
    filled = predictor.fill(volumes, lesion, spacing=SPACING, seed=1)
    assert filled.dtype == np.int16 and filled.shape == volumes.shape
    outside = ~dilated(lesion)
    assert np.array_equal(filled[:, outside], volumes[:, outside]) and not np.array_equal(filled, volumes)
    assert np.array_equal(filled, predictor.fill(volumes, lesion.astype(np.uint8), spacing=SPACING, seed=1))
    images = predictor.fill(case[0], as_image(lesion, np.uint8), seed=1)
    assert isinstance(images, list) and images[0].GetPixelID() == sitk.sitkInt16


def test_synthesis_api_and_its_lesion_intensity(models, case):
    images, lesion = case
    predictor = Predictor.from_folder(models[("uncond_synth", "2d")], t0=-1)  # no noise: the coarse lesion itself
    flair_before = sitk.GetArrayFromImage(images[1])
    bright = sitk.GetArrayFromImage(predictor.synthesise(images, lesion, lesion_intensity=["p1", "p99"])[1])
    dark = sitk.GetArrayFromImage(predictor.synthesise(images, lesion, lesion_intensity=[-1.0])[1])
    core = lesion & (dilate_mask(~lesion, 1) == 0)  # the lesion's interior, away from the soft edge
    assert bright[core].mean() > flair_before[~lesion & (flair_before > 0)].mean() > dark[core].mean()
    with pytest.raises(LdiffError, match="cannot fill"):
        predictor.fill(images, lesion)


def test_inside_the_mask_the_output_is_the_model_output_through_the_inverse_normalisation(models, case):
    """With t0 = -1 the uncond_synth "model output" is the coarse lesion itself: a known value in [-1, 1]."""
    from ldiff.preprocessing import preprocess_images

    images = [as_image(array, dtype, spacing=(1.0, 1.0, 1.0)) for array, dtype in
              zip(arrays_of(case[0]), (np.int16, np.float32))]  # at the plan's spacing: no resampling blur
    lesion = case[1]
    predictor = Predictor.from_folder(models[("uncond_synth", "p3d")], t0=-1)
    outputs = arrays_of(predictor.predict(images, lesion, lesion_intensity=[0.5]).images)
    _, properties = preprocess_images(images, None, None, predictor.model.preprocessing_config, None, "case")
    interior = dilate_mask(~lesion, 2) == 0
    assert interior.sum() > 10
    for channel, output in enumerate(outputs):
        normalizer = PercentileNormalizer.from_dict(properties["normalization"][channel])
        expected = normalizer.denormalize(np.array([0.5]))[0]
        assert np.abs(output[interior] - expected).max() <= 0.01 * (normalizer.high - normalizer.low) + 0.5


def test_lesion_intensity_comes_from_the_fingerprint_relative_to_the_brain_percentiles(models):
    model = load_model(models[("uncond_synth", "2d")])
    fingerprint = {"intensity_median_of_cases": {
        "T1w": {"brain": {"0.5": 100.0, "99.5": 300.0}, "lesion": {"50": 150.0}},
        "FLAIR": {"brain": {"0.5": 0.0, "99.5": 1000.0}, "lesion": {"50": 900.0}}}}
    save_json_atomic(fingerprint, model.folder / "fingerprint.json")
    try:
        image = np.linspace(-1, 1, 2 * 1000, dtype=np.float32).reshape(2, 10, 10, 10)
        brain = np.ones((10, 10, 10), bool)
        normalizers = [PercentileNormalizer(0.0, 1.0, 0.5, 99.5)] * 2
        assert lesion_intensities(model, image, brain, normalizers, None) == pytest.approx([-0.5, 0.8])
        (model.folder / "fingerprint.json").unlink()
        defaults = lesion_intensities(model, image, brain, normalizers, None)  # p10 for T1w, p99 for FLAIR
        assert defaults == pytest.approx([np.percentile(image[0], 10), np.percentile(image[1], 99)])
    finally:
        (model.folder / "fingerprint.json").unlink(missing_ok=True)


# ---- bad inputs ---------------------------------------------------------------------------------------
def test_empty_mask_gives_the_input_back_with_a_warning(models, case, caplog):
    images, lesion = case
    with caplog.at_level(logging.WARNING, logger="ldiff"):
        result = Predictor.from_folder(models[("cond_fill", "2d")], **FAST).predict(images, np.zeros_like(lesion))
    assert "empty" in caplog.text and result.network_calls == 0
    assert all(np.array_equal(a, b) for a, b in zip(arrays_of(images), arrays_of(result.images)))


def test_mask_outside_the_brain_is_one_sentence(models, case):
    images, lesion = case
    outside = np.zeros_like(lesion)
    outside[0, 0, 0:3] = True
    with pytest.raises(LdiffError, match="no mask voxel lies inside the brain"):
        Predictor.from_folder(models[("cond_fill", "2d")], **FAST).predict(images, outside, mask_name="m.nii.gz")


def test_bad_arrays_and_channel_counts_are_one_sentence(models, case):
    images, lesion = case
    predictor = Predictor.from_folder(models[("cond_fill", "2d")], **FAST)
    volumes = np.stack(arrays_of(images)).astype(np.float32)
    with pytest.raises(LdiffError, match="not binary"):
        predictor.fill(volumes, lesion * 2)
    with pytest.raises(LdiffError, match="has shape"):
        predictor.fill(volumes, lesion[:-1])
    broken = volumes.copy()
    broken[0, 3, 3, 3] = np.nan
    with pytest.raises(LdiffError, match="NaN or Inf"):
        predictor.fill(broken, lesion)
    with pytest.raises(LdiffError, match=r"expects 2 channel\(s\) \(T1w, FLAIR\) but got 1 image"):
        predictor.fill(volumes[:1], lesion)
    shifted = sitk.Image(images[1])
    shifted.SetOrigin((0.0, 0.0, 0.0))
    with pytest.raises(LdiffError, match="grid differs"):
        predictor.fill([images[0], shifted], lesion)


def test_another_task_or_a_sampler_the_task_cannot_use_is_refused(models):
    with pytest.raises(LdiffError, match="holds a cond_fill model, not uncond_fill"):
        Predictor.from_folder(models[("cond_fill", "2d")], task="uncond_fill")
    with pytest.raises(LdiffError, match="--sampler repaint is for unconditional"):
        Predictor.from_folder(models[("cond_fill", "2d")], sampler="repaint")
    with pytest.raises(LdiffError, match="use --sampler repaint"):
        Predictor.from_folder(models[("uncond_fill", "2d")], sampler="ddim")
    with pytest.raises(LdiffError, match="steps must be >= 1"):
        Predictor.from_folder(models[("cond_fill", "2d")], steps=0)


def test_averaged_draws_keep_the_outside_and_differ_from_one_draw(models, case):
    images, lesion = case
    options = dict(options_for("cond_fill"), sampler="ddim", eta=0.0)
    single = Predictor.from_folder(models[("cond_fill", "2d")], **options)
    averaged = Predictor.from_folder(models[("cond_fill", "2d")], num_samples=3, **options)
    mean = arrays_of(averaged.predict([sitk.Cast(i, sitk.sitkFloat32) for i in images], lesion, seed=5).images)
    one = arrays_of(single.predict([sitk.Cast(i, sitk.sitkFloat32) for i in images], lesion, seed=5).images)
    outside = ~dilated(lesion)
    for source, result in zip(arrays_of(images), mean):
        assert np.array_equal(source[outside].astype(np.float32), result[outside])
    # three independent draws averaged are not the first draw alone
    assert not np.allclose(mean[0][lesion], one[0][lesion])
    with pytest.raises(LdiffError, match="num_samples must be >= 1"):
        Predictor.from_folder(models[("cond_fill", "2d")], num_samples=0)


def test_a_network_call_never_holds_more_samples_than_the_batch_size(models, case):
    images, lesion = case
    predictor = Predictor.from_folder(models[("cond_fill", "2d")], num_samples=3, batch_size=4,
                                      **dict(options_for("cond_fill"), sampler="ddim", eta=0.0))
    sizes = []
    forward = predictor.model.network.forward
    predictor.model.network.forward = lambda x, t: sizes.append(x.shape[0]) or forward(x, t)
    predictor.predict([sitk.Cast(i, sitk.sitkFloat32) for i in images], lesion, seed=1)
    # 3 draws per crop: one crop (3 samples) per call fits in 4; two crops (6 samples) would not
    assert sizes and max(sizes) == 3


def test_task_defaults_decide_sampler_steps_and_draws(models, case):
    images, lesion = case
    fill = Predictor.from_folder(models[("cond_fill", "2d")])
    assert fill.describe_sampling() == "dpm_solver 3 steps, mean of 4 draws per crop, warm start: smooth fill noised to t0=250"
    sizes = []
    forward = fill.model.network.forward
    fill.model.network.forward = lambda x, t: sizes.append(x.shape[0]) or forward(x, t)
    result = fill.predict([sitk.Cast(i, sitk.sitkFloat32) for i in images], lesion, seed=1)
    # every crop is drawn 4 times; a warm start at t0 = 250 lies below the 3-step grid's last timestep
    # (332), so each draw takes one network call: 4 samples per crop in all
    assert sum(sizes) == 4 * result.crops and result.network_calls == len(sizes)
    cold = Predictor.from_folder(models[("cond_fill", "2d")], t0="full")
    sizes.clear()
    cold.model.network.forward = lambda x, t: sizes.append(x.shape[0]) or forward(x, t)
    result = cold.predict([sitk.Cast(i, sitk.sitkFloat32) for i in images], lesion, seed=1)
    # from pure noise each draw walks the whole grid: 3 calls, 12 samples per crop
    assert sum(sizes) == 12 * result.crops and result.network_calls == len(sizes) and len(sizes) % 3 == 0
    synth = Predictor.from_folder(models[("cond_synth", "2d")])
    assert synth.describe_sampling() == "ddim 25 steps, one draw per crop"
    named = Predictor.from_folder(models[("cond_fill", "2d")], sampler="ddim")
    assert named.describe_sampling().startswith("ddim 25 steps, mean of 4 draws per crop")  # a named sampler's own steps


# ---- views: the fill along several slice orientations, averaged ------------------------------------
def test_a_fill_over_views_is_the_mean_of_each_views_fill_and_keeps_the_outside(models, case):
    images, lesion = case
    floats = [sitk.Cast(i, sitk.sitkFloat32) for i in images]
    options = dict(options_for("cond_fill"), sampler="ddim", eta=0.0, num_samples=1)

    def fill(views):
        predictor = Predictor.from_folder(models[("cond_fill", "2d")], views=views, **options)
        return predictor.predict(floats, lesion, seed=3)

    both, axial, coronal = fill(("axial", "coronal")), fill(("axial",)), fill(("coronal",))
    outside = ~dilated(lesion)
    for channel, source in enumerate(arrays_of(images)):
        joint, one, other = (sitk.GetArrayFromImage(r.images[channel]) for r in (both, axial, coronal))
        assert np.array_equal(source[outside].astype(np.float32), joint[outside])
        assert np.allclose(joint, (one.astype(np.float64) + other) / 2, atol=1e-5)
        # the views really differ: their mean is neither of them
        assert not np.allclose(joint[lesion], one[lesion], atol=1e-4)
    assert both.crops == axial.crops + coronal.crops


def test_views_default_to_the_models_training_and_split_the_default_draws(models, tmp_path):
    axial_model = Predictor.from_folder(models[("cond_fill", "2d")])
    assert axial_model.views == ("axial",) and axial_model.num_samples == 4
    folder = tmp_path / "all_axes"
    shutil.copytree(models[("cond_fill", "2d")], folder)
    description = json.loads((folder / "model.json").read_text())
    description["training"]["slice_axes"] = "all"
    (folder / "model.json").write_text(json.dumps(description))
    every_view = Predictor.from_folder(folder)
    # three views at 4 // 3 = 1 draw each: about the cost of one view's 4 draws
    assert every_view.views == ("axial", "coronal", "sagittal") and every_view.num_samples == 1
    assert "one draw per crop in each of 3 views (axial, coronal, sagittal)" in every_view.describe_sampling()
    assert Predictor.from_folder(folder, views="axial").views == ("axial",)
    description["target_spacing"] = [1.0, 1.0, 3.0]
    (folder / "model.json").write_text(json.dumps(description))
    assert Predictor.from_folder(folder).views == ("axial",)  # anisotropic voxels: axial only
    with pytest.raises(LdiffError, match="near-isotropic"):
        Predictor.from_folder(folder, views="all")
    with pytest.raises(LdiffError, match="unknown view 'oblique'"):
        Predictor.from_folder(folder, views=("oblique",))


def test_mask_voxels_outside_the_derived_brain_are_filled_too(models, case):
    """A lesion at the brain's edge that an intensity split calls background (here: T1 set to the
    background value) is still filled, and nothing outside the dilated mask changes."""
    from scipy import ndimage

    images, lesion = case
    t1, flair = arrays_of(images)
    brain = t1 != 0
    edge = brain & ~ndimage.binary_erosion(brain)
    lows, highs = np.argwhere(brain).min(0), np.argwhere(brain).max(0)
    candidates = [tuple(v) for v in np.argwhere(edge) if np.all(v > lows + 2) and np.all(v < highs - 2)]
    dark = np.zeros_like(lesion)
    for voxel in candidates[:: max(1, len(candidates) // 6)][:6]:
        dark[voxel] = True
    t1 = t1.copy()
    t1[dark] = 0  # background to the brain mask, inside the image's bounding box
    mask = lesion | dark
    filled = Predictor.from_folder(models[("cond_fill", "2d")], **FAST).predict(
        [as_image(t1, np.int16), as_image(flair)], mask).images
    out_t1, out_flair = arrays_of(filled)
    assert dark.sum() >= 4 and np.all(out_t1[dark] != 0)
    outside = ~dilated(mask)
    np.testing.assert_array_equal(out_t1[outside], t1[outside])
    np.testing.assert_array_equal(out_flair[outside], flair[outside])
