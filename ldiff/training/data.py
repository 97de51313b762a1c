"""Training samples from preprocessed cases: axial slices (2d) or stacks of consecutive slices (p3d).

A sample is a pure function of ``(seed, step, index)``: every random choice comes from
``np.random.default_rng([seed, step, index])``, so any process (a data worker, another DDP rank, a
resumed run) computes the same sample, and the batches of a run do not depend on how many workers
or GPUs produced them.

How a sample is drawn (:meth:`SampleSource.draw`):

1. Case: uniform over the cases. Synthesis tasks (which learn from real lesions) skip cases
   without lesions; if no case has any, that is an error.
2. Slice, along the plan's slice axis (axial, axis 0 of (Z, Y, X)), or for a run trained on
   several views (``views``, see :mod:`ldiff.slice_views`) along the axis of a view drawn uniformly
   (one number drawn only when there are several, so axial-only samples stay as they were): with probability
   :data:`LESION_SLICE_PROBABILITY` (always, for synthesis tasks) a slice holding lesion voxels,
   otherwise a slice holding WM (else brain, else any slice). For p3d the stack of ``stack_depth``
   slices is centred on it (slice ``k - D // 2`` first); slices beyond the volume are background.
3. In-plane window of exactly the plan's ``patch_size`` (H, W; the whole ``slice_size`` in plans without one): a smaller slice is padded (-1 image, 0 masks),
   at a random offset when augmenting and centred otherwise; a larger one is cropped (randomly when
   augmenting, centred otherwise), keeping a chosen lesion voxel inside when the slice was picked
   for its lesions.
4. Augmentation (``augment=True``, see :mod:`ldiff.training.augmentation`): rotation, scaling and
   left-right mirroring of image and label maps together (labels with nearest neighbour, so
   masks stay binary; no mirroring in sagittal slices, where it would flip up-down or front-back), then brightness/contrast/gamma inside the brain, clipped to [-1, 1]. A
   synthesis sample whose warp pushed every lesion voxel out of the window is redrawn; the
   last of :data:`MAX_LESION_ATTEMPTS` attempts is unaugmented and certain to keep the lesion.
5. Masks: ``task.training_masks`` on the final lesion/WM/brain arrays (2D for 2d, (D, H, W) for
   p3d), with one MaskSampler per SampleSource; so real lesions are dilated and masks are drawn
   in exactly the geometry the network sees.

Each case's decompressed arrays are cached on first use, once per process (~90 MB for a two-channel
1 mm brain), so every data worker holds its own copy unless :meth:`SampleSource.preload` filled the
cache before the workers were forked (the cache is never pickled: a ``spawn`` worker builds its own).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ldiff.masks import LesionLibrary, MaskSampler, dilate_mask
from ldiff.slice_views import MIRRORABLE_VIEWS, check_views, to_view
from ldiff.tasks import Task
from ldiff.training.augmentation import (
    DEFAULT_AUGMENTATION,
    NO_SPATIAL_CHANGE,
    AugmentationParameters,
    augment_intensity,
    blur_in_plane,
    paint_context_rim,
    draw_spatial,
    warp_stack,
    window_start,
)
from ldiff.training.batches import TrainingBatches, training_batches

__all__ = ["SampleSource", "TrainingBatches", "TrainingSample", "training_batches", "validation_samples"]

# Probability that a sample of a fill task is centred on a lesion slice (when its case has lesions):
# half the samples then show real lesions that are voided and excluded from the loss, half show
# ordinary WM, which is where the masks go and where most of the anatomy to learn is.
LESION_SLICE_PROBABILITY = 0.5
MAX_LESION_ATTEMPTS = 4
# Bit flags of the packed label map: one nearest-neighbour warp moves all three masks at once.
LESION_BIT, WM_BIT, BRAIN_BIT = 1, 2, 4
SAMPLE_KEYS = ("image", "paint_mask", "loss_mask")


@dataclass(frozen=True)
class CaseArrays:
    """One preprocessed case in memory.

    ``image``: (C, Z, Y, X) float32 in [-1, 1]; ``labels``: (Z, Y, X) uint8 bit flags (LESION_BIT,
    WM_BIT, BRAIN_BIT); ``*_slices``: sorted indices of the slices (axis 0) that hold each tissue.
    """

    image: np.ndarray
    labels: np.ndarray
    lesion_slices: np.ndarray
    wm_slices: np.ndarray
    brain_slices: np.ndarray


def case_arrays_from(image: np.ndarray, labels: np.ndarray) -> CaseArrays:
    """CaseArrays of an image (C, Z, Y, X) and its bit-flag labels (Z, Y, X), with the slice lists."""
    present = [np.flatnonzero((labels & bit).any(axis=(1, 2))) for bit in (LESION_BIT, WM_BIT, BRAIN_BIT)]
    return CaseArrays(image, labels, *present)


def load_case_arrays(path: Path) -> CaseArrays:
    """Read and decompress ``{case}.npz`` (as written by ``ldiff_plan_and_preprocess``)."""
    with np.load(path) as arrays:
        image = np.ascontiguousarray(arrays["image"], dtype=np.float32)
        lesion, wm, brain = (arrays[key].astype(bool) for key in ("lesion", "wm", "brain"))
    if image.ndim != 4 or image.shape[1:] != lesion.shape:
        raise ValueError(f"{path}: image {image.shape} does not match the masks {lesion.shape}.")
    labels = (lesion * LESION_BIT + wm * WM_BIT + brain * BRAIN_BIT).astype(np.uint8)
    return case_arrays_from(image, labels)


@dataclass(frozen=True)
class TrainingSample:
    """A drawn sample with what it came from. Spatial shape S = (H, W) for 2d, (D, H, W) for p3d.

    ``image`` (C, *S) float32 in [-1, 1]; ``paint_mask``/``loss_mask`` (1, *S) float32 0/1;
    ``lesion`` S bool (the real lesions, undilated); ``case_id``; ``slice_index`` (the centre slice).
    """

    image: np.ndarray
    paint_mask: np.ndarray
    loss_mask: np.ndarray
    lesion: np.ndarray
    case_id: str
    slice_index: int

    def as_dict(self) -> dict[str, np.ndarray]:
        return {key: getattr(self, key) for key in SAMPLE_KEYS}


class SampleSource:
    """Deterministic training samples of one task and configuration; see the module docstring.

    Args:
        data_folder: ``<preprocessed dataset>/<plans["data_identifier"]>`` with ``{case}.npz``.
        case_ids: the cases to sample from (a fold's training or validation cases).
        plans: the plans dict; reads ``target_spacing``, ``training_masks``,
            ``mask_dilation.radius_voxels`` and the configuration's ``slice_axis`` (must be 0),
            ``slice_size`` and ``stack_depth``. The ``"2d"`` configuration gives (C, H, W) samples,
            every other one (C, D, H, W) stacks.
        config_name: ``"2d"`` or ``"p3d"``.
        task: decides the masks (``task.training_masks``) and whether real lesions are required.
        seed: the run's seed.
        augment: apply augmentation (training) or not (validation).
        lesion_library: real lesion shapes for the MaskSampler (None: synthetic shapes only).
        augmentation: probabilities and ranges of the augmentations.
        views: the slice orientations samples are drawn from (:data:`ldiff.slice_views.VIEWS` names);
            default axial only, the plans' slice axis.
    """

    def __init__(self, data_folder: Path, case_ids: list[str], plans: dict, config_name: str, task: Task,
                 seed: int, augment: bool = True, lesion_library: LesionLibrary | None = None,
                 augmentation: AugmentationParameters = DEFAULT_AUGMENTATION, views: Sequence[str] = ("axial",)):
        if not case_ids:
            raise ValueError("a SampleSource needs at least one case.")
        if config_name not in plans["configurations"]:
            raise ValueError(f"the plans have no configuration '{config_name}' (they have {', '.join(plans['configurations'])}).")
        config = plans["configurations"][config_name]
        if int(config.get("slice_axis", 0)) != 0:
            raise ValueError(f"only axial slices (slice_axis 0) are supported, the plans say {config['slice_axis']}.")
        self.data_folder = Path(data_folder)
        missing = [case for case in case_ids if not (self.data_folder / f"{case}.npz").is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} case(s) are not preprocessed in {self.data_folder}, e.g. {missing[0]}.npz.")
        self.case_ids = list(case_ids)
        self.task = task
        self.seed = int(seed)
        self.augment = bool(augment)
        self.augmentation = augmentation
        self.is_2d = config_name == "2d"
        # The window is the plan's training patch (older plans without one: the whole slice).
        window = config.get("patch_size", config["slice_size"])
        self.slice_size = (int(window[0]), int(window[1]))
        self.stack_depth = 1 if self.is_2d else int(config["stack_depth"])
        self.spacing = tuple(float(v) for v in plans["target_spacing"])
        self.dilation_radius = int(plans["mask_dilation"]["radius_voxels"])
        self.mask_sampler = MaskSampler(plans.get("training_masks"), lesion_library, spacing=self.spacing)
        self.views = check_views(views)
        self._cache: dict[tuple[str, str], CaseArrays] = {}

    def __getstate__(self) -> dict:
        # Worker processes started by pickling must not receive (and copy) gigabytes of cache.
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def case_arrays(self, case_id: str, view: str = "axial") -> CaseArrays:
        """The case's arrays in ``view`` order, decompressed on first use and kept for the life of this process."""
        key = (case_id, view)
        if key not in self._cache:
            if view == "axial":
                self._cache[key] = load_case_arrays(self.data_folder / f"{case_id}.npz")
            else:
                axial = self.case_arrays(case_id)
                self._cache[key] = case_arrays_from(to_view(axial.image, view), to_view(axial.labels, view))
        return self._cache[key]

    def preload(self) -> None:
        """Decompress every case now.

        Optional. Called before :func:`training_batches` starts its workers with ``fork`` (the Linux
        default), the workers share these arrays copy-on-write (they are never written), so the
        dataset is held once instead of once per worker.
        """
        for case_id in self.case_ids:
            for view in self.views:
                self.case_arrays(case_id, view)

    # ---- public sampling -------------------------------------------------------------------------
    def sample(self, step: int, index: int) -> dict[str, np.ndarray]:
        """Sample ``index`` of ``step``: {"image", "paint_mask", "loss_mask"}; see TrainingSample for shapes."""
        return self.draw(step, index).as_dict()

    def batch(self, step: int, indices: Sequence[int]) -> dict[str, np.ndarray]:
        """The samples of ``indices`` stacked on a new axis 0: (B, C, *S) and (B, 1, *S), float32."""
        samples = [self.sample(step, int(index)) for index in indices]
        return {key: np.stack([sample[key] for sample in samples]) for key in SAMPLE_KEYS}

    def draw(self, step: int, index: int, case_position: int | None = None, masks: Any = None) -> TrainingSample:
        """The full sample of ``(seed, step, index)``.

        ``case_position`` (an index into ``case_ids``) replaces the random case choice, e.g. to
        cover every validation case; for synthesis tasks the next case with lesions is used if
        that one has none. ``masks``: the task method that draws the masks (default
        ``task.training_masks``; validation uses ``task.prediction_masks``).
        """
        rng = np.random.default_rng([self.seed, int(step), int(index)])
        view = self.views[int(rng.integers(len(self.views)))] if len(self.views) > 1 else self.views[0]
        case_id, arrays, centre, focus = self._choose_slice(rng, case_position, view)
        image, labels = self._stack(arrays, centre)
        for attempt in range(MAX_LESION_ATTEMPTS):
            randomise = self.augment and attempt < MAX_LESION_ATTEMPTS - 1
            spatial = draw_spatial(rng, self.augmentation) if randomise else NO_SPATIAL_CHANGE
            if view not in MIRRORABLE_VIEWS:
                spatial = replace(spatial, mirror=False)
            window_rng = rng if randomise and self.augmentation.random_window_offset else None
            start = tuple(
                window_start(labels.shape[1 + axis], self.slice_size[axis], window_rng, None if focus is None else focus[axis])
                for axis in (0, 1)  # y, x
            )
            warped_image, warped_labels = warp_stack(image, labels, start, self.slice_size, spatial)
            lesion = (warped_labels & LESION_BIT) > 0
            if not self.task.needs_real_lesions or lesion.any():
                break
        wm, brain = (warped_labels & WM_BIT) > 0, (warped_labels & BRAIN_BIT) > 0
        if self.augment:
            warped_image = augment_intensity(warped_image, brain, rng, self.augmentation)
            warped_image = blur_in_plane(warped_image, brain, rng, self.augmentation)
        if self.is_2d:
            warped_image, lesion, wm, brain = warped_image[:, 0], lesion[0], wm[0], brain[0]
        paint, loss = (masks or self.task.training_masks)(lesion, wm, brain, rng, self.mask_sampler,
                                                          self.dilation_radius, self.spacing)
        if self.augment and self.augmentation.rim_probability > 0:
            # Around the synthetic masks only: real lesions bring their own rim (and synthesis paints them).
            synthetic = (loss > 0) & ~dilate_mask(lesion, self.dilation_radius, self.spacing)
            warped_image = paint_context_rim(warped_image, paint, synthetic, brain, rng, self.augmentation)
        return TrainingSample(
            image=np.ascontiguousarray(warped_image, dtype=np.float32),
            paint_mask=paint[None].astype(np.float32),
            loss_mask=loss[None].astype(np.float32),
            lesion=lesion,
            case_id=case_id,
            slice_index=int(centre),
        )

    # ---- the steps of a draw ---------------------------------------------------------------------
    def _choose_slice(self, rng: np.random.Generator, case_position: int | None, view: str = "axial"
                      ) -> tuple[str, CaseArrays, int, tuple[int, int] | None]:
        """(case id, its arrays, centre slice index, (y, x) of a lesion voxel to keep in view or None)."""
        count = len(self.case_ids)
        order = rng.permutation(count) if case_position is None else (np.arange(count) + case_position) % count
        wants_lesion = self.task.needs_real_lesions or rng.random() < LESION_SLICE_PROBABILITY
        for position in order:
            case_id = self.case_ids[int(position)]
            arrays = self.case_arrays(case_id, view)
            if wants_lesion and arrays.lesion_slices.size:
                centre = int(arrays.lesion_slices[rng.integers(arrays.lesion_slices.size)])
                ys, xs = np.nonzero(arrays.labels[centre] & LESION_BIT)
                voxel = int(rng.integers(ys.size))
                return case_id, arrays, centre, (int(ys[voxel]), int(xs[voxel]))
            if self.task.needs_real_lesions:
                continue
            pool = next((p for p in (arrays.wm_slices, arrays.brain_slices) if p.size), np.arange(arrays.labels.shape[0]))
            return case_id, arrays, int(pool[rng.integers(pool.size)]), None
        raise ValueError(f"task {self.task.name} learns from real lesions, but none of the {count} case(s) "
                         f"in {self.data_folder} has any lesion voxel.")

    def _stack(self, arrays: CaseArrays, centre: int) -> tuple[np.ndarray, np.ndarray]:
        """(C, D, Y, X) image and (D, Y, X) labels of the stack centred on ``centre``, padded beyond the volume."""
        depth, num_slices = self.stack_depth, arrays.labels.shape[0]
        first = centre - depth // 2
        low, high = max(first, 0), min(first + depth, num_slices)
        if low == first and high == first + depth:
            return arrays.image[:, low:high], arrays.labels[low:high]  # views: the warp copies anyway
        image = np.full((arrays.image.shape[0], depth, *arrays.image.shape[2:]), -1.0, dtype=np.float32)
        labels = np.zeros((depth, *arrays.labels.shape[1:]), dtype=np.uint8)
        image[:, low - first:high - first] = arrays.image[:, low:high]
        labels[low - first:high - first] = arrays.labels[low:high]
        return image, labels


def validation_samples(data_folder: Path, case_ids: list[str], plans: dict, config_name: str, task: Task,
                       num_samples: int, seed: int = 0, lesion_library: LesionLibrary | None = None
                       ) -> dict[str, np.ndarray]:
    """A fixed, unaugmented set of held-out samples, stacked as :meth:`SampleSource.batch` does.

    Sample i comes from case ``case_ids[i % len(case_ids)]`` (the next one with lesions for
    synthesis tasks), so every validation case is seen. The paint mask is the region the task
    paints at inference, for the unconditional tasks too (they inpaint it with RePaint / partial
    noising): for fill tasks synthetic or real-shape masks placed in healthy WM, never over real
    lesions, joined with the dilated real lesions, which must be voided; the region with a known
    healthy answer is ``paint_mask * loss_mask``. For synthesis tasks the dilated real lesions.
    Masks are drawn from ``seed``, so the same call returns identical arrays.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
    source = SampleSource(data_folder, case_ids, plans, config_name, task, seed, augment=False,
                          lesion_library=lesion_library)
    samples = [source.draw(0, index, case_position=index % len(case_ids), masks=task.prediction_masks).as_dict()
               for index in range(num_samples)]
    return {key: np.stack([sample[key] for sample in samples]) for key in SAMPLE_KEYS}
