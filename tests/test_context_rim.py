"""The lesion-rim augmentation of filling masks' context (ldiff.training.augmentation.paint_context_rim)."""
from dataclasses import replace

import numpy as np
import pytest

from ldiff.training.augmentation import STRONG_AUGMENTATION, STRONG_RIM_AUGMENTATION, paint_context_rim


def _slice():
    image = np.full((2, 21, 21), 0.2, np.float32)  # u = 0.6 everywhere
    known = np.zeros((21, 21), bool)
    known[9:12, 9:12] = True
    paint = known.copy()
    paint[8:13, 8:13] = True  # the painted region: the known square and a one-voxel border
    brain = np.ones((21, 21), bool)
    brain[:, :3] = False
    return image, paint, known, brain


def test_presets_without_the_rim_return_the_image_and_draw_nothing():
    image, paint, known, brain = _slice()
    rng = np.random.default_rng(3)
    out = paint_context_rim(image, paint, known, brain, rng, STRONG_AUGMENTATION)
    assert out is image
    assert rng.random() == np.random.default_rng(3).random()  # the generator was not touched


def test_the_rim_scales_u_by_one_plus_a_times_a_linear_fall_off_outside_the_painted_region_only():
    image, paint, known, brain = _slice()
    parameters = replace(STRONG_RIM_AUGMENTATION, rim_probability=1.0, rim_fraction=0.1, rim_width=2)
    rng = np.random.default_rng(7)
    out = paint_context_rim(image, paint, known, brain, rng, parameters)
    replay = np.random.default_rng(7)
    replay.random()
    fractions = replay.uniform(-0.1, 0.1, 2)
    for channel, a in enumerate(fractions):
        u = (out[channel].astype(np.float64) + 1) / 2
        assert np.array_equal(out[channel][paint], image[channel][paint])  # the target is untouched
        # (8, 13): 1 voxel outside the paint border, 2 from the known square -> weight 0.5
        assert u[13, 10] == pytest.approx(0.6 * (1 + 0.5 * a), abs=1e-6)
        assert u[14, 10] == pytest.approx(0.6, abs=1e-6)  # 3 voxels from known: weight 0
        assert np.all(u[:, :3] == pytest.approx(0.6, abs=1e-7))  # outside the brain
    assert not np.allclose(out, image)


def test_one_voxel_from_the_known_region_the_change_is_the_full_fraction():
    image, _, known, brain = _slice()
    paint = known.copy()  # no border: the first context voxel touches the known square
    parameters = replace(STRONG_RIM_AUGMENTATION, rim_probability=1.0, rim_fraction=0.04, rim_width=2)
    out = paint_context_rim(image, paint, known, brain, np.random.default_rng(11), parameters)
    replay = np.random.default_rng(11)
    replay.random()
    a = replay.uniform(-0.04, 0.04, 2)[0]
    assert (out[0, 12, 10] + 1) / 2 == pytest.approx(0.6 * (1 + a), abs=1e-6)
    assert (out[0, 13, 10] + 1) / 2 == pytest.approx(0.6 * (1 + a / 2), abs=1e-6)


def test_in_training_samples_the_rim_changes_only_the_context_beside_synthetic_masks(tmp_path):
    """Same seed, strong vs strong_rim: identical masks and painted region; differences only just
    outside synthetic masks (never beside the real lesions); synthesis samples identical."""
    from tests.test_training_data import CASES, PLANS, _case_arrays
    from ldiff.io import save_npz_atomic
    from ldiff.masks import dilate_mask
    from ldiff.tasks import get_task
    from ldiff.training.data import SampleSource

    for index, case in enumerate(CASES):
        save_npz_atomic(tmp_path / f"{case}.npz", **_case_arrays(index))
    always = replace(STRONG_RIM_AUGMENTATION, rim_probability=1.0)
    changed = 0
    for task in ("cond_fill", "cond_synth"):
        plain = SampleSource(tmp_path, CASES, PLANS, "2d", get_task(task), seed=0, augmentation=STRONG_AUGMENTATION)
        rim = SampleSource(tmp_path, CASES, PLANS, "2d", get_task(task), seed=0, augmentation=always)
        for step in range(6):
            first, second = plain.draw(step, 0), rim.draw(step, 0)
            assert np.array_equal(first.paint_mask, second.paint_mask)
            assert np.array_equal(first.loss_mask, second.loss_mask)
            paint = first.paint_mask[0] > 0
            assert np.array_equal(first.image[:, paint], second.image[:, paint])  # the target
            differs = np.any(first.image != second.image, axis=0)
            if task == "cond_synth":
                assert not differs.any()
                continue
            # the source's own dilation of the real lesions decides which masks are synthetic
            real = dilate_mask(first.lesion, rim.dilation_radius, rim.spacing)
            synthetic = (first.loss_mask[0] > 0) & ~real
            near = dilate_mask(synthetic, always.rim_width + 1, (1.0, 1.0))
            assert not (differs & ~near).any()
            changed += int(differs.any())
    assert changed > 0
