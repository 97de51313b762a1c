"""Lesion-contrast matching (ldiff.inference.contrast_matching): known values by construction."""
from __future__ import annotations

import numpy as np
import pytest

from ldiff.inference.contrast_matching import SCALE_LIMITS, lesion_profile, match_lesion_contrast


def _case(change: float, noise: float = 0.0, seed: int = 0):
    """A 2-channel volume at 0.2 (T1w-like) and -0.1, a cube lesion whose painted change is ``change``
    (+ noise) on channel 0 and ``-change`` on channel 1, the mask dilated by one voxel, a shell around."""
    rng = np.random.default_rng(seed)
    shape = (20, 20, 20)
    healthy = np.stack([np.full(shape, 0.2), np.full(shape, -0.1)]).astype(np.float32)
    healthy += rng.normal(0, 0.01, healthy.shape).astype(np.float32)
    lesions = np.zeros(shape, bool)
    lesions[8:12, 8:12, 8:12] = True
    paint = np.zeros(shape, bool)
    paint[7:13, 7:13, 7:13] = True
    shell = np.zeros(shape, bool)
    shell[4:16, 4:16, 4:16] = True
    shell &= ~paint
    painted = healthy.copy()
    pattern = change + rng.normal(0, noise, lesions.sum()) if noise else np.full(lesions.sum(), change)
    painted[0][lesions] += pattern.astype(np.float32)
    painted[1][lesions] -= pattern.astype(np.float32)
    return healthy, painted, lesions, paint, shell


def contrast(image, lesions, shell):
    return np.array([image[c][lesions].mean() - np.median(image[c][shell]) for c in range(len(image))])


def test_reaches_the_target_and_keeps_everything_outside_the_painted_region():
    healthy, painted, lesions, paint, shell = _case(-0.1, noise=0.02)
    target = np.array([-0.25, 0.3])
    adjusted, report = match_lesion_contrast(healthy, painted, lesions, paint, shell, target)
    np.testing.assert_allclose(contrast(adjusted, lesions, shell), target, atol=1e-5)
    np.testing.assert_allclose(report.reached, target, atol=1e-5)
    assert np.array_equal(adjusted[:, ~paint], painted[:, ~paint])  # bit for bit


def test_scales_the_models_change_when_it_points_the_right_way():
    # The model darkened channel 0 by 0.1; asking for twice that contrast doubles the change exactly,
    # noise pattern included (no shift needed).
    healthy, painted, lesions, paint, shell = _case(-0.1, noise=0.02)
    base = contrast(healthy, lesions, shell)
    painted_contrast = contrast(painted, lesions, shell)
    target = base + 2.0 * (painted_contrast - base)
    adjusted, report = match_lesion_contrast(healthy, painted, lesions, paint, shell, target)
    np.testing.assert_allclose(report.scale, [2.0, 2.0], rtol=1e-5)
    np.testing.assert_allclose(report.shift, [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(adjusted - healthy, 2.0 * (painted - healthy), atol=1e-5)


def test_a_model_that_painted_nothing_gets_a_smooth_shift():
    healthy, painted, lesions, paint, shell = _case(0.0)
    target = np.array([-0.2, 0.4])
    adjusted, report = match_lesion_contrast(healthy, painted, lesions, paint, shell, target)
    np.testing.assert_allclose(report.scale, [1.0, 1.0])
    np.testing.assert_allclose(contrast(adjusted, lesions, shell), target, atol=1e-5)
    # Inside the lesion the shift is uniform; on the dilated border it fades (0 < profile < 1).
    border = paint & ~lesions
    change = adjusted[0] - healthy[0]
    assert np.all(change[border] > target[0] - 1e-6) and np.all(change[border] < 0)
    assert np.ptp(change[lesions]) < 1e-5


def test_scale_is_bounded_and_the_rest_is_shifted():
    healthy, painted, lesions, paint, shell = _case(-0.01)
    target = contrast(healthy, lesions, shell) + np.array([-0.4, 0.4])  # 40x what the model painted
    adjusted, report = match_lesion_contrast(healthy, painted, lesions, paint, shell, target)
    np.testing.assert_allclose(report.scale, [SCALE_LIMITS[1]] * 2)
    assert np.all(np.abs(report.shift) > 0.3)
    np.testing.assert_allclose(contrast(adjusted, lesions, shell), target, atol=1e-5)


def test_profile_is_one_in_the_lesions_and_zero_outside_the_painted_region():
    _, _, lesions, paint, _ = _case(0.0)
    profile = lesion_profile(lesions, paint)
    assert np.all(profile[lesions] == 1.0) and np.all(profile[~paint] == 0.0)
    assert np.all((profile[paint & ~lesions] > 0) & (profile[paint & ~lesions] < 1))


def test_empty_surroundings_are_refused():
    healthy, painted, lesions, paint, shell = _case(0.0)
    with pytest.raises(ValueError):
        match_lesion_contrast(healthy, painted, lesions, paint, np.zeros_like(shell), np.zeros(2))


def _two_lesion_case():
    """Two channels whose model space equals the scan's units (normaliser range [-1, 1]); WM 0.5 / 0.4,
    and 'GM' 0.2 / 0.7 beside a small 2x2x2 lesion (most of its 2-5 mm ring), a 6x6x6 lesion in WM."""
    shape = (24, 24, 44)
    healthy = np.stack([np.full(shape, 0.5), np.full(shape, 0.4)]).astype(np.float32)
    grey = np.zeros(shape, bool)
    grey[:, :, :9] = True
    grey[:, :, 13:18] = True
    healthy[0][grey], healthy[1][grey] = 0.2, 0.7
    small, large = np.zeros(shape, bool), np.zeros(shape, bool)
    small[11:13, 11:13, 10:12] = True
    large[9:15, 9:15, 30:36] = True
    lesions = small | large
    paint = np.zeros(shape, bool)
    paint[10:14, 10:14, 9:13] = True
    paint[8:16, 8:16, 29:37] = True
    painted = healthy.copy()
    painted[0][lesions] -= 0.05
    painted[1][lesions] += 0.05
    properties = {"target_spacing": [1.0, 1.0, 1.0],
                  "normalization": [{"low": -1.0, "high": 1.0, "lower_percentile": 0.5, "upper_percentile": 99.5}] * 2}
    return healthy, painted, small, large, paint, grey, properties


def test_each_lesion_gets_the_contrast_of_its_volume_against_the_white_matter_around_it():
    from ldiff.inference.contrast_matching import match_each_lesion

    healthy, painted, small, large, paint, grey, properties = _two_lesion_case()
    tissue = ~paint
    fractions = {8: np.array([-0.1, 0.2]), 216: np.array([-0.4, 0.6])}
    adjusted, report = match_each_lesion(healthy, painted, small | large, paint, tissue & ~grey, tissue, properties,
                                         lambda volume: fractions[int(round(volume))])
    assert np.array_equal(adjusted[:, ~paint], painted[:, ~paint])  # bit for bit
    white = np.array([0.5, 0.4])
    for lesion, volume in ((small, 8), (large, 216)):
        # Each against the white matter, although grey tissue is most of the small lesion's ring.
        np.testing.assert_allclose(adjusted[:, lesion].mean(axis=1) - white, fractions[volume] * white, atol=1e-5)
    np.testing.assert_allclose(report.target, (fractions[8] * 8 + fractions[216] * 216) / 224 * white, atol=1e-6)
    # Without white matter to compare with, the lesion falls back to all tissue in its ring (mostly grey).
    near_small = paint.copy()
    near_small[:, :, 20:] = False
    painted[:, large] = healthy[:, large]
    adjusted, _ = match_each_lesion(healthy, painted, small, near_small, np.zeros_like(paint), ~near_small, properties,
                                    lambda volume: fractions[8])
    grey_level = np.array([0.2, 0.7])
    np.testing.assert_allclose(adjusted[:, small].mean(axis=1) - grey_level, fractions[8] * grey_level, atol=1e-5)
