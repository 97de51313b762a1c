"""Prediction writes back exactly what the network means, in the right voxels and channels.

A random or zero network proves nothing about conditioning: any crop offset, mask or channel order
would pass. The oracle networks here know the noise schedule and, at every timestep, return the
output whose clean-image estimate is a known function of their input:

- conditional tasks: the voided conditioning image, per channel, shifted by a known offset within the
  crop (in-plane, and one slice for p3d), so every painted voxel must receive the value of a known
  other voxel of the same channel;
- unconditional tasks (which see no conditioning): one known constant per channel.

Every sampler then ends on that estimate (DDIM and DPM-Solver++ are deterministic given it), so the
written file is known exactly: in every voxel of the dilated mask, for each channel, with several
crops in one network call and several draws per crop.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from conftest import phantom_case
from ldiff.inference.predictor import COVERAGE_THRESHOLD, Predictor, SamplingOptions
from ldiff.inference.roi import BACKGROUND, coverage_in_preprocessed_space
from ldiff.masks import dilate_mask
from ldiff.preprocessing import PercentileNormalizer, preprocess_images, restore_to_original
from ldiff.tasks import VOID_VALUE, get_task
from test_predict import DIRECTION, ORIGIN, make_model_folder

pytestmark = pytest.mark.usefixtures("one_thread")

SHIFT_2D = (0, 2, -3)  # (slices, rows, columns): a painted voxel takes the voided value of this neighbour
SHIFT_P3D = (1, 2, -3)
CONSTANTS = (0.25, -0.4)  # per channel, for the unconditional oracle


def shifted(volume: torch.Tensor, shift: tuple[int, ...], fill: float) -> torch.Tensor:
    """``out[..., i, j, k] = volume[..., i + di, j + dj, k + dk]`` over the last len(shift) axes; ``fill`` beyond."""
    out = torch.full_like(volume, fill)
    source, target = [], []
    for offset, size in zip(shift, volume.shape[-len(shift):]):
        source.append(slice(max(offset, 0), size + min(offset, 0)))
        target.append(slice(max(-offset, 0), size + min(-offset, 0)))
    prefix = (slice(None),) * (volume.dim() - len(shift))
    out[prefix + tuple(target)] = volume[prefix + tuple(source)]
    return out


class OracleNetwork(nn.Module):
    """Returns the epsilon (or v) of ``x_t`` whose clean estimate is ``target(input)``, at every timestep."""

    def __init__(self, schedule, num_channels: int, conditional: bool, shift: tuple[int, ...]):
        super().__init__()
        self.schedule, self.num_channels, self.conditional, self.shift = schedule, num_channels, conditional, shift

    def target(self, model_input: torch.Tensor) -> torch.Tensor:
        channels = self.num_channels
        if self.conditional:
            voided = model_input[:, channels:2 * channels]
            shift = self.shift if voided.dim() == 5 else self.shift[1:]
            return shifted(voided, shift, BACKGROUND)
        constants = torch.tensor(CONSTANTS[:channels], dtype=model_input.dtype)
        return constants.view(1, channels, *[1] * (model_input.dim() - 2)).expand_as(model_input[:, :channels])

    def forward(self, model_input: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        x_t = model_input[:, :self.num_channels].double()
        x0 = self.target(model_input).double()
        shape = (-1,) + (1,) * (x_t.dim() - 1)
        signal = self.schedule.sqrt_alphas_cumprod.double()[timesteps].view(shape)
        spread = self.schedule.sqrt_one_minus_alphas_cumprod.double()[timesteps].view(shape)
        noise = (x_t - signal * x0) / spread
        target = noise if self.schedule.prediction_type == "epsilon" else signal * noise - spread * x0
        return target.float()


def float_case() -> tuple[list[sitk.Image], np.ndarray]:
    """Two float32 channels at the plans' 1 mm (no resampling), rotated grid, three lesions."""
    t1, flair, lesion, _ = phantom_case(lesion_centres=((18, 22, 14), (20, 24, 27), (12, 16, 20)))
    images = []
    for array in (t1, flair):
        image = sitk.GetImageFromArray(array.astype(np.float32))
        image.SetSpacing((1.0, 1.0, 1.0))
        image.SetOrigin(ORIGIN)
        image.SetDirection(DIRECTION)
        images.append(image)
    return images, lesion.astype(bool)


def oracle_predictor(folder, options: SamplingOptions) -> Predictor:
    predictor = Predictor.from_folder(folder, options=options)
    model = predictor.model
    shift = SHIFT_P3D if model.is_pseudo3d else SHIFT_2D
    oracle = OracleNetwork(model.schedule, model.num_channels, model.task.conditional, shift)
    return Predictor(dataclasses.replace(model, network=oracle), options)


def expected_output(predictor: Predictor, images: list[sitk.Image], lesion: np.ndarray,
                    levels: "np.ndarray | None" = None) -> tuple[np.ndarray, list]:
    """The dilated region on the original grid and, per channel, the values the oracle must write there.

    ``levels`` (C,): what a cued conditional model finds in the voided region instead of VOID_VALUE.
    """
    model = predictor.model
    dilation = model.mask_dilation
    region = dilate_mask(lesion, spacing=(1.0, 1.0, 1.0), shape=dilation["shape"], radius_mm=dilation["radius_mm"])
    arrays, properties = preprocess_images(images, None, None, model.preprocessing_config, None, "case")
    paint = (coverage_in_preprocessed_space(region, properties) > COVERAGE_THRESHOLD) & arrays["brain"].astype(bool)
    image = torch.from_numpy(arrays["image"].astype(np.float32))
    if model.task.conditional:
        fill = torch.tensor(VOID_VALUE) if levels is None else torch.tensor(levels, dtype=torch.float32).view(-1, 1, 1, 1)
        voided = torch.where(torch.from_numpy(paint)[None], fill, image)
        target = shifted(voided, SHIFT_P3D if model.is_pseudo3d else SHIFT_2D, BACKGROUND).numpy()
    else:
        target = np.stack([np.full(paint.shape, value, np.float32) for value in CONSTANTS[:len(images)]])
    values = [sitk.GetArrayFromImage(restore_to_original(target[c], properties, c)) for c in range(len(images))]
    return region, values


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("oracle_models")
    return {(task, config): make_model_folder(root, task, config)
            for task in ("cond_fill", "cond_synth", "uncond_fill", "uncond_synth") for config in ("2d", "p3d")}


SETTINGS = {
    "cond_fill": SamplingOptions(sampler="dpm_solver", steps=3, num_samples=3, batch_size=6, context_margin=4),
    # What the network meant, before lesion-contrast matching (tested on its own below).
    "cond_synth": SamplingOptions(sampler="ddim", steps=4, num_samples=2, batch_size=4, context_margin=4,
                                  match_contrast=False),
    "uncond_fill": SamplingOptions(sampler="repaint", steps=4, jump_length=1, resamplings=2, num_samples=2,
                                   batch_size=4, context_margin=4),
    "uncond_synth": SamplingOptions(sampler="repaint", steps=4, jump_length=1, resamplings=1, num_samples=1,
                                    batch_size=4, context_margin=4, t0=0.5),
}


@pytest.mark.parametrize("config_name", ["2d", "p3d"])
@pytest.mark.parametrize("task_name", ["cond_fill", "cond_synth", "uncond_fill", "uncond_synth"])
def test_every_painted_voxel_gets_exactly_the_value_the_network_meant(model_folders, task_name, config_name):
    images, lesion = float_case()
    options = SETTINGS[task_name]
    if config_name == "p3d":  # the tiny 3-slice stacks: one context slice per side, so slice d + 1 is in the stack
        options = dataclasses.replace(options, context_slices=1)
    predictor = oracle_predictor(model_folders[(task_name, config_name)], options)
    result = predictor.predict(images, lesion, seed=5)
    region, expected = expected_output(predictor, images, lesion)
    assert result.crops > 1  # several crops, batched together with their draws
    assert np.array_equal(result.changed, region), "exactly the dilated mask is written"
    for channel, (source, output) in enumerate(zip(images, result.images)):
        before, after = sitk.GetArrayFromImage(source), sitk.GetArrayFromImage(output)
        assert np.array_equal(before[~region], after[~region])
        scale = float(np.ptp(before))
        error = np.abs(after[region] - expected[channel][region]).max() / scale
        assert error < 1e-4, f"channel {channel}: largest error {error:.2e} of the intensity range"
        # The values come from the right channel: the other channel's would be far off.
        other = expected[1 - channel][region]
        assert np.abs(after[region] - other).max() / scale > 0.05


def test_the_oracle_target_needs_the_conditioning_of_the_right_voxels():
    """The shift is what makes a misaligned crop visible: painted voxels read other voxels' values."""
    volume = torch.arange(2 * 4 * 5 * 6, dtype=torch.float32).reshape(1, 2, 4, 5, 6)
    out = shifted(volume, SHIFT_P3D, -1.0)
    assert out[0, 1, 0, 0, 3] == volume[0, 1, 1, 2, 0]
    assert out[0, 0, 3, 0, 3] == -1.0  # beyond the last slice


@pytest.fixture(scope="module")
def cued_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("cued_models")
    return {config: make_model_folder(root, "cond_synth", config, lesion_level_cue=True) for config in ("2d", "p3d")}


@pytest.mark.parametrize("config_name", ["2d", "p3d"])
def test_a_cued_synthesis_model_is_told_the_lesion_contrast_asked_for(cued_models, config_name):
    """cond_synth trained with the lesion-level cue: the voided region holds each crop's surroundings
    plus the contrast asked for, per channel. The oracle copies voided values to known voxels, so
    asking for a contrast larger by d changes every painted voxel whose source lies in the mask by
    exactly d (in intensity units: d times half the normaliser's range) and no other voxel."""
    images, lesion = float_case()
    options = dataclasses.replace(SETTINGS["cond_synth"], match_contrast=False)  # what the network is told
    if config_name == "p3d":
        options = dataclasses.replace(options, context_slices=1)
    predictor = oracle_predictor(cued_models[config_name], options)
    assert predictor.model.task.lesion_level_cue and predictor.model.task.lesion_intensity_is_contrast
    step = np.array([0.1, -0.1])
    base = predictor.predict(images, lesion, seed=5, lesion_intensity=[0.0, 0.0])
    moved = predictor.predict(images, lesion, seed=5, lesion_intensity=list(step))
    region, expected_plain = expected_output(predictor, images, lesion)
    _, properties = preprocess_images(images, None, None, predictor.model.preprocessing_config, None, "case")
    for channel, (source, before, after) in enumerate(zip(images, base.images, moved.images)):
        normalizer = PercentileNormalizer.from_dict(properties["normalization"][channel])
        unit = step[channel] * (normalizer.high - normalizer.low) / 2.0
        difference = sitk.GetArrayFromImage(after) - sitk.GetArrayFromImage(before)
        assert np.array_equal(difference[~region], np.zeros_like(difference[~region]))
        shifted_by_step = np.abs(difference[region] - unit) < 1e-3 * abs(unit)
        unchanged = np.abs(difference[region]) < 1e-3 * abs(unit)
        assert (shifted_by_step | unchanged).all() and shifted_by_step.mean() > 0.3, channel
        # Where the source voxel was known, the value is the plain conditional one.
        plain = expected_plain[channel][region]
        assert np.abs(sitk.GetArrayFromImage(after)[region][unchanged] - plain[unchanged]).max() < 1e-3 * abs(unit)


def test_matching_sets_the_lesion_contrast_asked_for_and_nothing_outside(model_folders):
    """cond_synth with lesion-contrast matching: on the original grid, the lesions' mean minus the
    median of the tissue 2-5 mm around them is the contrast asked for (times half the normaliser's range);
    every voxel outside the dilated mask is the input's."""
    images, lesion = float_case()
    options = dataclasses.replace(SETTINGS["cond_synth"], match_contrast=True)
    predictor = oracle_predictor(model_folders[("cond_synth", "2d")], options)
    assert predictor.can_match_contrast and "contrast matched" in predictor.describe_sampling()
    target = np.array([-0.3, 0.45])
    result = predictor.predict(images, lesion, seed=5, lesion_intensity=list(target))
    assert result.contrast is not None
    np.testing.assert_allclose(result.contrast.reached, target, atol=1e-4)
    region, _ = expected_output(predictor, images, lesion)
    _, properties = preprocess_images(images, None, None, predictor.model.preprocessing_config, None, "case")
    near = dilate_mask(lesion, spacing=(1.0, 1.0, 1.0), shape="ball", radius_mm=2.0)
    far = dilate_mask(lesion, spacing=(1.0, 1.0, 1.0), shape="ball", radius_mm=5.0)
    for channel, (source, output) in enumerate(zip(images, result.images)):
        before, after = sitk.GetArrayFromImage(source), sitk.GetArrayFromImage(output)
        assert np.array_equal(before[~region], after[~region])
        normalizer = PercentileNormalizer.from_dict(properties["normalization"][channel])
        shell = far & ~near & ~region & (before > normalizer.low)
        measured = after[lesion].mean() - np.median(after[shell])
        assert measured == pytest.approx(target[channel] * (normalizer.high - normalizer.low) / 2, rel=0.02)
    plain = Predictor(predictor.model, dataclasses.replace(options, match_contrast=False))
    unmatched = plain.predict(images, lesion, seed=5, lesion_intensity=list(target))
    assert unmatched.contrast is None and "matched" not in plain.describe_sampling()
    auto = Predictor(predictor.model, dataclasses.replace(options, match_contrast=None))
    # The default with no training fingerprint (this model has none): the model's own contrast.
    assert auto.predict(images, lesion, seed=5).contrast is None
    told = auto.predict(images, lesion, seed=5, lesion_intensity=list(target))
    np.testing.assert_allclose(told.contrast.reached, target, atol=1e-4)


def test_by_default_synthesis_takes_the_training_lesions_contrast(model_folders, tmp_path, monkeypatch):
    """The default (match_contrast None) sets the lesion contrast to the training fingerprint's, as
    --lesion-contrast match does, as a fraction of the scan's own tissue level: on the original grid the
    lesions' mean is (median lesion - median NAWM) / median NAWM of the fingerprint away from the median
    of the tissue 2-5 mm around them, whatever this scan's intensity range."""
    import shutil

    import ldiff.inference.lesion_intensity as lesion_intensity

    images, lesion = float_case()
    folder = tmp_path / "model"
    shutil.copytree(model_folders[("cond_synth", "2d")], folder)
    predictor = oracle_predictor(folder, dataclasses.replace(SETTINGS["cond_synth"], match_contrast=None))
    normalization = predictor.model.description["normalization"]
    low, high = (f"{float(normalization[key]):g}" for key in ("lower_percentile", "upper_percentile"))
    fingerprint = {"intensity_median_of_cases": {
        name: {"lesion": {"50": lesion_level}, "nawm": {"50": 500.0}, "brain": {low: 100.0, high: 1100.0}}
        for name, lesion_level in zip(predictor.model.channel_names, (350.0, 725.0))}}
    monkeypatch.setattr(lesion_intensity, "load_fingerprint", lambda _: fingerprint)
    result = predictor.predict(images, lesion, seed=5)
    assert result.contrast is not None
    region, _ = expected_output(predictor, images, lesion)
    _, properties = preprocess_images(images, None, None, predictor.model.preprocessing_config, None, "case")
    near = dilate_mask(lesion, spacing=(1.0, 1.0, 1.0), shape="ball", radius_mm=2.0)
    far = dilate_mask(lesion, spacing=(1.0, 1.0, 1.0), shape="ball", radius_mm=5.0)
    for channel, (source, output, ratio) in enumerate(zip(images, result.images, (-0.3, 0.45))):
        before, after = sitk.GetArrayFromImage(source), sitk.GetArrayFromImage(output)
        assert np.array_equal(before[~region], after[~region])
        normalizer = PercentileNormalizer.from_dict(properties["normalization"][channel])
        surroundings = np.median(after[far & ~near & ~region & (before > normalizer.low)])
        assert after[lesion].mean() - surroundings == pytest.approx(ratio * surroundings, rel=0.02)
    explicit = Predictor(predictor.model, dataclasses.replace(predictor.options, match_contrast=True))
    for default, asked in zip(result.images, explicit.predict(images, lesion, seed=5).images):
        assert np.array_equal(sitk.GetArrayFromImage(default), sitk.GetArrayFromImage(asked))


def test_with_a_contrast_by_volume_each_lesion_is_matched_against_its_own_white_matter(model_folders, tmp_path,
                                                                                       monkeypatch):
    """A fingerprint with ``lesion_contrast_by_volume``: every lesion on its own lies the fraction its
    volume asks for away from the median of the white matter 2-5 mm around it (not the lesions pooled)."""
    import shutil

    import ldiff.inference.lesion_intensity as lesion_intensity
    from ldiff.masks import lesion_components

    images, lesion = float_case()
    _, _, _, tissue = phantom_case(lesion_centres=((18, 22, 14), (20, 24, 27), (12, 16, 20)))
    folder = tmp_path / "model"
    shutil.copytree(model_folders[("cond_synth", "2d")], folder)
    predictor = oracle_predictor(folder, dataclasses.replace(SETTINGS["cond_synth"], match_contrast=None))
    normalization = predictor.model.description["normalization"]
    low, high = (f"{float(normalization[key]):g}" for key in ("lower_percentile", "upper_percentile"))
    names = predictor.model.channel_names
    fingerprint = {
        "intensity_median_of_cases": {name: {"lesion": {"50": 350.0}, "nawm": {"50": 500.0},
                                             "brain": {low: 100.0, high: 1100.0}} for name in names},
        "lesion_contrast_by_volume": {"bins": [
            {"lesions": 9, "geometric_mean_volume_mm3": 100.0, "mean_contrast": dict(zip(names, (-0.2, 0.3)))}]}}
    monkeypatch.setattr(lesion_intensity, "load_fingerprint", lambda _: fingerprint)
    result = predictor.predict(images, lesion, seed=5)
    region, _ = expected_output(predictor, images, lesion)
    components = lesion_components(lesion)
    assert len(components) == 3
    for component in components:
        own = np.zeros_like(lesion)
        own[component.slices] = component.mask
        near = dilate_mask(own, spacing=(1.0, 1.0, 1.0), shape="ball", radius_mm=2.0)
        far = dilate_mask(own, spacing=(1.0, 1.0, 1.0), shape="ball", radius_mm=5.0)
        ring = far & ~near & ~region & (tissue == 3)
        for channel, (source, output, ratio) in enumerate(zip(images, result.images, (-0.2, 0.3))):
            before, after = sitk.GetArrayFromImage(source), sitk.GetArrayFromImage(output)
            assert np.array_equal(before[~region], after[~region])
            level = np.median(after[ring])
            assert after[own].mean() - level == pytest.approx(ratio * level, rel=0.03)


def test_the_own_lesions_give_their_contrast_to_their_surroundings(cued_models):
    """--lesion-intensity-from: the contrast is the mean of the own lesions minus the median of the tissue
    2-5 mm around them, in the model's space; predicting with it equals predicting with those numbers."""
    from ldiff.inference.lesion_intensity import lesion_levels

    images, lesion = float_case()
    predictor = oracle_predictor(cued_models["2d"], SETTINGS["cond_synth"])
    own = np.zeros_like(lesion)
    own[10:14, 20:26, 8:12] = True
    arrays, properties = preprocess_images(images, None, None, predictor.model.preprocessing_config, None, "case")
    inside = (coverage_in_preprocessed_space(own, properties) >= 0.5) & arrays["brain"].astype(bool)
    near = dilate_mask(inside, spacing=(1.0, 1.0, 1.0), shape="ball", radius_mm=2.0)
    far = dilate_mask(inside, spacing=(1.0, 1.0, 1.0), shape="ball", radius_mm=5.0)
    shell = far & ~near & arrays["brain"].astype(bool)
    contrast = arrays["image"][:, inside].mean(axis=1) - np.median(arrays["image"][:, shell], axis=1)
    measured = lesion_levels(predictor.model, arrays, properties, None, own)
    assert measured == pytest.approx(contrast, abs=1e-6)
    by_mask = predictor.predict(images, lesion, seed=5, lesion_intensity_from=own)
    by_numbers = predictor.predict(images, lesion, seed=5, lesion_intensity=[float(v) for v in measured])
    for a, b in zip(by_mask.images, by_numbers.images):
        assert np.allclose(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b), atol=1e-4)
