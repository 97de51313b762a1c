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
