"""Which parts of a preprocessed volume the network samples: crops around the mask, and their batches.

The mask is drawn on the original grid and carried into the model's (preprocessed) space by
:func:`coverage_in_preprocessed_space`. Prediction then samples only where that paint mask is,
never whole volumes:

1. **Regions.** The paint mask's 26-connected components start as one region each. Two regions are
   merged when one set of crops covering both costs no more network work (voxels sampled) than
   their two sets: neighbouring lesions then share a crop, distant ones keep small crops of their own.
2. **In-plane box.** Each stack (step 3) of a region gets its own in-plane window (H, W): the bounding
   box of the region's voxels on the slices that stack fills (one slice for ``2d`` models), plus
   ``margin`` voxels of context on every side (margin beyond the volume only adds padding, so it is
   cut there), at least the model's training ``patch_size`` where the slice is that large, rounded up
   to a multiple of the network's downsampling factor. The window is centred on that box and shifted
   inside the volume; a window larger than the slice sticks out on both sides and is padded. Fitting
   the window per stack, not once per region, matters for large confluent lesions: their 3D bounding
   box spans most of a slice while each slice holds only part of them (whole-patient fill times in
   documentation/results/real_patient_timing/).
3. **Stacks.** Along the slice axis (axis 0 of (Z, Y, X)), every run of consecutive slices holding
   region voxels is cut into near-equal chunks of at most ``stack_depth - 2 * context_slices``
   slices (:func:`default_context_slices`: 1 per side for 8-slice stacks), and each chunk gets a
   stack of ``stack_depth`` slices centred on it (slice ``k - D // 2`` first for a one-slice chunk,
   as training centres its stacks), so a chunk's slices have context on both sides. ``2d`` models
   have ``stack_depth = 1``: one crop per slice. Stack slices beyond the volume are padding.
4. **Ownership.** Each region slice is taken from the region's stack in which it lies closest to the
   centre (ties: the earlier stack); stacks that end up owning nothing are dropped. A crop writes back
   only the voxels of its own region on its own slices, so every paint voxel is written exactly once
   even where crops of different regions overlap (each crop still sees, and paints, every paint
   voxel inside it: a neighbouring lesion must be voided too).

Crops that stick out of the volume are padded with :data:`BACKGROUND` (-1, the normalised
background) in the image and 0 in the masks, as training pads its windows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from ldiff.io import Geometry
from ldiff.preprocessing import Reorientation, crop_to_box, resample_array

BACKGROUND = -1.0
# In-plane context around a region's bounding box, in voxels: about 1.6 cm at 1 mm, enough for the
# network to see the surrounding white matter when the crop is not already widened to the patch size.
DEFAULT_CONTEXT_MARGIN = 16


def coverage_in_preprocessed_space(mask: np.ndarray, properties: dict) -> np.ndarray:
    """How much of each preprocessed voxel an original-grid mask covers: float32 (Z', Y', X') in [0, 1].

    The same reorientation, crop and (linear) resampling as the images, so voxel positions agree.
    """
    canonical = Reorientation.from_dict(properties["orientation"]).apply_to_array(mask.astype(np.float32))
    cropped = crop_to_box(canonical, properties["crop_bbox_zyx"])
    if not properties["resampled"]:
        return cropped
    return resample_array(cropped, Geometry.from_dict(properties["geometry_after_crop"]),
                          Geometry.from_dict(properties["geometry_after_resampling"]), "linear")


@dataclass(frozen=True)
class Crop:
    """One network sample: a box of the preprocessed volume and the slices it is trusted for.

    Attributes:
        start: (z, y, x) index of the box's first voxel; may be negative (padding before the volume).
        shape: (D, H, W) of the box; D is the stack depth (1 for 2d), H and W multiples of the
            downsampling factor.
        region: label (>= 1) in :attr:`RoiPlan.regions` of the region whose voxels this crop owns.
        owned_slices: absolute slice indices (axis 0) this crop writes back, ascending.
    """

    start: tuple[int, int, int]
    shape: tuple[int, int, int]
    region: int
    owned_slices: tuple[int, ...]

    @property
    def stop(self) -> tuple[int, int, int]:
        return tuple(begin + size for begin, size in zip(self.start, self.shape))  # type: ignore[return-value]


@dataclass(frozen=True)
class RoiPlan:
    """The crops of one volume and the voxel ownership they follow.

    ``regions``: int32 (Z, Y, X), the region label of every paint voxel, 0 elsewhere.
    """

    crops: tuple[Crop, ...]
    regions: np.ndarray


@dataclass
class _Region:
    slices: np.ndarray  # sorted unique z indices holding region voxels
    boxes: np.ndarray   # (len(slices), 4) int64: [y0, y1, x0, x1] of the region on each slice, stop exclusive
    labels: list[int]   # component labels merged into this region


def default_context_slices(stack_depth: int) -> int:
    """Context slices per side: 1 for the usual 8-slice stacks (2 for 16, none below 4 slices).

    Every filled slice then has a neighbour above and below inside its stack, while an 8-slice stack
    still fills 6 slices. With 2 per side the stacks of the example dataset sampled more voxels than
    the whole slices of the reference layout (measured: 1.0x vs 0.7x with 1, 0.57x with 0).
    """
    return 0 if stack_depth < 4 else max(1, stack_depth // 8)


def round_up(value: int, factor: int) -> int:
    """Smallest multiple of ``factor`` that is >= ``value``."""
    return int(math.ceil(value / factor) * factor)


def window_size(extent: int, length: int, minimum: int, factor: int, margin: int) -> int:
    """In-plane crop size along one axis (see the module docstring, step 2).

    Args:
        extent: the region's bounding-box size along the axis (voxels, >= 1).
        length: the volume's size along the axis.
        minimum: the training patch size along the axis.
        factor: the network's downsampling factor.
        margin: context voxels wanted on each side.
    """
    wanted = min(extent + 2 * margin, max(length, extent))
    floor = min(minimum, round_up(length, factor))
    return round_up(max(wanted, floor, 1), factor)


def window_start(low: int, high: int, size: int, length: int) -> int:
    """First index of a ``size`` window holding [low, high): centred, then shifted inside [0, length)."""
    if size >= length:
        return -((size - length) // 2)
    start = (low + high) // 2 - size // 2
    return int(min(max(start, 0), length - size))


def chunk_runs(slices: np.ndarray, core_depth: int) -> list[tuple[int, int]]:
    """Cut sorted slice indices into runs of consecutive slices, and each run into near-equal
    [first, stop) chunks of at most ``core_depth`` slices."""
    chunks: list[tuple[int, int]] = []
    if slices.size == 0:
        return chunks
    breaks = np.flatnonzero(np.diff(slices) > 1) + 1
    for run in np.split(slices, breaks):
        count = math.ceil(run.size / core_depth)
        chunks.extend((int(part[0]), int(part[-1]) + 1) for part in np.array_split(run, count))
    return chunks


def union_box(boxes: np.ndarray) -> list[int]:
    """[y0, y1, x0, x1] holding every box of ``boxes`` ((N, 4), N >= 1)."""
    return [int(boxes[:, 0].min()), int(boxes[:, 1].max()), int(boxes[:, 2].min()), int(boxes[:, 3].max())]


class _Costs:
    """Network work (voxels sampled) of a region's crops, for the merge decisions."""

    def __init__(self, shape: tuple[int, int, int], stack_depth: int, core_depth: int, min_size: Sequence[int],
                 factor: int, margin: int) -> None:
        self.shape, self.stack_depth, self.core_depth = shape, stack_depth, core_depth
        self.min_size, self.factor, self.margin = tuple(min_size), factor, margin

    def window(self, box: Sequence[int]) -> tuple[int, int]:
        return (window_size(box[1] - box[0], self.shape[1], self.min_size[0], self.factor, self.margin),
                window_size(box[3] - box[2], self.shape[2], self.min_size[1], self.factor, self.margin))

    def chunk_boxes(self, region: _Region) -> list[tuple[int, int, list[int]]]:
        """(first, stop, box) of each chunk of the region's slices: the box of its voxels on those slices."""
        chunks = chunk_runs(region.slices, self.core_depth)
        # Chunks are consecutive runs of the sorted slice list, so each is a contiguous block of rows.
        rows = np.searchsorted(region.slices, [first for first, _ in chunks])
        ends = list(rows[1:]) + [len(region.slices)]
        return [(first, stop, union_box(region.boxes[row:end])) for (first, stop), row, end in zip(chunks, rows, ends)]

    def __call__(self, region: _Region) -> int:
        total = 0
        for _, _, box in self.chunk_boxes(region):
            height, width = self.window(box)
            total += height * width
        return total * self.stack_depth


def _merged(first: _Region, second: _Region) -> _Region:
    slices = np.union1d(first.slices, second.slices)
    boxes = np.tile(np.array([np.iinfo(np.int64).max, -1, np.iinfo(np.int64).max, -1], np.int64), (len(slices), 1))
    for region in (first, second):
        rows = np.searchsorted(slices, region.slices)
        boxes[rows, 0::2] = np.minimum(boxes[rows, 0::2], region.boxes[:, 0::2])
        boxes[rows, 1::2] = np.maximum(boxes[rows, 1::2], region.boxes[:, 1::2])
    return _Region(slices, boxes, first.labels + second.labels)


def _merge_regions(regions: list[_Region], cost: _Costs) -> list[_Region]:
    """Merge the pair that saves the most work, again and again, while a merge costs no extra work.

    Savings of the pairs are kept between rounds; a merge only adds the new region's pairs, so the
    whole takes O(n^2) cost evaluations for n components.
    """
    alive = {index: region for index, region in enumerate(regions)}
    costs = {index: cost(region) for index, region in alive.items()}
    savings: dict[tuple[int, int], tuple[int, _Region]] = {}

    def consider(i: int, j: int) -> None:
        first, second = alive[i], alive[j]
        # Regions with a free slice between them fall into separate runs, hence separate chunks: merging
        # them would save nothing, so they are left apart (their crops would be the same either way).
        if first.slices[0] > second.slices[-1] + 1 or second.slices[0] > first.slices[-1] + 1:
            return
        union = _merged(first, second)
        saving = costs[i] + costs[j] - cost(union)
        if saving >= 0:
            savings[(i, j)] = (saving, union)

    for i in alive:
        for j in alive:
            if i < j:
                consider(i, j)
    next_index = len(regions)
    while savings:
        # Largest saving first; among equal savings the lowest indices, so the result is deterministic.
        (i, j), (_, union) = max(savings.items(), key=lambda item: (item[1][0], -item[0][0], -item[0][1]))
        for index in (i, j):
            del alive[index], costs[index]
        savings = {pair: value for pair, value in savings.items() if not {i, j} & set(pair)}
        alive[next_index], costs[next_index] = union, cost(union)
        for other in list(alive):
            if other != next_index:
                consider(other, next_index)
        next_index += 1
    return [alive[index] for index in sorted(alive)]


def plan_rois(
    paint: np.ndarray,
    stack_depth: int,
    min_size: Sequence[int],
    factor: int,
    margin: int = DEFAULT_CONTEXT_MARGIN,
    context_slices: int | None = None,
) -> RoiPlan:
    """The crops that cover every voxel of ``paint`` exactly once (see the module docstring).

    Args:
        paint: (Z, Y, X) bool, the voxels to sample.
        stack_depth: slices per network sample (1 for ``2d`` models).
        min_size: (H, W), the model's training patch size; crops are at least this large where the
            volume is.
        factor: the network's downsampling factor; crop H and W are multiples of it.
        margin: in-plane context voxels around each region's bounding box.
        context_slices: slices of context kept on each side of a stack's owned chunk; default
            :func:`default_context_slices`.

    Returns:
        the :class:`RoiPlan`; no crops for an empty mask.
    """
    paint = np.asarray(paint, dtype=bool)
    if paint.ndim != 3:
        raise ValueError(f"paint must be a (Z, Y, X) mask, got shape {paint.shape}.")
    if stack_depth < 1 or factor < 1 or margin < 0:
        raise ValueError(f"need stack_depth >= 1, factor >= 1 and margin >= 0; got {stack_depth}, {factor}, {margin}.")
    if context_slices is None:
        context_slices = default_context_slices(stack_depth)
    core_depth = stack_depth - 2 * context_slices
    if core_depth < 1:
        raise ValueError(f"{context_slices} context slices on each side leave no slice of a {stack_depth}-slice stack.")
    shape = paint.shape
    labels, count = ndimage.label(paint, structure=np.ones((3, 3, 3), dtype=bool))
    labels = labels.astype(np.int32, copy=False)
    cost = _Costs(shape, stack_depth, core_depth, min_size, factor, margin)
    regions = []
    for label, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is None:
            continue
        z_slices, y_slice, x_slice = found
        inside = labels[found] == label
        present = np.flatnonzero(inside.any(axis=(1, 2)))
        rows, columns = inside[present].any(axis=2), inside[present].any(axis=1)  # (n, H) and (n, W)
        boxes = np.stack([rows.argmax(axis=1), rows.shape[1] - rows[:, ::-1].argmax(axis=1),
                          columns.argmax(axis=1), columns.shape[1] - columns[:, ::-1].argmax(axis=1)], axis=1)
        boxes += np.array([y_slice.start, y_slice.start, x_slice.start, x_slice.start])
        regions.append(_Region(present + z_slices.start, boxes.astype(np.int64), [label]))
    regions = _merge_regions(regions, cost)

    region_map = np.zeros(shape, np.int32)
    lookup = np.zeros(count + 1, np.int32)
    crops: list[Crop] = []
    for region_label, region in enumerate(regions, start=1):
        lookup[region.labels] = region_label
        firsts = [(first + stop - stack_depth) // 2 for first, stop in chunk_runs(region.slices, core_depth)]
        owned: dict[int, list[int]] = {index: [] for index in range(len(firsts))}
        for z in region.slices:
            # The stack in which z is most central (ties go to the earlier stack).
            distances = [abs(z - (first + (stack_depth - 1) / 2)) if first <= z < first + stack_depth else math.inf
                         for first in firsts]
            owned[int(np.argmin(distances))].append(int(z))
        for index, first in enumerate(firsts):
            if not owned[index]:
                continue
            box = union_box(region.boxes[np.searchsorted(region.slices, owned[index])])
            height, width = cost.window(box)
            start = (first, window_start(box[0], box[1], height, shape[1]), window_start(box[2], box[3], width, shape[2]))
            crops.append(Crop(start, (stack_depth, height, width), region_label, tuple(owned[index])))
    region_map[paint] = lookup[labels[paint]]
    return RoiPlan(tuple(crops), region_map)


def _overlap(crop: Crop, shape: Sequence[int]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """(volume slices, crop slices) of the part of ``crop`` inside a volume of spatial ``shape``."""
    inside, local = [], []
    for begin, size, length in zip(crop.start, crop.shape, shape):
        low, high = max(begin, 0), min(begin + size, length)
        inside.append(slice(low, max(high, low)))
        local.append(slice(low - begin, max(high, low) - begin))
    return tuple(inside), tuple(local)


def extract(volume: np.ndarray, crop: Crop, fill_value: float) -> np.ndarray:
    """The crop of ``volume`` ((..., Z, Y, X)) as (..., D, H, W); voxels outside the volume get ``fill_value``."""
    out = np.full((*volume.shape[:-3], *crop.shape), fill_value, dtype=volume.dtype)
    inside, local = _overlap(crop, volume.shape[-3:])
    out[(Ellipsis, *local)] = volume[(Ellipsis, *inside)]
    return out


def owned_voxels(plan: RoiPlan, crop: Crop) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """The voxels ``crop`` writes back: (z, y, x) index arrays in the volume and the same voxels in the crop."""
    inside, _ = _overlap(crop, plan.regions.shape)
    slices = np.asarray(crop.owned_slices, dtype=np.int64)
    window = plan.regions[slices, inside[1], inside[2]] == crop.region
    z, y, x = np.nonzero(window)
    volume_index = (slices[z], y + inside[1].start, x + inside[2].start)
    crop_index = tuple(index - begin for index, begin in zip(volume_index, crop.start))
    return volume_index, crop_index


def paste_owned(target: np.ndarray, sample: np.ndarray, plan: RoiPlan, crop: Crop) -> None:
    """Write the crop's owned voxels of ``sample`` ((C, D, H, W)) into ``target`` ((C, Z, Y, X)) in place."""
    volume_index, crop_index = owned_voxels(plan, crop)
    target[(slice(None), *volume_index)] = sample[(slice(None), *crop_index)]


def group_batches(crops: Sequence[Crop], batch_size: int) -> list[list[Crop]]:
    """Crops of one shape together, at most ``batch_size`` per batch, in the order shapes first appear."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    by_shape: dict[tuple[int, int, int], list[Crop]] = {}
    for crop in crops:
        by_shape.setdefault(crop.shape, []).append(crop)
    return [group[start:start + batch_size] for group in by_shape.values()
            for start in range(0, len(group), batch_size)]
