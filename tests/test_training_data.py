"""Training data: samples, augmentation, batch streams (workers, ranks, resumption), splits, lesion library.

A tiny preprocessed dataset is written by hand: 2 channels x 20 x 40 x 36 voxels, an ellipsoidal
brain with a WM core; cases 0-2 hold two lesion blobs each, case 3 none. Slices (40, 36) are padded
to the plans' slice_size (48, 40); one configuration uses a smaller window to exercise cropping.
"""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from ldiff.io import save_npz_atomic
from ldiff.masks import LesionLibrary, dilate_mask
from ldiff.tasks import TASKS, get_task
from ldiff.masks import library_cache as library_module
from ldiff.training.augmentation import (
    AugmentationParameters,
    NO_SPATIAL_CHANGE,
    SpatialDraw,
    augment_intensity,
    warp_stack,
    window_start,
)
from ldiff.training.data import SampleSource, training_batches, validation_samples
from ldiff.masks.library_cache import library_path, load_or_build_lesion_library
from ldiff.training.splits import SPLITS_FILE, get_split

SHAPE = (20, 40, 36)
IDENTIFIER = "ldiffPlans_1x1x1mm"
CASES = ["case_000", "case_001", "case_002", "case_003"]
HEALTHY = "case_003"
PLANS = {
    "data_identifier": IDENTIFIER,
    "target_spacing": [1.0, 1.0, 1.0],
    "mask_dilation": {"radius_voxels": 1},
    "training_masks": {"ellipsoid_radius_mm": [1.0, 3.0], "lesions_per_mask": [1, 2], "dilation_radius_voxels": 1},
    "configurations": {
        "2d": {"slice_axis": 0, "slice_size": [48, 40], "stack_depth": 1, "batch_size": 4},
        "p3d": {"slice_axis": 0, "slice_size": [48, 40], "stack_depth": 3, "batch_size": 2},
    },
}


def _case_arrays(index: int) -> dict[str, np.ndarray]:
    z, y, x = np.indices(SHAPE, dtype=np.float64)
    distance = ((z - 9.5) / 9) ** 2 + ((y - 19.5) / 18) ** 2 + ((x - 17.5) / 16) ** 2
    brain, wm = distance < 1, distance < 0.45
    lesion = np.zeros(SHAPE, bool)
    if index < 3:
        for cz, cy, cx in ((9, 16 + index, 12), (11, 23, 23 - index)):
            lesion |= (z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= 4
    rng = np.random.default_rng(index)
    t1 = np.where(wm, 0.6, 0.1) - 0.7 * lesion + rng.normal(0, 0.05, SHAPE)
    flair = np.where(wm, -0.2, 0.2) + 0.9 * lesion + rng.normal(0, 0.05, SHAPE)
    image = np.where(brain, np.clip(np.stack([t1, flair]), -1, 1), -1.0).astype(np.float32)
    return {"image": image, "lesion": lesion.astype(np.uint8), "brain": brain.astype(np.uint8), "wm": wm.astype(np.uint8)}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """(preprocessed dataset folder, data folder), written once for the module."""
    folder = tmp_path_factory.mktemp("Dataset001_Tiny")
    data_folder = folder / IDENTIFIER
    for index, case in enumerate(CASES):
        save_npz_atomic(data_folder / f"{case}.npz", **_case_arrays(index))
        (data_folder / f"{case}.json").write_text(json.dumps({"spacing_after_resampling": [1.0, 1.0, 1.0]}))
    (folder / "plans.json").write_text(json.dumps(PLANS))
    return folder, data_folder


def _source(dataset, task="cond_fill", config="2d", seed=0, augment=True, cases=CASES, plans=PLANS) -> SampleSource:
    return SampleSource(dataset[1], list(cases), plans, config, get_task(task), seed=seed, augment=augment)


def _equal(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)


# ---- samples -------------------------------------------------------------------------------------
@pytest.mark.parametrize("config, spatial", [("2d", (48, 40)), ("p3d", (3, 48, 40))])
@pytest.mark.parametrize("task", sorted(TASKS))
def test_sample_shapes_dtypes_and_ranges(dataset, task, config, spatial):
    batch = _source(dataset, task, config).batch(3, range(6))
    assert batch["image"].shape == (6, 2, *spatial)
    assert batch["paint_mask"].shape == batch["loss_mask"].shape == (6, 1, *spatial)
    for key, values in batch.items():
        assert values.dtype == np.float32, key
    assert batch["image"].min() >= -1.0 and batch["image"].max() <= 1.0
    assert (batch["image"] == -1.0).any()  # the padding and background
    for key in ("paint_mask", "loss_mask"):
        assert set(np.unique(batch[key])) <= {0.0, 1.0}
    if not get_task(task).conditional:
        assert not batch["paint_mask"].any()


def test_sample_is_a_pure_function_of_seed_step_and_index(dataset):
    source = _source(dataset, "cond_fill", "p3d")
    reference = source.sample(7, 2)
    assert _equal(reference, source.sample(7, 2))
    assert _equal(reference, _source(dataset, "cond_fill", "p3d").sample(7, 2))  # fresh cache, same sample
    for other in (source.sample(7, 3), source.sample(8, 2), _source(dataset, "cond_fill", "p3d", seed=1).sample(7, 2)):
        assert not _equal(reference, other)


def test_augmentation_keeps_range_and_binary_masks_and_changes_samples(dataset):
    augmented, plain = _source(dataset, "cond_fill", "2d"), _source(dataset, "cond_fill", "2d", augment=False)
    changed = 0
    for index in range(40):
        sample = augmented.draw(0, index)
        assert -1.0 <= sample.image.min() and sample.image.max() <= 1.0
        assert set(np.unique(sample.paint_mask)) <= {0.0, 1.0} and set(np.unique(sample.loss_mask)) <= {0.0, 1.0}
        changed += not np.array_equal(sample.image, plain.draw(0, index).image)
    assert changed > 20


def test_without_augmentation_a_slice_is_centred_and_padded(dataset):
    sample = _source(dataset, "uncond_fill", "2d", augment=False).draw(0, 0)
    original = _case_arrays(CASES.index(sample.case_id))["image"][:, sample.slice_index]
    assert np.array_equal(sample.image[:, 4:44, 2:38], original)
    assert (sample.image[:, :4] == -1).all() and (sample.image[:, :, 38:] == -1).all()


@pytest.mark.parametrize("config", ["2d", "p3d"])
def test_cond_fill_voids_dilated_real_lesions_and_excludes_them_from_the_loss(dataset, config):
    source = _source(dataset, "cond_fill", config)
    with_lesions = 0
    for index in range(30):
        sample = source.draw(1, index)
        # The fixture's lesions lie deep in the brain, so the voided real region is exactly their dilation.
        real = dilate_mask(sample.lesion, 1, PLANS["target_spacing"])
        assert (sample.paint_mask[0][real] == 1).all()
        # Only the painted healthy tissue is scored: never a real lesion, never the (pasted-back) known region.
        assert np.array_equal(sample.loss_mask[0] == 1, (sample.paint_mask[0] == 1) & ~real)
        assert sample.loss_mask[0].any()  # a synthetic region to learn from
        with_lesions += bool(sample.lesion.any())
    assert 5 <= with_lesions <= 25  # lesion slices are oversampled, not exclusive


@pytest.mark.parametrize("config", ["2d", "p3d"])
@pytest.mark.parametrize("task", ["cond_synth", "uncond_synth"])
def test_synthesis_samples_always_hold_real_lesions(dataset, task, config):
    # A window smaller than the slice forces crops, which could otherwise cut the lesions away.
    plans = copy.deepcopy(PLANS)
    plans["configurations"][config]["slice_size"] = [16, 16]
    source = _source(dataset, task, config, plans=plans)
    for index in range(30):
        sample = source.draw(2, index)
        assert sample.case_id != HEALTHY and sample.lesion.any()
        assert sample.image.shape[-2:] == (16, 16)
        if task == "cond_synth":
            assert np.array_equal(sample.paint_mask[0] > 0, dilate_mask(sample.lesion, 1, PLANS["target_spacing"]))
            assert np.array_equal(sample.loss_mask, sample.paint_mask)
        else:
            assert (sample.loss_mask == 1).all()


def test_synthesis_without_any_lesion_is_an_error(dataset):
    with pytest.raises(ValueError, match="real lesions"):
        _source(dataset, "cond_synth", cases=[HEALTHY]).sample(0, 0)


def test_validation_samples_are_deterministic_and_carry_paint_regions(dataset):
    first = {}
    for task in ("uncond_fill", "cond_synth"):
        first[task] = validation_samples(dataset[1], CASES, PLANS, "p3d", get_task(task), num_samples=5)
        assert _equal(first[task], validation_samples(dataset[1], CASES, PLANS, "p3d", get_task(task), num_samples=5))
        assert first[task]["image"].shape == (5, 2, 3, 48, 40)
        assert all(mask.any() for mask in first[task]["paint_mask"])  # also for the unconditional task
    assert np.array_equal(first["cond_synth"]["loss_mask"], first["cond_synth"]["paint_mask"])
    other_seed = validation_samples(dataset[1], CASES, PLANS, "p3d", get_task("uncond_fill"), num_samples=5, seed=1)
    assert not np.array_equal(first["uncond_fill"]["paint_mask"], other_seed["paint_mask"])


def test_stacks_beyond_the_volume_are_background(dataset):
    source = _source(dataset, "uncond_fill", "p3d")
    arrays = source.case_arrays(CASES[0])
    image, labels = source._stack(arrays, 0)
    assert (image[:, 0] == -1).all() and not labels[0].any()
    assert np.array_equal(image[:, 1:], arrays.image[:, :2]) and np.array_equal(labels[1:], arrays.labels[:2])
    source.preload()
    assert sorted(source._cache) == [(case, "axial") for case in CASES]


# ---- augmentation building blocks ----------------------------------------------------------------
def test_warp_shift_pads_and_crops_exactly_and_mirrors():
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (2, 1, 5, 6)).astype(np.float32)
    labels = rng.integers(0, 8, (1, 5, 6)).astype(np.uint8)
    warped, warped_labels = warp_stack(image, labels, (-2, 1), (8, 4), NO_SPATIAL_CHANGE)
    expected = np.full((2, 1, 8, 4), -1.0, np.float32)
    expected[:, :, 2:7, :] = image[:, :, :, 1:5]
    assert np.array_equal(warped, expected) and np.array_equal(warped_labels[0, 2:7], labels[0, :, 1:5])
    mirrored, _ = warp_stack(image, labels, (-2, 1), (8, 4), SpatialDraw(mirror=True))
    assert np.array_equal(mirrored, expected[..., ::-1])


def test_rotation_keeps_labels_from_the_input_and_a_quarter_turn_is_exact():
    labels = np.zeros((2, 9, 9), np.uint8)
    labels[:, 4, 4:] = 5  # a ray from the centre towards +x
    image = np.where(labels > 0, 1.0, -1.0).astype(np.float32)[None]
    _, rotated = warp_stack(image, labels, (0, 0), (9, 9), SpatialDraw(rotation=0.3, scale=1.1))
    assert set(np.unique(rotated)) <= {0, 5}
    turned, turned_labels = warp_stack(image, labels, (0, 0), (9, 9), SpatialDraw(rotation=np.pi / 2))
    assert np.array_equal(turned_labels[0] > 0, np.rot90(labels[0] > 0, k=-1))
    assert np.allclose(turned[0, 1], np.where(turned_labels[1] > 0, 1.0, -1.0), atol=1e-5)


def test_window_keeps_the_focus_when_cropping():
    rng = np.random.default_rng(1)
    for focus in (0, 17, 99):
        for _ in range(20):
            start = window_start(100, 16, rng, focus)
            assert 0 <= start <= 84 and start <= focus < start + 16
    assert window_start(10, 16, None) == -3 and window_start(100, 16, None) == 42


def test_intensity_augmentation_changes_only_the_brain_and_stays_in_range():
    rng = np.random.default_rng(2)
    image = rng.uniform(-1, 1, (2, 12, 12)).astype(np.float32)
    brain = np.zeros((12, 12), bool)
    brain[3:9, 3:9] = True
    changed = False
    for _ in range(20):
        result = augment_intensity(image, brain, rng)
        assert np.array_equal(result[:, ~brain], image[:, ~brain])
        assert result.min() >= -1 and result.max() <= 1
        changed |= not np.array_equal(result, image)
    assert changed


# ---- batch streams -------------------------------------------------------------------------------
def _collect(batches, count):
    with batches:
        return [next(batches) for _ in range(count)]


def test_workers_deliver_the_in_process_batches_in_step_order(dataset):
    source = _source(dataset, "cond_fill", "2d")
    in_process = _collect(training_batches(source, 2, start_step=0, num_workers=0), 5)
    with training_batches(source, 2, start_step=0, num_workers=2) as batches:
        with_workers = [next(batches) for _ in range(5)]
        workers = list(batches._augmenter._processes)
    assert not any(worker.is_alive() for worker in workers)
    assert [step for step, _ in with_workers] == list(range(5))
    for (_, expected), (_, got) in zip(in_process, with_workers):
        assert all(got[key].dtype == torch.float32 for key in got)
        assert all(np.array_equal(expected[key].numpy(), got[key].numpy()) for key in expected)
    with pytest.raises(StopIteration):
        next(batches)


def test_ranks_partition_a_single_process_batch_and_resumption_repeats_steps(dataset):
    source = _source(dataset, "uncond_synth", "p3d")
    single = _collect(training_batches(source, 4, start_step=3, num_workers=0), 3)
    ranks = [_collect(training_batches(source, 2, start_step=3, rank=r, world_size=2, num_workers=0), 3) for r in (0, 1)]
    for step in range(3):
        for key in single[step][1]:
            joined = np.concatenate([ranks[0][step][1][key].numpy(), ranks[1][step][1][key].numpy()])
            assert np.array_equal(single[step][1][key].numpy(), joined)
    resumed = _collect(training_batches(source, 4, start_step=4, num_workers=0), 2)
    assert [step for step, _ in resumed] == [4, 5]
    for (_, expected), (_, got) in zip(single[1:], resumed):
        assert all(np.array_equal(expected[key].numpy(), got[key].numpy()) for key in expected)


def test_a_failing_worker_raises_instead_of_hanging(dataset):
    batches = training_batches(_source(dataset, "cond_synth", cases=[HEALTHY]), 1, start_step=0, num_workers=2)
    with pytest.raises(RuntimeError, match="no longer alive"):
        next(batches)
    with pytest.raises(StopIteration):
        next(batches)


def test_an_out_of_order_step_is_refused(dataset):
    batches = training_batches(_source(dataset), 1, start_step=0, num_workers=0)
    batches._loader.next_step = 1
    with pytest.raises(RuntimeError, match="step 1"):
        next(batches)


# ---- splits and lesion library -------------------------------------------------------------------
def test_splits_are_written_once_and_folds_partition_the_cases(tmp_path):
    cases = [f"case_{i:03d}" for i in range(12)]
    splits = [get_split(tmp_path, cases, fold) for fold in range(5)]
    assert (tmp_path / SPLITS_FILE).is_file()
    validation = [case for _, val in splits for case in val]
    assert sorted(validation) == cases  # every case validated exactly once
    for train, val in splits:
        assert not set(train) & set(val) and sorted(train + val) == cases
    assert [get_split(tmp_path, cases, fold, seed=999) for fold in range(5)] == splits
    assert get_split(tmp_path, cases, "3") == splits[3]
    everything, val = get_split(tmp_path, cases, "all")
    assert everything == cases and 1 <= len(val) <= 2 and set(val) <= set(cases)
    for bad in (5, -1, "five", 1.5):
        with pytest.raises(ValueError, match="fold must be"):
            get_split(tmp_path, cases, bad)


def test_few_cases_get_one_fold_per_case(tmp_path):
    cases = ["a", "b", "c"]
    splits = [get_split(tmp_path, cases, fold) for fold in range(3)]
    assert sorted(case for _, val in splits for case in val) == cases
    with pytest.raises(ValueError):
        get_split(tmp_path, cases, 3)
    assert get_split(tmp_path / "single", ["only"], 0) == (["only"], ["only"])  # cannot be split


def test_lesion_library_is_cached_and_reloaded_identically(dataset, monkeypatch):
    folder = dataset[0]
    cases = CASES[:2]
    built = load_or_build_lesion_library(folder, IDENTIFIER, cases)
    assert library_path(folder, IDENTIFIER, cases).is_file()
    assert len(built) == 4 and built.spacing == (1.0, 1.0, 1.0)

    def refuse(*_):
        raise AssertionError("the cached library should have been used")

    monkeypatch.setattr(library_module, "build_lesion_library", refuse)
    reloaded = load_or_build_lesion_library(folder, IDENTIFIER, list(reversed(cases)))  # order does not matter
    assert len(reloaded) == len(built)
    assert all(np.array_equal(a, b) for a, b in zip(built.shapes, reloaded.shapes))
    monkeypatch.undo()
    assert load_or_build_lesion_library(folder, IDENTIFIER, [HEALTHY]) is None
    assert library_path(folder, IDENTIFIER, [HEALTHY]) != library_path(folder, IDENTIFIER, cases)


def test_real_shapes_reach_the_masks(dataset):
    library = LesionLibrary.from_lesion_masks([_case_arrays(0)["lesion"].astype(bool)], (1.0, 1.0, 1.0))
    plans = copy.deepcopy(PLANS)
    plans["training_masks"]["real_shape_fraction"] = 1.0
    source = SampleSource(dataset[1], CASES, plans, "p3d", get_task("cond_fill"), seed=0, lesion_library=library)
    assert source.mask_sampler.library is not None
    assert source.sample(0, 0)["paint_mask"].any()


def test_noise_and_bias_field_augmentation_change_only_the_brain():
    from ldiff.training.augmentation import AugmentationParameters, augment_intensity

    only_noise = AugmentationParameters(brightness_probability=0, contrast_probability=0, gamma_probability=0,
                                        bias_field_probability=0, noise_probability=1, noise_std_range=(0.05, 0.05))
    only_bias = AugmentationParameters(brightness_probability=0, contrast_probability=0, gamma_probability=0,
                                       bias_field_probability=1, bias_field_strength=0.3, noise_probability=0)
    image = np.full((1, 2, 40, 40), -1.0, np.float32)
    brain = np.zeros((2, 40, 40), bool)
    brain[:, 5:35, 5:35] = True
    image[0][brain] = 0.0  # u = 0.5 inside the brain
    noisy = augment_intensity(image, brain, np.random.default_rng(3), only_noise)
    assert np.array_equal(noisy[0][~brain], image[0][~brain])
    # noise of std 0.05 on u is std 0.1 on x = 2u - 1
    assert abs(float(noisy[0][brain].std()) - 0.1) < 0.01 and abs(float(noisy[0][brain].mean())) < 0.01
    biased = augment_intensity(image, brain, np.random.default_rng(3), only_bias)
    assert np.array_equal(biased[0][~brain], image[0][~brain])
    difference = biased[0] - image[0]
    assert np.abs(difference[brain]).max() > 0.01
    # a bias field is smooth: neighbouring voxels differ far less than the field varies overall
    assert np.abs(np.diff(difference[0, 5:35, 5:35], axis=1)).max() < 0.2 * np.ptp(difference[brain])


# ---- views: slices along other axes ----------------------------------------------------------------
def _gradient_dataset(folder):
    """One case whose image is the slice's z index (scaled): constant in axial slices, rising along Z elsewhere."""
    z = np.indices(SHAPE)[0]
    brain = np.ones(SHAPE, np.uint8)
    image = np.stack([z / SHAPE[0] - 0.5] * 2).astype(np.float32)
    data_folder = folder / IDENTIFIER
    save_npz_atomic(data_folder / "case_000.npz", image=image, lesion=np.zeros(SHAPE, np.uint8), brain=brain, wm=brain)
    return data_folder


def test_views_slice_along_their_own_axis_and_sagittal_slices_are_never_mirrored(tmp_path):
    data_folder = _gradient_dataset(tmp_path)
    plans = copy.deepcopy(PLANS)
    plans["configurations"]["2d"]["patch_size"] = [16, 16]
    mirror_always = AugmentationParameters(mirror_probability=1.0, rotation_probability=0.0, scaling_probability=0.0,
                                           brightness_probability=0.0, contrast_probability=0.0, gamma_probability=0.0,
                                           bias_field_probability=0.0, noise_probability=0.0)

    def images(views):
        source = SampleSource(data_folder, ["case_000"], plans, "2d", get_task("cond_fill"), seed=0,
                              augmentation=mirror_always, views=views)
        return [source.draw(0, index).image[0] for index in range(12)]

    for image in images(("axial",)):  # an axial slice has one z: constant inside the brain
        inside = image > -1
        assert np.ptp(image[inside]) == 0
    for image in images(("coronal",)):  # in-plane (Z, X): rises down the rows, even mirrored (X only)
        rows = image.max(axis=1)
        assert np.all(np.diff(rows[rows > -1]) > 0)
    for image in images(("sagittal",)):  # in-plane (Y, Z): rises along the columns, never flipped
        columns = image.max(axis=0)
        assert np.all(np.diff(columns[columns > -1]) > 0)
    mixed = SampleSource(data_folder, ["case_000"], plans, "2d", get_task("cond_fill"), seed=0, views=("axial", "coronal", "sagittal"))
    axial_only = SampleSource(data_folder, ["case_000"], plans, "2d", get_task("cond_fill"), seed=0)
    assert not all(np.array_equal(mixed.draw(0, i).image, axial_only.draw(0, i).image) for i in range(6))
    with pytest.raises(ValueError, match="unknown view"):
        SampleSource(data_folder, ["case_000"], plans, "2d", get_task("cond_fill"), seed=0, views=("oblique",))


# ---- smoothing as a resampled scan is (strong_blur) -------------------------------------------------
def test_blur_in_plane_smooths_noise_keeps_a_constant_brain_and_leaves_the_background():
    from dataclasses import replace

    from ldiff.training.augmentation import STRONG_AUGMENTATION, blur_in_plane

    sigma = 1.0
    always = replace(STRONG_AUGMENTATION, blur_probability=1.0, blur_sigma_range=(sigma, sigma))
    brain = np.zeros((1, 96, 96), bool)
    brain[:, 8:88, 8:88] = True
    noise = np.random.default_rng(0).normal(0.0, 0.1, (2, 1, 96, 96))
    image = np.where(brain, 0.2 + noise, -1.0).astype(np.float32)
    image[1] = np.where(brain, 0.5, -1.0)  # channel 1: a constant brain
    out = blur_in_plane(image, brain, np.random.default_rng(1), always)
    assert np.array_equal(out[:, ~brain], image[:, ~brain]), "the background is untouched"
    np.testing.assert_allclose(out[1][brain], 0.5, atol=1e-6)  # normalised: no background bleeds in
    # White noise through a 2D Gaussian of sigma s keeps 1 / (4 pi s^2) of its variance (away from the edge).
    interior = np.zeros_like(brain)
    interior[:, 20:76, 20:76] = True
    ratio = np.var(out[0][interior]) / np.var(image[0][interior])
    assert ratio == pytest.approx(1.0 / (4.0 * np.pi * sigma ** 2), rel=0.2)
    # Off (every preset but strong_blur): the same array back and not one number drawn.
    rng = np.random.default_rng(2)
    assert blur_in_plane(image, brain, rng, STRONG_AUGMENTATION) is image
    assert rng.random() == np.random.default_rng(2).random()


def test_strong_blur_is_strong_with_blur():
    from dataclasses import replace

    from ldiff.training.augmentation import AUGMENTATION_PRESETS, STRONG_AUGMENTATION
    from ldiff.training.settings import AUGMENTATION_NAMES

    assert set(AUGMENTATION_NAMES) == set(AUGMENTATION_PRESETS)
    blur = AUGMENTATION_PRESETS["strong_blur"]
    assert blur.blur_probability > 0 and replace(blur, blur_probability=0.0) == STRONG_AUGMENTATION
