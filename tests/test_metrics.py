"""The thesis and BraTS metric protocols against straightforward re-computations and exact cases."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import structural_similarity

from ldiff.evaluation.metrics import (
    brats_metrics,
    crop_window,
    json_ready,
    lpips_around_mask,
    percentile_normalise,
    thesis_metrics,
)

SHAPE = (12, 40, 48)  # (z, y, x): small, but every axial and sagittal plane exceeds the 11x11 window


def _volumes(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smooth reference in scanner-like units, a noisy prediction of it, and a blob mask."""
    generator = np.random.default_rng(seed)
    reference = ndimage.gaussian_filter(generator.uniform(0, 1000, SHAPE), sigma=(0, 2, 2))
    prediction = reference + generator.normal(0, 20, SHAPE)
    mask = np.zeros(SHAPE, dtype=bool)
    mask[4:8, 12:25, 15:30] = True
    return prediction, reference, mask


def test_thesis_protocol_matches_a_direct_skimage_computation() -> None:
    prediction, reference, mask = _volumes()
    low, high = reference.min(), reference.max()
    scaled_reference = 2 * (reference - low) / (high - low) - 1
    scaled_prediction = np.clip(2 * (prediction - low) / (high - low) - 1, -1, 1)
    ssim_map = np.stack(
        [
            structural_similarity(scaled_reference[z], scaled_prediction[z], data_range=2, win_size=7, full=True)[1]
            for z in range(SHAPE[0])
        ]
    )
    squared_error = (scaled_prediction - scaled_reference) ** 2
    expected = {
        "ssim_in": ssim_map[mask].mean(),
        "ssim_out": ssim_map[~mask].mean(),
        "ssim_full": ssim_map.mean(),
        "mse_in": squared_error[mask].mean(),
        "mse_out": squared_error[~mask].mean(),
        "mse_full": squared_error.mean(),
        "psnr_in": 10 * np.log10(4 / squared_error[mask].mean()),
        "psnr_out": 10 * np.log10(4 / squared_error[~mask].mean()),
        "psnr_full": 10 * np.log10(4 / squared_error.mean()),
    }
    results = thesis_metrics(prediction, reference, mask)
    assert results["protocol"] == "thesis"
    assert results["voxels_in"] == mask.sum()
    for key, value in expected.items():
        assert results[key] == pytest.approx(value, abs=1e-6), key
    assert 0 < results["ssim_in"] < 1 and results["mse_in"] > 0


def test_brats_protocol_matches_a_direct_computation() -> None:
    prediction, reference, mask = _volumes(seed=1)
    low, high = np.percentile(np.where(mask, 0, reference), [0.5, 99.5])
    low = max(low, 0.0)

    def normalise(volume: np.ndarray) -> np.ndarray:
        return (np.clip(volume, low, high) - low) / (high - low)

    masked_reference, masked_prediction = normalise(reference * mask), normalise(prediction * mask)
    ssim_map = np.stack(
        [
            structural_similarity(
                masked_reference[:, :, x], masked_prediction[:, :, x], data_range=1,
                gaussian_weights=True, sigma=1.5, use_sample_covariance=False, full=True,
            )[1]
            for x in range(SHAPE[2])
        ],
        axis=2,
    )
    mse_in = np.mean((masked_prediction[mask] - masked_reference[mask]) ** 2)
    results = brats_metrics(prediction, reference, mask)
    assert results["protocol"] == "brats2023"
    assert results["intensity_low"] == pytest.approx(low) and results["intensity_high"] == pytest.approx(high)
    assert results["mse_in"] == pytest.approx(mse_in, abs=1e-9)
    assert results["psnr_in"] == pytest.approx(10 * np.log10(1 / mse_in), abs=1e-6)
    assert results["ssim_in"] == pytest.approx(ssim_map[mask].mean(), abs=1e-6)
    assert results["mse_full"] == pytest.approx(np.mean((normalise(prediction) - normalise(reference)) ** 2), abs=1e-9)


@pytest.mark.parametrize("protocol", [thesis_metrics, brats_metrics])
def test_identical_volumes_are_perfect_and_psnr_is_infinite(protocol) -> None:
    _, reference, mask = _volumes()
    results = protocol(reference.copy(), reference, mask)
    for key in ("mse_in", "mse_full"):
        assert results[key] == 0.0
    for key in ("ssim_in", "ssim_full"):
        assert results[key] == pytest.approx(1.0, abs=1e-12)
    assert results["psnr_in"] == math.inf and results["psnr_full"] == math.inf
    serialisable = json_ready(results)
    assert serialisable["psnr_in"] is None and serialisable["mse_in"] == 0.0
    json.dumps(serialisable, allow_nan=False)  # strict JSON: would raise on inf/nan


def test_constant_offset_inside_the_mask_gives_its_square_as_mse() -> None:
    _, reference, mask = _volumes()
    reference_in_unit_range = reference / reference.max() - 0.5  # within [-0.5, 0.5]
    offset = 0.25
    prediction = reference_in_unit_range + offset * mask
    results = thesis_metrics(prediction, reference_in_unit_range, mask, intensity_range=(-1.0, 1.0))
    assert results["mse_in"] == pytest.approx(offset**2, rel=1e-12)
    assert results["mse_out"] == 0.0
    assert results["psnr_in"] == pytest.approx(10 * math.log10(4 / offset**2), rel=1e-12)

    # BraTS: a normalisation volume of half 0s and half 1s makes the [0, 1] map the identity.
    normalisation = np.zeros(SHAPE)
    normalisation.flat[::2] = 1.0
    reference_01 = 0.2 + 0.4 * reference / reference.max()
    brats = brats_metrics(reference_01 + 0.1 * mask, reference_01, mask, normalisation_volume=normalisation)
    assert brats["mse_in"] == pytest.approx(0.1**2, rel=1e-12)


def test_in_mask_values_ignore_the_prediction_outside_the_mask() -> None:
    prediction, reference, mask = _volumes()
    changed = prediction.copy()
    changed[~mask] += np.random.default_rng(5).normal(0, 200, (~mask).sum())
    range_ = (float(reference.min()), float(reference.max()))
    before = thesis_metrics(prediction, reference, mask, range_)
    after = thesis_metrics(changed, reference, mask, range_)
    for key in ("mse_in", "psnr_in", "voxels_in"):
        assert after[key] == before[key], key
    assert after["mse_out"] != before["mse_out"]
    # BraTS masks both volumes before SSIM, so even its SSIM is blind to the outside.
    before, after = brats_metrics(prediction, reference, mask), brats_metrics(changed, reference, mask)
    for key in ("mse_in", "psnr_in", "ssim_in"):
        assert after[key] == before[key], key


def test_thesis_ssim_in_sees_only_a_three_voxel_in_plane_rim_around_the_mask() -> None:
    # The thesis took SSIM on whole slices, so a 7x7 window at a mask voxel reaches 3 voxels out.
    prediction, reference, mask = _volumes()
    rim = ndimage.binary_dilation(mask, structure=np.ones((1, 7, 7), dtype=bool))
    far_changed, rim_changed = prediction.copy(), prediction.copy()
    far_changed[~rim] = reference.min()
    rim_changed[rim & ~mask] = reference.min()
    range_ = (float(reference.min()), float(reference.max()))
    baseline = thesis_metrics(prediction, reference, mask, range_)["ssim_in"]
    assert thesis_metrics(far_changed, reference, mask, range_)["ssim_in"] == pytest.approx(baseline, abs=1e-12)
    assert thesis_metrics(rim_changed, reference, mask, range_)["ssim_in"] != pytest.approx(baseline, abs=1e-6)


@pytest.mark.parametrize("protocol", [thesis_metrics, brats_metrics, lpips_around_mask])
def test_empty_mask_and_mismatched_shapes_raise(protocol) -> None:
    prediction, reference, mask = _volumes()
    with pytest.raises(ValueError, match="mask is empty"):
        protocol(prediction, reference, np.zeros_like(mask))
    with pytest.raises(ValueError, match="one shape"):
        protocol(prediction[:-1], reference, mask)


def test_slices_smaller_than_the_ssim_window_raise_a_clear_error() -> None:
    prediction, reference, mask = _volumes()
    with pytest.raises(ValueError, match="smaller than the 11x11 SSIM window"):
        brats_metrics(prediction[:6], reference[:6], mask[:6])


def test_percentile_normalise_maps_to_unit_range_with_a_non_negative_floor() -> None:
    volume = np.linspace(-100, 900, 1001)
    normalised, low, high = percentile_normalise(volume, volume)
    assert low == 0.0 and high == pytest.approx(895.0)
    assert normalised.min() == 0.0 and normalised.max() == 1.0


@pytest.mark.parametrize(
    ("low", "high", "margin", "extent"),
    [(10, 12, 4, 64), (0, 2, 8, 64), (60, 63, 8, 64), (5, 60, 8, 64), (3, 3, 0, 32)],
)
def test_crop_window_covers_the_box_and_keeps_the_minimum_size(low: int, high: int, margin: int, extent: int) -> None:
    start, stop = crop_window(low, high, margin, min_size=32, extent=extent)
    assert 0 <= start and stop <= extent
    assert stop - start >= 32
    assert start <= max(0, low - margin) and stop >= min(extent, high + 1 + margin)


def test_lpips_around_mask_is_zero_for_identical_volumes_and_positive_otherwise() -> None:
    prediction, reference, mask = _volumes()
    assert lpips_around_mask(reference, reference, mask) == 0.0
    cropped = lpips_around_mask(prediction, reference, mask)
    whole_slices = lpips_around_mask(prediction, reference, mask, crop=False)
    assert cropped > 0 and whole_slices > 0
    assert thesis_metrics(prediction, reference, mask, include_lpips=True)["lpips_crops"] == pytest.approx(cropped)
