"""Warnings for inputs unlike the training data: anisotropic voxels, a skull left on."""
from __future__ import annotations

import numpy as np

from ldiff.inference.input_checks import input_warnings


def _stripped_brain(shape=(40, 48, 40)) -> np.ndarray:
    """A brain-like ellipsoid of noisy tissue in an exactly zero background."""
    z, y, x = np.indices(shape, dtype=np.float64)
    inside = ((z - shape[0] / 2) / 16) ** 2 + ((y - shape[1] / 2) / 20) ** 2 + ((x - shape[2] / 2) / 16) ** 2 < 1
    return np.where(inside, 100 + np.random.default_rng(0).normal(0, 5, shape), 0.0).astype(np.float32)


def test_a_skull_stripped_isotropic_scan_gets_no_warning():
    assert input_warnings("t1.nii.gz", _stripped_brain(), (1, 1, 1), (1, 1, 1)) == []


def test_anisotropic_voxels_are_named_with_their_ratio():
    (message,) = input_warnings("t1.nii.gz", _stripped_brain(), (1, 1, 5), (1, 1, 1))
    assert message.startswith("t1.nii.gz: voxels of 1 x 1 x 5 mm") and "5.0 times" in message
    assert input_warnings("t1.nii.gz", _stripped_brain(), (1, 1, 3), (1, 1, 1)) == []  # 3x is still fine


def test_a_head_with_noisy_background_is_suspected_of_having_its_skull():
    head = _stripped_brain() + np.random.default_rng(1).normal(20, 3, (40, 48, 40)).astype(np.float32)
    (message,) = input_warnings("head.nii.gz", head, (1, 1, 1), (1, 1, 1))
    assert "skull" in message and message.startswith("head.nii.gz: only 0 % of its voxels are background")
