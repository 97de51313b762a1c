"""cond_fill's warm start: a smooth (biharmonic) fill of the mask, noised to t0 and denoised from there.

Checked by construction: the smooth fill continues a linear field exactly and leaves every other voxel
alone; the walk starts at t0 from exactly the prefilled image noised with the walk's first noise draw,
and costs the network calls of the grid below t0; with t0 = -1 (no noise, no steps) the written fill
is the smooth fill itself; the oracle network's meaning still reaches every painted voxel; a t0 the
task cannot use is one sentence.
"""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ldiff.cli.predict import timestep_or_fraction
from ldiff.diffusion import DPMSolverSampler, NoiseSchedule, standard_normal_like
from ldiff.errors import LdiffError
from ldiff.inference.predictor import COVERAGE_THRESHOLD, Predictor, SamplingOptions
from ldiff.inference.roi import coverage_in_preprocessed_space
from ldiff.inference import smooth_fill
from ldiff.inference.smooth_fill import biharmonic_inpaint, smooth_prefill, solve_biharmonic
from ldiff.masks import dilate_mask
from ldiff.preprocessing import preprocess_images, restore_to_original
from ldiff.tasks import get_task
from test_predict_oracle import expected_output, float_case, model_folders, oracle_predictor  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


def two_blobs(shape=(20, 24, 22)) -> np.ndarray:
    z, y, x = np.indices(shape)
    return (((z - 6) ** 2 + (y - 8) ** 2 + (x - 7) ** 2) <= 9) | (((z - 13) ** 2 + (y - 15) ** 2 + (x - 14) ** 2) <= 6)


def test_the_smooth_fill_continues_a_linear_field_exactly_and_keeps_every_other_voxel():
    mask = two_blobs()
    z, y, x = np.indices(mask.shape)
    field = 0.3 * z + 0.2 * y - 0.1 * x + 5.0
    volume = np.where(mask, 100.0, field)  # the lesions hold something else entirely
    filled = biharmonic_inpaint(volume, mask)
    assert np.abs(filled[mask] - field[mask]).max() < 1e-8
    assert np.array_equal(filled[~mask], volume[~mask])
    with pytest.raises(ValueError, match="margin"):
        biharmonic_inpaint(volume, mask, margin=1)


@pytest.mark.parametrize("touches_the_edge", [False, True])
def test_the_solve_is_scikit_images_biharmonic_inpainting(touches_the_edge):
    """The reference implementation of the same equation: equal to round-off on a noisy volume, inside and at
    the array's edge (scikit-image truncates its stencil there; the squared-Laplacian form does the same),
    including its clipping to the known range (a paraboloid peaks inside the first blob and is continued
    above every known voxel)."""
    from skimage.restoration import inpaint_biharmonic

    z, y, x = np.indices((14, 16, 15))
    peak = -0.05 * ((z - 6) ** 2 + (y - 8) ** 2 + (x - 7) ** 2)
    volume = peak + np.random.default_rng(3).normal(0, 0.02, peak.shape)
    mask = two_blobs((14, 16, 15))
    if touches_the_edge:
        mask[0:3, 5:9, 4:8] = True
    ours = solve_biharmonic(volume, mask)
    theirs = inpaint_biharmonic(volume, mask)
    assert np.isclose(ours[mask].max(), volume[~mask].max())  # clipped: the continued peak is higher
    assert np.abs(ours - theirs).max() < 1e-9
    assert np.array_equal(ours[~mask], volume[~mask])


def test_conjugate_gradients_reach_the_direct_solution(monkeypatch):
    z, y, x = np.indices((24, 26, 25))
    mask = ((z - 12) ** 2 + (y - 13) ** 2 + (x - 12) ** 2) <= 64  # 2,100 unknown voxels
    volume = np.sin(z / 3.0) + 0.5 * np.cos(x / 4.0) + np.random.default_rng(4).normal(0, 0.05, mask.shape)
    direct = solve_biharmonic(volume, mask)
    monkeypatch.setattr(smooth_fill, "DIRECT_SOLVE_MAX_UNKNOWNS", 0)
    iterative = solve_biharmonic(volume, mask)
    assert 0 < np.abs(iterative - direct).max() < 1e-6  # not the same path, the same solution
    assert np.array_equal(iterative[~mask], volume[~mask])


def test_the_prefill_changes_only_the_painted_voxels_of_every_channel_and_keeps_the_dtype():
    mask = two_blobs()
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, *mask.shape)).astype(np.float32)
    prefilled = smooth_prefill(image, mask)
    assert prefilled.dtype == np.float32
    assert np.array_equal(prefilled[:, ~mask], image[:, ~mask])
    for channel in range(2):  # each channel continued from its own surroundings
        expected = biharmonic_inpaint(image[channel], mask)[mask].astype(np.float32)
        assert np.array_equal(prefilled[channel][mask], expected)
    assert not np.allclose(prefilled[0][mask], prefilled[1][mask])


def test_with_white_matter_the_prefill_continues_white_matter_only():
    """A lesion in white matter (1.0) touching a thin dark ventricle (-0.8): the plain continuation is pulled
    towards the ventricle, the white-matter one is exactly the white matter's level (non-WM tissue beyond
    the reach would still be a boundary); every voxel outside the paint is kept bit for bit."""
    shape = (16, 20, 20)
    image = np.full((1, *shape), 1.0, np.float32)
    image[0, 6:10, 8:12, 5:8] = -0.8  # a small ventricle beside the lesion, all within the reach of the paint
    paint = np.zeros(shape, bool)
    paint[6:10, 8:12, 8:12] = True  # touches the ventricle at x = 8
    wm = image[0] > 0
    plain = smooth_prefill(image, paint)
    white = smooth_prefill(image, paint, wm & ~paint, (1.0, 1.0, 1.0))
    assert plain[0][paint].mean() < 0.9  # the ventricle darkens the plain guess 
    np.testing.assert_allclose(white[0][paint], 1.0, atol=1e-6)
    assert np.array_equal(white[:, ~paint], image[:, ~paint])


def test_a_lesion_with_no_white_matter_around_gets_the_plain_prefill():
    # an empty white-matter mask in an 8-voxel cube: every voxel within the 3 mm reach is unknown, the
    # crop holds nothing known, and the lesion gets the plain continuation instead of its own values
    image = np.random.default_rng(1).normal(size=(1, 8, 8, 8)).astype(np.float32)
    paint = np.zeros((8, 8, 8), bool)
    paint[1:7, 1:7, 1:7] = True  # its shell is all within the reach
    prefilled = smooth_prefill(image, paint, np.zeros((8, 8, 8), bool), (1.0, 1.0, 1.0))
    expected = smooth_prefill(image, paint)
    assert np.array_equal(prefilled, expected)


def recording_model(calls: list):
    def model_fn(x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        calls.append((x.clone(), timesteps.clone()))
        return torch.zeros_like(x)

    return model_fn


def test_the_walk_starts_at_t0_from_the_prefilled_image_noised_and_costs_the_calls_below_t0():
    task = get_task("cond_fill")
    schedule = NoiseSchedule()
    sampler = DPMSolverSampler(schedule, num_inference_steps=3)
    grid = [int(t) for t in sampler.timesteps]  # 999, 666, 332
    generator_seed = 7
    known = torch.rand(2, 1, 16, 16) * 2 - 1  # the prefilled image: the smooth fill sits inside the mask
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 5:10, 4:11] = 1
    for t0, expected_timesteps in ((150, [150]), (500, [500, grid[2]]), (None, grid)):
        calls: list = []
        task.sample(sampler, recording_model(calls), known, mask, torch.Generator().manual_seed(generator_seed), t0=t0)
        assert [int(t[0]) for _, t in calls] == expected_timesteps
        if t0 is not None:
            noise = standard_normal_like(known, torch.Generator().manual_seed(generator_seed))
            expected = schedule.add_noise(known, noise, t0)
            inside = mask.bool().expand_as(known)
            assert torch.allclose(calls[0][0][inside], expected[inside], atol=1e-6)


def test_with_t0_minus_one_the_fill_is_the_smooth_fill_itself(model_folders):  # noqa: F811
    images, lesion = float_case()
    predictor = Predictor.from_folder(model_folders[("cond_fill", "2d")], options=SamplingOptions(t0=-1))
    result = predictor.predict(images, lesion)
    assert result.network_calls == 0
    model = predictor.model
    dilation = model.mask_dilation
    region = dilate_mask(lesion, spacing=(1.0, 1.0, 1.0), shape=dilation["shape"], radius_mm=dilation["radius_mm"])
    arrays, properties = preprocess_images(images, None, None, model.preprocessing_config, None, "case")
    paint = (coverage_in_preprocessed_space(region, properties) > COVERAGE_THRESHOLD) & arrays["brain"].astype(bool)
    brain = arrays["brain"].astype(bool)
    wm = predictor._white_matter(arrays["image"], brain, paint)
    prefilled = smooth_prefill(arrays["image"], paint, wm, tuple(properties["spacing_after_resampling"]))
    changed = result.changed
    assert changed.sum() > 50
    for channel, (image, output) in enumerate(zip(images, result.images)):
        expected = sitk.GetArrayFromImage(restore_to_original(prefilled[channel], properties, channel))
        written = sitk.GetArrayFromImage(output)
        np.testing.assert_allclose(written[changed], expected[changed], atol=1e-5)
        assert np.array_equal(written[~changed], sitk.GetArrayFromImage(image)[~changed])
        # the smooth fill is not the lesion: the lesion voxels changed
        assert not np.allclose(written[lesion], sitk.GetArrayFromImage(image)[lesion])


@pytest.mark.parametrize("config_name", ["2d", "p3d"])
def test_after_a_warm_start_every_painted_voxel_still_gets_what_the_network_meant(model_folders, config_name):  # noqa: F811
    images, lesion = float_case()
    # p3d: the tiny 3-slice stacks need one context slice per side, so the oracle's slice d + 1 is in the stack.
    options = SamplingOptions(sampler="dpm_solver", steps=3, num_samples=2, batch_size=4, context_margin=4, t0=150,
                              context_slices=1 if config_name == "p3d" else None)
    predictor = oracle_predictor(model_folders[("cond_fill", config_name)], options)
    assert "warm start" in predictor.describe_sampling()
    result = predictor.predict(images, lesion)
    region, values = expected_output(predictor, images, lesion)
    assert np.array_equal(result.changed, region)
    for channel, (source, image) in enumerate(zip(images, result.images)):
        before, written = sitk.GetArrayFromImage(source), sitk.GetArrayFromImage(image)
        error = np.abs(written[region] - values[channel][region]).max() / float(np.ptp(before))
        assert error < 1e-4, f"channel {channel}: largest error {error:.2e} of the intensity range"


def test_a_t0_the_task_cannot_use_is_one_sentence(model_folders):  # noqa: F811
    with pytest.raises(LdiffError, match="cond_fill and uncond_synth"):
        Predictor.from_folder(model_folders[("cond_synth", "2d")], options=SamplingOptions(t0=100))
    with pytest.raises(LdiffError, match="full is for cond_fill"):
        Predictor.from_folder(model_folders[("uncond_synth", "2d")], options=SamplingOptions(t0="full"))
    with pytest.raises(LdiffError, match="t0"):
        SamplingOptions(t0="soon")
    with pytest.raises(LdiffError, match="t0"):
        Predictor.from_folder(model_folders[("cond_fill", "2d")], options=SamplingOptions(t0=5000))
    full = Predictor.from_folder(model_folders[("cond_fill", "2d")], options=SamplingOptions(t0="full"))
    assert full.t0 is None and "warm start" not in full.describe_sampling()
    assert timestep_or_fraction("full") == "full" and timestep_or_fraction("0.1") == 0.1
