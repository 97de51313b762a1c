"""The four tasks, one definition each: what the network sees, what it paints and what the loss counts.

A task differs from another only here; the trainer and the predictor never branch on a task's name.

===============  ===========  ==========================================================================
task             conditional  training masks, target and loss
===============  ===========  ==========================================================================
``cond_fill``    yes          paint healthy tissue inside a mask drawn by the MaskSampler (real lesion
                              shapes moved onto healthy WM, or synthetic WM ellipsoids). Real lesions
                              are voided in the conditioning and excluded from the loss, so the
                              filler never learns to paint lesions. The loss counts only the painted
                              region: the known region is pasted back at prediction, and counting it
                              would drown the painting signal in a trivial copying task.
``uncond_fill``  no           an unconditional model of healthy anatomy (real lesions excluded from the
                              loss); inpainting happens at sampling time with RePaint.
``cond_synth``   yes          paint lesion tissue inside the real (dilated) lesions (the loss counts
                              only that region, as for cond_fill).
``uncond_synth`` no           an unconditional model of MS anatomy, lesions included.
===============  ===========  ==========================================================================

Tensors are ``(B, C, H, W)`` for ``2d`` and ``(B, C, D, H, W)`` for ``p3d``; images lie in [-1, 1];
masks are 0/1 with one channel (the same region for every modality).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ldiff.masks import MaskSampler, dilate_mask

# Value of voided voxels in the conditioning image, in the [-1, 1] intensity space (as the thesis).
VOID_VALUE = 0.0


@dataclass(frozen=True)
class Task:
    """One of the four tasks; see the module docstring."""

    name: str
    conditional: bool
    paints_lesions: bool
    description: str
    # What prediction runs when the user names no sampler: ``(key, value)`` pairs of sampler name,
    # steps and draws averaged per crop (see ``default_sampling``).
    sampling_defaults: tuple[tuple[str, object], ...] = ()

    @property
    def default_sampling(self) -> dict[str, object]:
        """``{"sampler", "steps", "num_samples"}`` used when the user chooses none (module table)."""
        return dict(self.sampling_defaults)

    @property
    def needs_real_lesions(self) -> bool:
        """Synthesis learns from real lesions; filling can train on healthy scans with synthetic masks."""
        return self.paints_lesions

    def in_channels(self, num_modalities: int) -> int:
        """Network input channels: noisy image (+ voided image and mask when conditional)."""
        return 2 * num_modalities + 1 if self.conditional else num_modalities

    # ---- the conditioning (training and prediction) --------------------------------------------
    def condition(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """``cat(voided image, mask)`` along channels, or None for unconditional tasks.

        Args:
            image: (B, C, ...) in [-1, 1], the known image (its values inside ``mask`` are discarded).
            mask: (B, 1, ...) 0/1, the region to paint.
        """
        if not self.conditional:
            return None
        voided = image * (1 - mask) + VOID_VALUE * mask
        return torch.cat([voided, mask.to(image.dtype)], dim=1)

    def model_input(self, noisy_image: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        """What the network receives at one timestep: (B, in_channels, ...)."""
        return noisy_image if condition is None else torch.cat([noisy_image, condition], dim=1)

    # ---- the training masks (data loader, numpy) -----------------------------------------------
    def training_masks(self, lesion: np.ndarray, wm: np.ndarray, brain: np.ndarray, rng: np.random.Generator,
                       mask_sampler: MaskSampler, dilation_radius: int, spacing: tuple[float, float, float]
                       ) -> tuple[np.ndarray, np.ndarray]:
        """The region to paint and the voxels that count in the loss, for one sample.

        Args:
            lesion, wm, brain: (H, W) for a 2D slice or (D, H, W) for a stack; nonzero = inside.
            rng: the sample's random generator.
            mask_sampler: draws synthetic / transplanted lesion masks inside WM.
            dilation_radius: the plan's mask dilation in voxels (lesion borders are abnormal too).
            spacing: (x, y, z) mm of the arrays.

        Returns:
            (paint_mask, loss_mask): float32 arrays of the input's shape with values 0/1.
        """
        real = dilate_mask(lesion.astype(bool), dilation_radius, spacing) & brain.astype(bool) if lesion.any() else np.zeros(lesion.shape, bool)
        if self.paints_lesions:
            paint = real if self.conditional else np.zeros_like(real)
            loss = paint.copy() if self.conditional else np.ones(real.shape, bool)
        else:
            if self.conditional:
                draw = mask_sampler.sample_slice_mask if lesion.ndim == 2 else mask_sampler.sample_volume_mask
                paint = draw(wm.astype(bool), brain.astype(bool), rng, forbidden=real) | real
                loss = paint & ~real
            else:
                paint = np.zeros_like(real)
                loss = ~real
        return paint.astype(np.float32), loss.astype(np.float32)


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        # Filling: the mean of 4 DPM-Solver++ draws of 3 steps each, an estimate of the posterior mean.
        # Chosen by measurement on real patients and phantoms (documentation/benchmark.md): the mean
        # of 4 draws scores higher than one draw, and more steps per draw bought nothing measurable.
        Task("cond_fill", True, False, "conditional lesion filling: paints healthy tissue inside a mask",
             (("sampler", "dpm_solver"), ("steps", 3), ("num_samples", 4))),
        Task("uncond_fill", False, False, "unconditional healthy-anatomy model; fills with RePaint at sampling",
             (("sampler", "repaint"), ("steps", 50), ("num_samples", 1))),
        # Synthesis: one draw, so that lesions keep a realistic texture (a mean of draws is smooth).
        Task("cond_synth", True, True, "conditional lesion synthesis: paints lesions inside a mask",
             (("sampler", "ddim"), ("steps", 25), ("num_samples", 1))),
        Task("uncond_synth", False, True, "unconditional MS-anatomy model; synthesises by partial noising",
             (("sampler", "repaint"), ("steps", 50), ("num_samples", 1))),
    )
}


def get_task(name: str) -> Task:
    """The task called ``name``; ValueError listing the four names otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task '{name}': choose one of {', '.join(TASKS)}")
    return TASKS[name]
