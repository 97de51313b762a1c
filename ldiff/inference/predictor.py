"""The Python API of prediction: fill lesions, or synthesise them, in images on their original grid.

``Predictor.from_folder(model_folder).fill(images, mask)`` runs, for one case:

1. the plan's mask dilation on the original grid (``model.json``'s ``mask_dilation``, in mm): the
   voxels allowed to change;
2. preprocessing exactly as for training (:func:`ldiff.preprocessing.preprocess_images`: RAS+,
   brain crop, target spacing, percentile normalisation to [-1, 1]); the dilated mask is carried
   into that space by linear interpolation, keeping every voxel it touches, and limited to the
   brain, as the training masks are; for the fill tasks, where the model records its training data's
   intensity landmarks, the brain's histogram mapped onto theirs (:mod:`ldiff.preprocessing.standardisation`;
   the output mapped back before step 4);
3. sampling only the crops of :mod:`ldiff.inference.roi`, in batches of one crop shape, once per
   view (:mod:`ldiff.slice_views`: the volume sliced axially, coronally or sagittally) and averaged
   over the views inside the mask;
4. pasting each crop's own voxels back, mapping the volume to the original grid with
   :func:`ldiff.preprocessing.restore_to_original`, and composing: the input everywhere, the
   restored model output on the dilated-mask voxels the model painted. So every voxel outside the
   dilated mask is the input bit for bit, and the output keeps the input's grid and pixel type
   (integer types are rounded half to even and clipped to the type's range).

Samplers and their defaults (one network call per step unless said otherwise):

=====================  ===============================================================================
task                   sampler
=====================  ===============================================================================
cond_fill              ``dpm_solver`` (default: DPM-Solver++(2M), 3 steps, the mean of 4 draws per crop,
                       an estimate of the posterior mean; for a model trained on all three views one
                       draw in each view instead; warm start: the mask filled biharmonically, noised to
                       ``t0 = 250`` and denoised from there, one network call per draw; ``t0="full"``
                       walks from pure noise; chosen by measurement, documentation/benchmark.md),
                       ``ddim`` (25 steps unless ``steps``, eta 0), ``ddpm`` (1000 steps)
cond_synth             ``ddim`` (default; 25 steps, eta 0, one draw: a lesion with texture), ``ddpm``,
                       ``dpm_solver`` (15 steps unless ``steps``)
uncond_fill            ``repaint`` (default): 50 DDIM-spaced steps, jump 8, 10 resamplings, eta 1 (the
                       thesis's setting, 482 calls; ``--resamplings 1`` is plain replacement, 50 calls)
uncond_synth           ``repaint`` partial noising: a coarse lesion painted into the mask, noise to
                       ``t0 = 40`` of 1000, then the 50-step "leading" RePaint walk 40 -> 20 -> 0 with
                       one jump back over it and 3 passes (9 calls)
=====================  ===============================================================================

Lesion intensity of the coarse lesion (uncond_synth), per channel in the model's [-1, 1] space:
``lesion_intensity`` when given (a number in [-1, 1], or ``"pNN"``: the NN-th percentile of the
case's brain); else the training fingerprint's median lesion intensity placed within the
fingerprint's median brain percentiles that the normalisation uses (so it does not depend on the new
scanner's raw units); else :data:`~ldiff.inference.lesion_intensity.DEFAULT_LESION_PERCENTILE` of the case's brain (10th for a
T1-weighted channel, where lesions are dark, 99th for any other, FLAIR-like).

Reproducibility: the same inputs, seed, options, batch size and device give the same output.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import SimpleITK as sitk
import torch
from tqdm import tqdm

from ldiff.diffusion import paint_coarse_lesion
from ldiff.errors import LdiffError
from ldiff.io.cases import cast_to_dtype
from ldiff.inference.input_checks import check_prediction_inputs
from ldiff.inference.contrast_matching import ContrastMatch, match_case_contrast
from ldiff.inference.lesion_intensity import contrast_for_volume, lesion_levels, relative_lesion_contrasts
from ldiff.inference.model_loading import LoadedModel, load_fingerprint, load_model
from ldiff.inference.roi import (BACKGROUND, RoiPlan, coverage_in_preprocessed_space, extract,
                                 group_batches, paste_owned, plan_rois)
from ldiff.io import Geometry, array_to_image, geometry_mismatch
from ldiff.masks import dilate_mask
from ldiff.preprocessing import derive_wm_mask, preprocess_images, restore_to_original
from ldiff.preprocessing.standardisation import IntensityStandardisation
from ldiff.devices import resolve_device
# SamplingOptions and its resolution live in sampling_options; imported here as the Python API's names.
from ldiff.inference.sampling_options import (DEFAULT_STEPS, FULL_WALK, SamplingOptions, build_task_sampler,  # noqa: F401
                                              resolved_landmarks, resolved_sampler, resolved_t0)
from ldiff.inference.smooth_fill import smooth_prefill
from ldiff.inference.view_fill import fill_along_views
from ldiff.slice_views import default_views, is_isotropic

logger = logging.getLogger("ldiff")

# A preprocessed voxel belongs to the carried-over mask when any original mask voxel contributes to it.
COVERAGE_THRESHOLD = 1e-6
DEFAULT_BATCH_SIZE = 8
CPU_BATCH_SIZE = 8
# (paint (Z, Y, X) bool, stack depth, (H, W) minimum crop size, downsampling factor) -> the crops to sample.
CropPlanner = Callable[[np.ndarray, int, Sequence[int], int], RoiPlan]


@dataclass(frozen=True, eq=False)
class PredictionResult:
    """``images``: one per channel on the input grid and pixel type; ``changed``: bool (Z, Y, X), the
    voxels that took the model's output; ``crops`` and ``network_calls`` say how much was sampled;
    ``contrast``: what lesion-contrast matching did (None where it did not run)."""

    images: list[sitk.Image]
    changed: np.ndarray
    crops: int
    network_calls: int
    contrast: ContrastMatch | None = None


class Predictor:
    """Fills or synthesises lesions with one loaded model; see the module docstring.

    Args:
        model: a :class:`LoadedModel` (see :meth:`from_folder`).
        options: sampler and cropping settings.
        crop_planner: which crops to sample, ``(paint (Z, Y, X) bool, stack depth, (H, W) minimum
            size, downsampling factor) -> RoiPlan``; default :func:`~ldiff.inference.roi.plan_rois`
            with the options' context. Benchmarks pass other layouts (e.g. whole slices).
    """

    def __init__(self, model: LoadedModel, options: SamplingOptions | None = None,
                 crop_planner: CropPlanner | None = None) -> None:
        self.model = model
        self.options = options or SamplingOptions()
        self.crop_planner = crop_planner or functools.partial(
            plan_rois, margin=self.options.context_margin, context_slices=self.options.context_slices)
        self.sampler = build_task_sampler(model, self.options)
        self.t0 = resolved_t0(model, self.options)
        self.landmarks = resolved_landmarks(model, self.options)
        self.network_calls = 0
        spacing = model.description.get("target_spacing") or (1.0, 1.0, 1.0)
        if self.views != ("axial",) and not is_isotropic(spacing):
            raise LdiffError(f"{model.folder} works on {' x '.join(f'{v:g}' for v in spacing)} mm voxels; coronal and "
                             f"sagittal views need near-isotropic ones, so fill along the axial view only.")

    @classmethod
    def from_folder(cls, model_folder: str | Path, checkpoint: str = "final", device: str = "cpu",
                    task: str | None = None, options: SamplingOptions | None = None, **fields: Any) -> "Predictor":
        """Load ``model_folder`` (``checkpoint`` final or latest; ``device`` cpu, cuda or auto; ``task``
        refuses a model of another task); ``options``, or its fields as keywords, set the sampling."""
        model = load_model(model_folder, checkpoint, resolve_device(device), expected_task=task)
        return cls(model, dataclasses.replace(options or SamplingOptions(), **fields))

    def describe_sampling(self) -> str:
        """One line for logs and figure titles, e.g. ``dpm_solver 3 steps, mean of 4 draws per crop``."""
        name, steps = resolved_sampler(self.model, self.options)
        draws, views = self.num_samples, self.views
        line = f"{name} {steps} steps, " + ("one draw" if draws == 1 else f"mean of {draws} draws") + " per crop"
        line = line if views == ("axial",) else line + f" in each of {len(views)} views ({', '.join(views)})"
        if self.t0 is not None and self.model.task.warm_starts:
            line += f", warm start: smooth fill noised to t0={self.t0}"
        if self.landmarks is not None:
            line += ", input standardised to the training histogram"
        fingerprint = load_fingerprint(self.model) if self.can_match_contrast else None
        if fingerprint is not None and fingerprint.get("lesion_contrast_by_volume"):
            return line + ", lesion contrast matched per lesion by its volume"
        matched = self.can_match_contrast and (self.options.match_contrast or fingerprint is not None)
        return line + (", lesion contrast matched" if matched else "")

    @property
    def can_match_contrast(self) -> bool:
        """Whether the lesions' contrast may be set after sampling (``SamplingOptions.match_contrast`` not
        False, for tasks that can: :attr:`~ldiff.tasks.Task.can_match_lesion_contrast`)."""
        return self.options.match_contrast is not False and self.model.task.can_match_lesion_contrast

    @property
    def takes_lesion_intensity(self) -> bool:
        """Whether a lesion intensity (``lesion_intensity``, ``lesion_intensity_from``) is used: by the
        task (uncond_synth, cued cond_synth) or as the contrast that matching sets."""
        return self.model.task.takes_lesion_intensity or self.can_match_contrast

    @property
    def views(self) -> tuple[str, ...]:
        """Slice orientations filled and averaged: the option, else the model's
        (:func:`ldiff.slice_views.default_views`: all three after ``ldiff_train --slice-axes all``)."""
        return self.options.views if self.options.views is not None else default_views(self.model.description)

    @property
    def num_samples(self) -> int:
        """Draws averaged per crop in each view: the option, else the task's default divided by the
        number of views (at least 1)."""
        if self.options.num_samples:
            return int(self.options.num_samples)
        return max(1, int(self.model.task.default_sampling.get("num_samples", 1)) // len(self.views))

    @property
    def batch_size(self) -> int:
        """Samples per network call: the option, else the training batch size, on a CPU at most
        :data:`CPU_BATCH_SIZE` (a CPU's cost per sample grows beyond it: benchmarks/network_batch_cost.py)."""
        if self.options.batch_size:
            return int(self.options.batch_size)
        training = self.model.description.get("training") or {}
        planned = max(1, int(training.get("batch_size") or DEFAULT_BATCH_SIZE))
        return planned if self.model.device.type == "cuda" else min(planned, CPU_BATCH_SIZE)

    # ---- the two verbs, for SimpleITK images or numpy arrays -----------------------------------
    def fill(self, images: Any, mask: Any, spacing: Sequence[float] | None = None, seed: int = 0) -> Any:
        """Fill the lesions of ``mask`` with healthy tissue (cond_fill and uncond_fill models).

        Args:
            images: one ``sitk.Image`` per channel (a list, or one image for one channel), or a numpy
                array (C, Z, Y, X) (or (Z, Y, X) for one channel) of any real dtype.
            mask: the lesions, 0/1: a ``sitk.Image`` on the images' grid or a (Z, Y, X) array.
            spacing: (x, y, z) mm of numpy inputs (default 1 mm; origin 0, identity direction).
            seed: seeds every noise draw.

        Returns:
            the same kind, shape and pixel type as ``images``.
        """
        self._require("fill")
        return self._run(images, mask, spacing, seed, None)

    def synthesise(self, images: Any, mask: Any, spacing: Sequence[float] | None = None, seed: int = 0,
                   lesion_intensity: Sequence[float | str] | None = None) -> Any:
        """Synthesise lesions inside ``mask`` (cond_synth and uncond_synth models); arguments as :meth:`fill`."""
        self._require("synthesise")
        return self._run(images, mask, spacing, seed, lesion_intensity)

    def _require(self, verb: str) -> None:
        if self.model.task.verb != verb:
            raise LdiffError(f"{self.model.folder} holds a {self.model.task.name} model, which cannot {verb}; "
                             f"call {self.model.task.verb}() or load another model.")

    def _run(self, images: Any, mask: Any, spacing: Sequence[float] | None, seed: int,
             lesion_intensity: Sequence[float | str] | None) -> Any:
        as_array = isinstance(images, np.ndarray)
        if as_array:
            arrays = images[None] if images.ndim == 3 else images
            if arrays.ndim != 4:
                raise LdiffError(f"images must be (C, Z, Y, X) or (Z, Y, X), got shape {images.shape}.")
            geometry = Geometry(arrays.shape[:0:-1], tuple(float(s) for s in (spacing or (1.0, 1.0, 1.0))),
                                (0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
            image_list = [array_to_image(np.ascontiguousarray(a), geometry) for a in arrays]
        else:
            image_list = [images] if isinstance(images, sitk.Image) else list(images)
        if isinstance(mask, sitk.Image):
            mismatch = geometry_mismatch(Geometry.of(image_list[0]), Geometry.of(mask))
            if mismatch is not None:
                raise LdiffError(f"the mask's grid differs from the image's ({mismatch}).")
            mask = sitk.GetArrayFromImage(mask)
        mask = np.asarray(mask)
        if mask.dtype != bool and not np.all((mask == 0) | (mask == 1)):
            raise LdiffError("the mask is not binary; it must hold only 0 and 1.")
        result = self.predict(image_list, mask.astype(bool), seed=seed, lesion_intensity=lesion_intensity)
        if as_array:
            stacked = np.stack([sitk.GetArrayFromImage(image) for image in result.images])
            return stacked[0] if images.ndim == 3 else stacked
        return result.images[0] if isinstance(images, sitk.Image) else result.images

    # ---- the work ------------------------------------------------------------------------------
    def predict(self, images: list[sitk.Image], mask: np.ndarray, seed: int = 0,
                lesion_intensity: Sequence[float | str] | None = None, mask_name: str = "the mask",
                image_name: str = "the image", progress: bool = False,
                lesion_intensity_from: np.ndarray | None = None) -> PredictionResult:
        """Fill or synthesise in one case (module docstring); checks its inputs.

        Args:
            images: one image per model channel, in the model's channel order, all on one grid.
            mask: bool (Z, Y, X) on that grid (``sitk.GetArrayFromImage`` order).
            seed: seeds the case's noise.
            lesion_intensity: tasks that take one (uncond_synth, cond_synth trained with the lesion-level
                cue), see the module docstring.
            lesion_intensity_from: bool (Z, Y, X) on that grid, the scan's own lesions: the lesion
                intensity is their mean, per channel (instead of ``lesion_intensity``).
            mask_name, image_name: how error messages name the mask and the images (e.g. their files).
            progress: show a progress bar over the crop batches.
        """
        model = self.model
        check_prediction_inputs(self.model, images, mask, mask_name)
        geometry = Geometry.of(images[0])
        if not mask.any():
            logger.warning("%s is empty; the output is the input unchanged.", mask_name)
            return PredictionResult([sitk.Image(image) for image in images], np.zeros(mask.shape, bool), 0, 0)
        dilation = model.mask_dilation
        region = dilate_mask(mask, spacing=geometry.spacing, shape=dilation["shape"], radius_mm=dilation["radius_mm"])
        arrays, properties = preprocess_images(images, None, None, model.preprocessing_config, None, image_name)
        brain = arrays["brain"].astype(bool)
        standardisation = None
        if self.landmarks is not None:
            standardisation = IntensityStandardisation.fit(arrays["image"], brain, self.landmarks)
            arrays["image"] = standardisation.apply(arrays["image"])
        in_mask = coverage_in_preprocessed_space(mask, properties) > COVERAGE_THRESHOLD
        if not in_mask[brain].any():
            raise LdiffError(f"{mask_name}: no mask voxel lies inside the brain found in the image; check that the "
                             f"mask belongs to this image (same subject, same space).")
        if (in_mask & ~brain).any():
            # A dark lesion beside the ventricles can fall outside the brain an intensity split finds; the
            # mask says it is tissue, and left out it would stay unfilled.
            logger.info("%s: %d mask voxels lie outside the brain found in the image; they are filled too.",
                        mask_name, int(np.count_nonzero(in_mask & ~brain)))
        coverage = coverage_in_preprocessed_space(region, properties)
        paint = ((coverage > COVERAGE_THRESHOLD) & brain) | in_mask
        if lesion_intensity_from is not None and lesion_intensity_from.shape != mask.shape:
            raise LdiffError(f"the scan's own lesion mask has shape {lesion_intensity_from.shape}, {mask_name} "
                             f"{mask.shape}: both must be on the image's grid.")
        levels = relative = by_volume = None
        # Matching is the default (match_contrast None) as well as when asked for: chosen by measurement
        # on the example test phantoms and two real patients, documentation/prediction.md#lesion-contrast-synthesis.
        match = self.can_match_contrast
        asked = bool(self.options.match_contrast or lesion_intensity is not None or lesion_intensity_from is not None)
        if model.task.takes_lesion_intensity or match:
            try:
                levels = lesion_levels(model, arrays, properties, lesion_intensity, lesion_intensity_from, mask_name,
                                       as_contrast=model.task.lesion_intensity_is_contrast or match)
                # With no contrast given, matching sets the training lesions' contrast as a fraction of the
                # scan's own tissue level: a share of the percentile range would not carry over between scanners.
                if match and lesion_intensity is None and lesion_intensity_from is None:
                    relative = relative_lesion_contrasts(model, len(images))
                    # Where the fingerprint says how the training lesions' contrast depends on their
                    # size, each lesion gets the contrast of its size (contrast_matching's docstring).
                    by_volume = contrast_for_volume(model, len(images))
            except LdiffError as error:
                if model.task.takes_lesion_intensity:
                    raise
                # Only matching wanted the contrast, and the model has no training fingerprint to say it:
                # a warning where the user asked for matching, a note where it was only the default.
                (logger.warning if asked else logger.info)("lesion contrast not matched: %s", error)
                levels = None
        start = model.task.starting_image(arrays["image"],
                                          lambda: self._with_coarse_lesions(arrays, properties, mask, paint, levels),
                                          lambda: smooth_prefill(arrays["image"], paint,
                                                                 self._white_matter(arrays["image"], brain, paint),
                                                                 tuple(properties["spacing_after_resampling"])),
                                          self.t0)
        calls_before = self.network_calls

        def sample_one_view(view_start: np.ndarray, view_paint: np.ndarray, view_seed: int) -> tuple[np.ndarray, int]:
            try:
                plan = self.crop_planner(view_paint, model.stack_depth, model.patch_size, model.downsampling_factor)
            except ValueError as error:  # e.g. more context slices than the model's stacks hold
                raise LdiffError(f"Invalid cropping options for this model: {error}") from None
            return self._sample(view_start, view_paint, plan, view_seed, progress, levels), len(plan.crops)

        painted, num_crops = fill_along_views(start, paint, self.views, seed, sample_one_view)
        contrast = None
        if match and levels is not None:
            painted, contrast = match_case_contrast(start, painted, mask, paint, brain, properties, levels, relative,
                                                    by_volume, model.description.get("wm_channel"))
            if contrast is not None:  # what the model painted and what it was set to, for the user's log
                logger.info("lesion contrast matched (model's [-1, 1] space): %s", contrast.as_dict())
        painted_on_grid = sitk.GetArrayFromImage(restore_to_original(paint, properties, None, is_mask=True)) > 0
        changed = region & painted_on_grid
        outputs = []
        for channel, image in enumerate(images):
            output = painted[channel] if standardisation is None else standardisation.invert(painted[channel], channel)
            restored = sitk.GetArrayFromImage(restore_to_original(output, properties, channel))
            values = sitk.GetArrayFromImage(image)
            values[changed] = cast_to_dtype(restored[changed], values.dtype)
            outputs.append(array_to_image(values, geometry))
        return PredictionResult(outputs, changed, num_crops, self.network_calls - calls_before, contrast)

    def _white_matter(self, image: np.ndarray, brain: np.ndarray, paint: np.ndarray) -> np.ndarray | None:
        """The warm start's white matter: a three-class split of the model's T1-weighted channel in the brain
        (the painted voxels left out of the clustering); None when the model has no such channel."""
        wm_channel = self.model.description.get("wm_channel")
        if wm_channel is None:
            return None
        return derive_wm_mask(image[wm_channel], brain, paint)

    def _with_coarse_lesions(self, arrays: dict[str, np.ndarray], properties: dict, mask: np.ndarray,
                             paint: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The preprocessed image (C, Z, Y, X) with a coarse lesion painted into the mask (uncond_synth).

        Painted on the whole volume, not per crop, so the soft edge is the same in every crop. The
        lesion covers the voxels mostly inside the undilated mask (any it touches, for a lesion
        thinner than a preprocessed voxel); the dilated rim is left for the model to blend.
        """
        lesion = coverage_in_preprocessed_space(mask, properties)
        core = (lesion >= 0.5) & paint
        if not core.any():
            core = (lesion > COVERAGE_THRESHOLD) & paint
        painted = paint_coarse_lesion(torch.from_numpy(arrays["image"])[None], torch.from_numpy(core)[None, None],
                                      torch.from_numpy(values))
        return painted[0].numpy()

    @torch.no_grad()
    def _sample(self, image: np.ndarray, paint: np.ndarray, plan: RoiPlan, seed: int, progress: bool,
                lesion_levels: np.ndarray | None = None) -> np.ndarray:
        """Sample every crop of ``plan`` starting from ``image`` (C, Z, Y, X) in [-1, 1] (for uncond_synth
        holding the coarse lesions); returns ``image`` with the owned voxels replaced. ``lesion_levels``
        (C,): the lesion contrast a cued conditional model is told (ignored by the other tasks)."""
        model, device, task = self.model, self.model.device, self.model.task
        generator = torch.Generator().manual_seed(int(seed))
        result = image.copy()
        draws = self.num_samples
        # The K draws of a crop run side by side, so a call holds batch_size // K crops: the memory of a
        # call stays what batch_size promises, and on a CPU a smaller batch is also faster per sample
        # (benchmarks/prediction_speed.py).
        batches = group_batches(plan.crops, max(1, self.batch_size // draws))
        for batch in tqdm(batches, desc="sampling", unit="batch", disable=not progress, leave=False):
            known = torch.from_numpy(np.stack([extract(image, crop, BACKGROUND) for crop in batch])).to(device)
            mask = torch.from_numpy(np.stack([extract(paint[None], crop, 0) for crop in batch])).to(device)
            if not model.is_pseudo3d:  # (B, C, 1, H, W) -> (B, C, H, W)
                known, mask = known[:, :, 0], mask[:, :, 0]
            mask = mask.float()
            if draws > 1:  # the K draws of each crop run side by side in one batch
                known = known.repeat(draws, *([1] * (known.dim() - 1)))
                mask = mask.repeat(draws, *([1] * (mask.dim() - 1)))
            contrast = None if lesion_levels is None else torch.from_numpy(lesion_levels)[None].to(device)
            condition = task.condition(known, mask, contrast)
            model_fn = self._model_fn(condition)
            sample = task.sample(self.sampler, model_fn, known, mask, generator, t0=self.t0)
            sample = sample.float().reshape(draws, len(batch), *sample.shape[1:]).mean(dim=0).cpu().numpy()
            if not model.is_pseudo3d:
                sample = sample[:, :, None]
            for crop, values in zip(batch, sample):
                paste_owned(result, values, plan, crop)
        return result

    def _model_fn(self, condition: torch.Tensor | None) -> Any:
        network, task, device = self.model.network, self.model.task, self.model.device

        def model_fn(x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
            self.network_calls += 1
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                return network(task.model_input(x, condition), timesteps).float()

        return model_fn
