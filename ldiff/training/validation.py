"""Validation during training: inpaint a fixed set of held-out samples and score them inside the mask.

Every task is scored the same way, as inpainting of the sample's paint mask, so the numbers of a run
are comparable from one validation to the next:

- conditional tasks sample with their own conditioning (voided image + mask) and a fast sampler
  (DDIM, 25 steps, eta 0 by default);
- unconditional tasks have no conditioning input, and RePaint lives elsewhere, so they use the
  simplest inpainting that still shows whether the model knows the anatomy: "replacement"
  (Song et al. 2021, score-SDE imputation). Before every network call the known region
  (outside the mask) of ``x_t`` is replaced by the ground truth noised to ``t`` with fresh noise;
  the unknown region follows the DDIM update. It harmonises worse than RePaint at the mask border,
  so these numbers are a lower bound of what RePaint will reach.

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

from ldiff.diffusion.inpainting import conditional_inpaint
from ldiff.diffusion import NoiseSchedule, build_sampler
from ldiff.tasks import Task

DEFAULT_VALIDATION_SAMPLER = {"name": "ddim", "num_inference_steps": 25, "eta": 0.0}
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


class Validator:
    """Scores a network on fixed held-out samples (see the module docstring).

    Args:
        samples: ``{"image": (N, C, ...) in [-1, 1], "paint_mask": (N, 1, ...) 0/1, "loss_mask": (N, 1, ...)}``
            as made by ``validation_samples``; metrics count ``paint_mask * loss_mask``.
        task: the task being trained (decides conditional sampling vs replacement inpainting).
        schedule: the training noise schedule.
        sampler_config: a :func:`ldiff.diffusion.build_sampler` config (default DDIM, 25 steps).
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
        self.sampler = build_sampler(schedule, dict(sampler_config or DEFAULT_VALIDATION_SAMPLER))
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

            # The same inpainting as prediction: the known region replaced by the noised truth before
            # every step (unconditional models see it only that way), and pasted back at the end.
            result = conditional_inpaint(self.sampler, model_fn, image, mask, generator, replace_known=True)
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
