"""Validation during training: paint a fixed set of held-out samples as prediction would, score inside the mask.

Every task is scored the way prediction runs it (``task.sample``), with fewer network calls
(``task.validation_sampling``, or ``validation_sampler`` of the training settings):

- conditional tasks sample with their own conditioning (voided image + mask), DDIM 25 steps, eta 0;
- uncond_fill inpaints with RePaint, at validation with one pass per step (25 calls: the known region
  replaced by the truth noised to ``t`` before every call);
- uncond_synth synthesises by partial noising, as prediction: a coarse lesion is painted into the
  mask, at the sample's own median lesion intensity per channel (the truth's, so the score measures
  what the model makes of a coarse lesion, not whether the intensity was guessed), noised to ``t0``
  and denoised with the short RePaint walk.

The same paint masks as prediction: for the fill tasks masks drawn in healthy WM joined with the
dilated real lesions, for synthesis the dilated real lesions (``Task.prediction_masks``).

Metrics, on images in [-1, 1] (as the thesis): SSIM from skimage on every 2D slice of every channel
(7x7 window, ``data_range = 2``, full map), averaged over the scored pixels; PSNR ``10 log10(4 / MSE)``
with the MSE over the scored voxels of all channels. The scored region is ``paint_mask * loss_mask``:
the whole paint mask for synthesis, the paint mask minus the real lesions for filling (a lesion has
no healthy ground truth). Both are computed per sample and averaged over the samples whose scored
region is not empty. The initial noise is the same at each
validation (a fixed seed), so changes between validations come from the weights alone.
"""
from __future__ import annotations


import numpy as np
import torch
from skimage.metrics import structural_similarity
from torch import nn

import logging
from typing import Any

from ldiff.diffusion import NoiseSchedule, paint_coarse_lesion
from ldiff.errors import LdiffError
from ldiff.tasks import Task

logger = logging.getLogger("ldiff")
# Reported instead of infinity when a prediction equals the reference inside the mask.
MAX_PSNR_DB = 100.0


def masked_ssim(reference: np.ndarray, prediction: np.ndarray, mask: np.ndarray) -> float:
    """Mean of the SSIM maps of all 2D slices over the mask's pixels.

    Args:
        reference, prediction: (C, H, W) or (C, D, H, W) in [-1, 1].
        mask: (1, ...) with the spatial shape of the images, 0/1.

    Returns:
        the mean SSIM in the mask, in [-1, 1]; NaN for an empty mask.
    """
    inside = mask[0].astype(bool)
    if not inside.any():
        return float("nan")
    reference = reference.reshape(reference.shape[0], -1, *reference.shape[-2:]).astype(np.float64)
    prediction = prediction.reshape(prediction.shape[0], -1, *prediction.shape[-2:]).astype(np.float64)
    inside = inside.reshape(-1, *inside.shape[-2:])
    total, count = 0.0, 0
    for channel in range(reference.shape[0]):
        for index in range(reference.shape[1]):
            if not inside[index].any():
                continue  # a slice of a stack without mask pixels adds nothing
            _, ssim_map = structural_similarity(reference[channel, index], prediction[channel, index],
                                                data_range=2.0, full=True)
            total += float(ssim_map[inside[index]].sum())
            count += int(inside[index].sum())
    return total / count


def masked_psnr(reference: np.ndarray, prediction: np.ndarray, mask: np.ndarray) -> float:
    """``10 log10(4 / MSE)`` over the mask's voxels of all channels (peak-to-peak 2 in [-1, 1]); NaN if empty."""
    inside = np.broadcast_to(mask.astype(bool), reference.shape)
    if not inside.any():
        return float("nan")
    mse = float(np.mean((reference[inside].astype(np.float64) - prediction[inside].astype(np.float64)) ** 2))
    return MAX_PSNR_DB if mse <= 4.0 * 10 ** (-MAX_PSNR_DB / 10) else 10.0 * np.log10(4.0 / mse)


def validation_sampler(task: Task, schedule: NoiseSchedule, config: dict[str, Any] | None) -> Any:
    """The task's sampler for validation: its ``validation_sampling`` with ``config``'s overrides.

    A sampler the task cannot use (e.g. a DDIM config saved by an older run of an unconditional task)
    gives a warning and the task's own sampler at the configured number of steps.
    """
    defaults, config = dict(task.validation_sampling), dict(config or {})
    steps = config.get("num_inference_steps", defaults.get("steps"))
    options = {"eta": float(config.get("eta", 0.0)), "jump_length": config.get("jump_length", defaults.get("jump_length")),
               "resamplings": config.get("num_resamplings", defaults.get("resamplings"))}
    name = str(config.get("name", defaults["sampler"]))
    try:
        return task.build_sampler(schedule, name, steps, **options)
    except LdiffError as error:
        logger.warning("validation sampler: %s; validating with %s instead", error, defaults["sampler"])
        return task.build_sampler(schedule, str(defaults["sampler"]), steps, **options)


def with_truth_coarse_lesions(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``image`` (B, C, ...) with a coarse lesion painted into ``mask`` at each sample's median truth in it."""
    inside = mask.bool().expand_as(image)
    medians = torch.stack([
        torch.stack([channel[region].median() if region.any() else channel.new_tensor(0.0)
                     for channel, region in zip(sample, sample_mask)])
        for sample, sample_mask in zip(image, inside)])
    return paint_coarse_lesion(image, mask, medians)


class Validator:
    """Scores a network on fixed held-out samples (see the module docstring).

    Args:
        samples: ``{"image": (N, C, ...) in [-1, 1], "paint_mask": (N, 1, ...) 0/1, "loss_mask": (N, 1, ...)}``
            as made by ``validation_samples``; metrics count ``paint_mask * loss_mask``.
        task: the task being trained: it samples as at prediction (module docstring).
        schedule: the training noise schedule.
        sampler_config: overrides of the task's validation sampling: ``name``, ``num_inference_steps``,
            ``eta``, ``jump_length``, ``num_resamplings`` (None: the task's ``validation_sampling``).
        device: where the model runs; bf16 autocast is used on CUDA.
        batch_size: samples per network call.
        seed: seeds the initial noise (the same at every validation).
    """

    def __init__(self, samples: dict[str, np.ndarray], task: Task, schedule: NoiseSchedule,
                 sampler_config: dict | None = None, device: torch.device = torch.device("cpu"),
                 batch_size: int = 4, seed: int = 0) -> None:
        self.images = np.asarray(samples["image"], dtype=np.float32)
        self.masks = np.asarray(samples["paint_mask"], dtype=np.float32)
        # Scored where the true answer is known: inside the paint mask but outside real lesions for
        # the filling tasks (whose loss mask excludes them), the whole paint mask for synthesis.
        self.metric_masks = self.masks * np.asarray(samples.get("loss_mask", np.ones_like(self.masks)), dtype=np.float32)
        self.task = task
        self.sampler = validation_sampler(task, schedule, sampler_config)
        self.device = torch.device(device)
        self.batch_size = max(1, int(batch_size))
        self.seed = int(seed)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @torch.no_grad()
    def predict(self, model: nn.Module) -> np.ndarray:
        """Inpaint every sample; returns (N, C, ...) float32 in [-1, 1]."""
        model.eval()
        generator = torch.Generator().manual_seed(self.seed)
        outputs = []
        for start in range(0, len(self), self.batch_size):
            image = torch.from_numpy(self.images[start:start + self.batch_size]).to(self.device)
            mask = torch.from_numpy(self.masks[start:start + self.batch_size]).to(self.device)
            condition = self.task.condition(image, mask)

            def model_fn(x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                    return model(self.task.model_input(x, condition), timesteps).float()

            start = self.task.starting_image(image, lambda: with_truth_coarse_lesions(image, mask))
            result = self.task.sample(self.sampler, model_fn, start, mask, generator)
            outputs.append(result.float().cpu().numpy())
        return np.concatenate(outputs, axis=0)

    def evaluate(self, model: nn.Module) -> dict[str, float | int | None]:
        """``{"ssim", "psnr", "num_samples"}``: means over samples with a non-empty mask (None if none)."""
        predictions = self.predict(model)
        ssims, psnrs = [], []
        for reference, prediction, mask in zip(self.images, predictions, self.metric_masks):
            if not mask.any():
                continue
            ssims.append(masked_ssim(reference, prediction, mask))
            psnrs.append(masked_psnr(reference, prediction, mask))
        return {
            "ssim": float(np.mean(ssims)) if ssims else None,
            "psnr": float(np.mean(psnrs)) if psnrs else None,
            "num_samples": len(ssims),
        }
