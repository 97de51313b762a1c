"""Regions of interest of prediction: crops that cover every mask voxel once, stacks with context,
shared crops for near lesions, background padding, and batches of one shape."""
from __future__ import annotations

import numpy as np
import pytest

from ldiff.inference.roi import BACKGROUND, extract, group_batches, owned_voxels, plan_rois


def random_mask(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for _ in range(int(rng.integers(1, 10))):
        centre = [int(rng.integers(0, s)) for s in shape]
        radius = int(rng.integers(0, 4))
        mask[tuple(slice(max(c - radius, 0), c + radius + 1) for c in centre)] = True
    return mask


@pytest.mark.parametrize("stack_depth", [1, 3, 8])
@pytest.mark.parametrize("factor", [1, 4, 16])
def test_rois_cover_every_mask_voxel_exactly_once_with_crops_of_the_factor(stack_depth, factor):
    rng = np.random.default_rng(stack_depth * 100 + factor)
    for trial in range(12):
        shape = (int(rng.integers(4, 30)), int(rng.integers(8, 70)), int(rng.integers(8, 70)))
        mask = random_mask(rng, shape)
        margin = int(rng.integers(0, 12))
        if trial % 4 == 3:  # the reference layout of benchmarks/prediction_speed.py
            plan = _prediction_speed_module().whole_slice_plan(mask, stack_depth, (32, 48), factor)
        else:
            plan = plan_rois(mask, stack_depth, (32, 48), factor, margin=margin)
        writes = np.zeros(shape, np.int64)
        slice_owners: dict[tuple[int, int], int] = {}
        for crop in plan.crops:
            depth, height, width = crop.shape
            assert depth == stack_depth and height % factor == 0 and width % factor == 0
            assert height >= min(32, -(-shape[1] // factor) * factor)
            assert width >= min(48, -(-shape[2] // factor) * factor)
            assert all(crop.start[0] <= z < crop.stop[0] for z in crop.owned_slices)
            for z in crop.owned_slices:
                key = (crop.region, z)
                assert key not in slice_owners, "a slice of a region is taken from two stacks"
                slice_owners[key] = 1
            volume_index, crop_index = owned_voxels(plan, crop)
            assert all(((index >= 0) & (index < size)).all() for index, size in zip(crop_index, crop.shape))
            np.add.at(writes, volume_index, 1)
        assert np.array_equal(writes, mask.astype(np.int64)), "every mask voxel once, nothing else"
        masked_slices = set(np.flatnonzero(mask.any(axis=(1, 2))))
        assert {z for _, z in slice_owners} == masked_slices


@pytest.mark.parametrize("context, chunks", [(None, [5, 5]), (2, [4, 3, 3])])
def test_a_stack_is_centred_on_the_slices_it_fills_with_context_on_both_sides(context, chunks):
    mask = np.zeros((40, 32, 32), bool)
    mask[5, 10:14, 10:14] = True             # one slice: the stack is centred on it, as in training
    mask[20:30, 10:14, 10:14] = True         # ten slices: chunks of at most 8 - 2 * context (default 1)
    plan = plan_rois(mask, stack_depth=8, min_size=(16, 16), factor=4, margin=2, context_slices=context)
    by_slices = {crop.owned_slices: crop for crop in plan.crops}
    assert by_slices[(5,)].start[0] == 5 - 8 // 2
    long_run = sorted((crop for crop in plan.crops if crop.owned_slices[0] >= 20), key=lambda crop: crop.start[0])
    assert [len(crop.owned_slices) for crop in long_run] == chunks
    for crop in long_run:
        margin = context or 1
        assert crop.owned_slices[0] - crop.start[0] >= margin and crop.stop[0] - 1 - crop.owned_slices[-1] >= margin


def test_near_lesions_share_a_crop_distant_ones_get_their_own():
    mask = np.zeros((6, 200, 200), bool)
    mask[2, 20:23, 20:23] = mask[2, 30:33, 30:33] = True   # 10 voxels apart: one 32 x 32 crop holds both
    mask[2, 170:173, 170:173] = True                        # far away
    plan = plan_rois(mask, 1, (32, 32), 8, margin=4)
    assert len(plan.crops) == 2 and {crop.shape for crop in plan.crops} == {(1, 32, 32)}


def test_crops_outside_the_volume_are_padded_with_background():
    volume = np.arange(2 * 4 * 6 * 6, dtype=np.float32).reshape(2, 4, 6, 6)
    mask = np.zeros((4, 6, 6), bool)
    mask[0, 0, 0] = True
    crop = plan_rois(mask, 3, (8, 8), 8, margin=0).crops[0]
    assert crop.start == (-1, -1, -1) and crop.shape == (3, 8, 8)
    patch = extract(volume, crop, BACKGROUND)
    assert np.all(patch[:, 0] == BACKGROUND) and np.all(patch[:, :, 0] == BACKGROUND)
    assert np.all(patch[:, :, :, 7] == BACKGROUND)
    assert np.array_equal(patch[:, 1:3, 1:7, 1:7], volume[:, 0:2])


def test_batches_hold_one_shape_and_at_most_the_batch_size():
    mask = np.zeros((10, 120, 120), bool)
    for z in range(10):
        mask[z, 5:8, 5:8] = True
    mask[4, 20:110, 60:62] = True  # a tall region: a larger crop of its own
    plan = plan_rois(mask, 1, (16, 16), 8, margin=0)
    batches = group_batches(plan.crops, 3)
    first_shape = batches[0][0].shape
    in_batch_order = sorted(plan.crops, key=lambda crop: crop.shape != first_shape)
    assert [crop for batch in batches for crop in batch] == in_batch_order
    assert len({crop.shape for crop in plan.crops}) == 2
    assert all(len(batch) <= 3 and len({crop.shape for crop in batch}) == 1 for batch in batches)


@pytest.mark.parametrize("stack_depth", [1, 8])
def test_each_crop_fits_the_lesion_on_its_own_slices_not_the_whole_region(stack_depth):
    # One connected region: a wide lesion on slices 10-19 joined to a thin tail on slices 20-39. One
    # window for the whole region would be 100 voxels wide on every slice; the tail's crops fit the tail.
    mask = np.zeros((50, 128, 128), bool)
    mask[10:20, 14:114, 60:64] = True
    mask[20:40, 60:64, 60:64] = True
    plan = plan_rois(mask, stack_depth, (16, 16), 8, margin=4)
    for crop in plan.crops:
        owned = mask[list(crop.owned_slices)]
        rows = np.flatnonzero(owned.any(axis=(0, 2)))
        wanted = -(-(rows[-1] + 1 - rows[0] + 2 * 4) // 8) * 8  # box + margins, rounded to the factor
        assert crop.shape[1] == max(wanted, 16)
    tail = [crop for crop in plan.crops if min(crop.owned_slices) >= 20]
    assert tail and all(crop.shape[1:] == (16, 16) for crop in tail)


def _prediction_speed_module():
    """benchmarks/prediction_speed.py, whose ``naive`` row needs the reference layout to keep working."""
    import importlib.util
    import sys
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "benchmarks"
    sys.path.insert(0, str(folder))
    try:
        specification = importlib.util.spec_from_file_location("prediction_speed", folder / "prediction_speed.py")
        module = importlib.util.module_from_spec(specification)
        specification.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    return module


@pytest.mark.parametrize("stack_depth", [1, 4])
def test_the_benchmarks_whole_slice_layout_covers_every_voxel_once_with_whole_padded_slices(stack_depth):
    whole_slice_plan = _prediction_speed_module().whole_slice_plan
    paint = np.zeros((20, 37, 45), bool)
    paint[3:5, 2:6, 40:44] = True
    paint[9:14, 30:35, 1:4] = True
    plan = whole_slice_plan(paint, stack_depth, (16, 16), 8)
    written = np.zeros(paint.shape, np.int32)
    for crop in plan.crops:
        assert crop.shape == (stack_depth, 40, 48)  # the whole slice, padded to the factor
        assert crop.start[1:] == (-1, -1)            # centred padding
        assert all(crop.start[0] <= z < crop.start[0] + stack_depth for z in crop.owned_slices)
        volume_index, _ = owned_voxels(plan, crop)
        written[volume_index] += 1
    assert np.array_equal(written, paint.astype(np.int32))
    assert sum(len(crop.owned_slices) for crop in plan.crops) == 7
