"""What every task shares, and the questions the rest of ldiff asks a task.

A :class:`Task` answers, for training: what the network sees (:meth:`Task.condition`,
:meth:`Task.model_input`), which region it paints and which voxels the loss counts
(:meth:`Task.training_masks`), whether it needs real lesions and whether its masks borrow real
lesion shapes; for prediction and validation: the region it paints and the voxels with a known answer
(:meth:`Task.prediction_masks`), which samplers it can use (:meth:`Task.build_sampler`), what it
starts from (:meth:`Task.starting_image`) and how it samples (:meth:`Task.sample`). The three ways
of sampling are the subclasses in ``ldiff.tasks.sampling``.

The module imports neither torch nor the diffusion code at import time, so command-line parsers can
list the tasks without starting torch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ldiff.masks import MaskSampler, dilate_mask

if TYPE_CHECKING:  # pragma: no cover
    import torch

# Value of voided voxels in the conditioning image, in the [-1, 1] intensity space (as the thesis).
VOID_VALUE = 0.0


@dataclass(frozen=True)
class Task:
    """One of the four tasks (module docstring); subclasses say how it samples.

    ``conditional``: the network sees the voided image and the mask. ``paints_lesions``: it paints
    lesions (synthesis) rather than healthy tissue (filling). ``sampling_defaults``: ``(key, value)``
    pairs of sampler name, steps and draws averaged per crop used when the user names none.
    ``validation_sampling``: the same for the validation during training (cheaper, same method).
    ``lesion_level_cue``: conditional synthesis only (:meth:`with_lesion_level_cue`): the voided region
    holds, per channel, the lesion's mean intensity instead of :data:`VOID_VALUE`, so one model paints
    lesions as dark or as bright as asked (each scan's lesions differ; without the cue the model
    can only paint an average lesion). In training that is the truth's own lesion mean; at
    prediction it is the mean of the tissue around the mask in the crop plus the lesion contrast asked
    for, so a lesion is as much darker (or brighter) than its own surroundings as the patient's are.
    """

    name: str
    conditional: bool
    paints_lesions: bool
    description: str
    sampling_defaults: tuple[tuple[str, object], ...] = ()
    validation_sampling: tuple[tuple[str, object], ...] = ()
    lesion_level_cue: bool = False

    # ---- what the task is ----------------------------------------------------------------------
    @property
    def default_sampling(self) -> dict[str, object]:
        """``{"sampler", "steps", "num_samples"}`` used when the user chooses none."""
        return dict(self.sampling_defaults)

    @property
    def verb(self) -> str:
        """``"fill"`` or ``"synthesise"``: what the Python API calls this task's work."""
        return "synthesise" if self.paints_lesions else "fill"

    @property
    def needs_real_lesions(self) -> bool:
        """Synthesis learns from real lesions; filling can train on healthy scans with synthetic masks."""
        return self.paints_lesions

    @property
    def borrows_lesion_shapes(self) -> bool:
        """Its training masks are drawn from the training cases' real lesion shapes (the fill tasks)."""
        return not self.paints_lesions

    @property
    def standardises_intensities(self) -> bool:
        """Prediction maps the input's brain histogram onto the training data's by default
        (:mod:`ldiff.preprocessing.standardisation`): the fill tasks. Synthesis sets its lesions' contrast
        in the model's space (:mod:`ldiff.inference.contrast_matching`), which a nonlinear map would bend
        on the way back, so it standardises only when asked."""
        return not self.paints_lesions

    @property
    def takes_lesion_intensity(self) -> bool:
        """Prediction accepts ``--lesion-intensity``: tasks that start from a coarse lesion, and conditional
        synthesis trained with the lesion-level cue."""
        return self.lesion_level_cue

    @property
    def lesion_intensity_is_contrast(self) -> bool:
        """The lesion intensity it takes is a contrast to each lesion's surroundings (cued cond_synth,
        :meth:`condition`), not one absolute level for the scan (uncond_synth's coarse lesion)."""
        return self.lesion_level_cue

    @property
    def can_match_lesion_contrast(self) -> bool:
        """Prediction can set the painted lesions' contrast to their surroundings after sampling
        (:mod:`ldiff.inference.contrast_matching`): conditional synthesis, whose output differs from the
        healthy input only by the lesions it painted."""
        return self.conditional and self.paints_lesions

    @property
    def accepts_lesion_level_cue(self) -> bool:
        """Only conditional synthesis can be told how dark or bright to paint (the cue sits in the voided image)."""
        return self.conditional and self.paints_lesions

    def with_lesion_level_cue(self, enabled: bool) -> "Task":
        """This task with (or without) the lesion-level cue; ValueError for a task that cannot take it."""
        if enabled and not self.accepts_lesion_level_cue:
            raise ValueError(f"the lesion-level cue is for conditional synthesis (cond_synth), not {self.name}")
        return dataclasses.replace(self, lesion_level_cue=bool(enabled))

    def in_channels(self, num_modalities: int) -> int:
        """Network input channels: noisy image (+ voided image and mask when conditional)."""
        return 2 * num_modalities + 1 if self.conditional else num_modalities

    # ---- the conditioning (training and prediction) --------------------------------------------
    def condition(self, image: "torch.Tensor", mask: "torch.Tensor",
                  lesion_contrast: "torch.Tensor | None" = None) -> "torch.Tensor | None":
        """``cat(voided image, mask)`` along channels, or None for unconditional tasks.

        The voided region holds :data:`VOID_VALUE`, or with the lesion-level cue the lesion's mean
        intensity per channel: in training (``lesion_contrast`` None) measured from ``image`` inside
        the mask's interior (the truth's own lesion, :func:`lesion_core_level`); at prediction the mean
        of the known tissue around the mask (:func:`surrounding_level`) plus ``lesion_contrast``.

        Args:
            image: (B, C, ...) in [-1, 1], the known image (its values inside ``mask`` are discarded).
            mask: (B, 1, ...) 0/1, the region to paint.
            lesion_contrast: (C,), (1, C) or (B, C): the lesion's mean minus its surroundings' mean in
                the [-1, 1] space (negative = darker); used only with the cue.
        """
        import torch

        if not self.conditional:
            return None
        fill: "torch.Tensor | float" = VOID_VALUE
        if self.lesion_level_cue:
            if lesion_contrast is None:
                level = lesion_core_level(image, mask)
            else:
                contrast = torch.as_tensor(lesion_contrast, dtype=image.dtype, device=image.device)
                level = (surrounding_level(image, mask) + contrast.reshape(-1, image.shape[1])).clamp(-1.0, 1.0)
            fill = level.reshape(*level.shape, *([1] * (image.dim() - 2)))
        voided = image * (1 - mask) + fill * mask
        return torch.cat([voided, mask.to(image.dtype)], dim=1)

    def model_input(self, noisy_image: "torch.Tensor", condition: "torch.Tensor | None") -> "torch.Tensor":
        """What the network receives at one timestep: (B, in_channels, ...)."""
        import torch

        return noisy_image if condition is None else torch.cat([noisy_image, condition], dim=1)

    # ---- masks (data loader, numpy) -------------------------------------------------------------
    def prediction_masks(self, lesion: np.ndarray, wm: np.ndarray, brain: np.ndarray, rng: np.random.Generator,
                         mask_sampler: MaskSampler, dilation_radius: int, spacing: tuple[float, float, float]
                         ) -> tuple[np.ndarray, np.ndarray]:
        """The region the task paints at prediction and, inside it, the voxels whose answer is known.

        Filling: masks drawn by the MaskSampler in healthy WM (never over real lesions) joined with the
        dilated real lesions, which must be voided too; the known answer is the healthy tissue, so the
        real lesions are excluded. Synthesis: the dilated real lesions, all known.

        Args:
            lesion, wm, brain: (H, W) for a 2D slice or (D, H, W) for a stack; nonzero = inside.
            rng: the sample's random generator.
            mask_sampler: draws synthetic / transplanted lesion masks inside WM.
            dilation_radius: the plan's mask dilation in voxels (lesion borders are abnormal too).
            spacing: (x, y, z) mm of the arrays.

        Returns:
            (paint_mask, known_mask): float32 arrays of the input's shape with values 0/1.
        """
        real = self._dilated_lesions(lesion, brain, dilation_radius, spacing)
        if self.paints_lesions:
            return real.astype(np.float32), real.astype(np.float32)
        draw = mask_sampler.sample_slice_mask if lesion.ndim == 2 else mask_sampler.sample_volume_mask
        paint = draw(wm.astype(bool), brain.astype(bool), rng, forbidden=real) | real
        return paint.astype(np.float32), (paint & ~real).astype(np.float32)

    def training_masks(self, lesion: np.ndarray, wm: np.ndarray, brain: np.ndarray, rng: np.random.Generator,
                       mask_sampler: MaskSampler, dilation_radius: int, spacing: tuple[float, float, float]
                       ) -> tuple[np.ndarray, np.ndarray]:
        """The region to paint and the voxels that count in the loss, for one training sample.

        Conditional tasks train on what they do at prediction (:meth:`prediction_masks`; the loss counts
        only the painted region: the known region is pasted back at prediction, and counting it would
        drown the painting signal in a trivial copying task). Unconditional tasks paint nothing while
        training: they learn the whole image, healthy anatomy without its real lesions (uncond_fill)
        or MS anatomy with them (uncond_synth). Arguments as :meth:`prediction_masks`.
        """
        if self.conditional:
            return self.prediction_masks(lesion, wm, brain, rng, mask_sampler, dilation_radius, spacing)
        real = self._dilated_lesions(lesion, brain, dilation_radius, spacing)
        loss = np.ones(real.shape, bool) if self.paints_lesions else ~real
        return np.zeros(real.shape, np.float32), loss.astype(np.float32)

    @staticmethod
    def _dilated_lesions(lesion: np.ndarray, brain: np.ndarray, radius: int, spacing: tuple[float, float, float]
                         ) -> np.ndarray:
        if not lesion.any():
            return np.zeros(lesion.shape, bool)
        return dilate_mask(lesion.astype(bool), radius, spacing) & brain.astype(bool)

    # ---- sampling (prediction and validation) ---------------------------------------------------
    def build_sampler(self, schedule: Any, name: str, steps: int | None, eta: float = 0.0,
                      jump_length: int | None = None, resamplings: int | None = None) -> Any:
        """The sampler object this task samples with; LdiffError (one sentence) for one it cannot use."""
        raise NotImplementedError

    @property
    def takes_t0(self) -> bool:
        """Sampling can start from a prepared image noised to a timestep ``t0`` (partial noising, SDEdit):
        uncond_synth (a coarse lesion) and cond_fill (a smooth fill, the warm start)."""
        return False

    @property
    def warm_starts(self) -> bool:
        """Its ``t0`` is a warm start that it can also do without (cond_fill: ``t0`` None walks from pure
        noise); uncond_synth always starts from its coarse lesion."""
        return False

    def starting_image(self, image: np.ndarray, with_coarse_lesions: Callable[[], np.ndarray],
                       with_smooth_fill: Callable[[], np.ndarray] | None = None,
                       t0: int | float | None = None) -> np.ndarray:
        """What sampling starts from: the image itself; (synthesis by partial noising) the image with
        coarse lesions painted in, which ``with_coarse_lesions()`` makes; or (warm-started filling, ``t0``
        not None) the image with a smooth fill in the mask, which ``with_smooth_fill()`` makes."""
        return image

    def sample(self, sampler: Any, model_fn: Callable, known: "torch.Tensor", mask: "torch.Tensor",
               generator: "torch.Generator", t0: int | float | None = None) -> "torch.Tensor":
        """Paint ``mask`` in ``known`` (B, C, ...) with ``model_fn(x_t, t)``; the known region is pasted back.

        ``t0``: the starting noise level of partial noising (:attr:`takes_t0`; ignored by the others):
        ``known`` (the :meth:`starting_image`) is noised to it and denoised from there. None: the
        task's own start (pure noise, or for uncond_synth the thesis's ``t0``).
        """
        raise NotImplementedError


def lesion_core_level(image: "torch.Tensor", mask: "torch.Tensor") -> "torch.Tensor":
    """Mean of ``image`` over the interior of ``mask``, per sample and channel: (B, C).

    The interior is the mask eroded by one voxel in-plane (the dilated rim of a lesion mask is mostly
    normal tissue), or the whole mask where erosion leaves nothing; 0 for an empty mask: in training,
    the level the truth's own lesion has, which the cue tells the network.

    Args:
        image: (B, C, ..., H, W); mask: (B, 1, ..., H, W) 0/1.
    """
    import torch
    import torch.nn.functional as F

    planes = mask.reshape(-1, 1, *mask.shape[-2:]).to(image.dtype)
    interior = (1 - F.max_pool2d(1 - planes, 3, stride=1, padding=1)).reshape(mask.shape)
    has_interior = interior.flatten(1).sum(1) > 0
    region = torch.where(has_interior.reshape(-1, *([1] * (mask.dim() - 1))), interior, mask.to(image.dtype))
    weights = region.flatten(2)  # (B, 1, N)
    return (image.flatten(2) * weights).sum(-1) / weights.sum(-1).clamp(min=1.0)


# The ring of known tissue around a mask whose mean is a lesion's surroundings (in-plane voxel steps):
# beyond the partial-volume rim of the dilated mask, near enough to be the same tissue.
SURROUNDING_RING = (1, 3)


def surrounding_level(image: "torch.Tensor", mask: "torch.Tensor") -> "torch.Tensor":
    """Mean of ``image`` over an in-plane ring around ``mask`` (more than ``SURROUNDING_RING[0]`` and at most
    ``SURROUNDING_RING[1]`` voxel steps away, chessboard distance), per sample and channel: (B, C).
    Where the ring is empty (no mask, or a mask filling the crop): the mean outside the mask.

    Args:
        image: (B, C, ..., H, W) in [-1, 1]; mask: (B, 1, ..., H, W) 0/1.
    """
    import torch
    import torch.nn.functional as F

    inner, outer = SURROUNDING_RING
    planes = mask.reshape(-1, 1, *mask.shape[-2:]).to(image.dtype)
    near = F.max_pool2d(planes, 2 * inner + 1, stride=1, padding=inner)
    far = F.max_pool2d(planes, 2 * outer + 1, stride=1, padding=outer)
    ring = (far - near).reshape(mask.shape)
    outside = 1 - mask.to(image.dtype)
    has_ring = ring.flatten(1).sum(1) > 0
    region = torch.where(has_ring.reshape(-1, *([1] * (mask.dim() - 1))), ring, outside)
    weights = region.flatten(2)
    return (image.flatten(2) * weights).sum(-1) / weights.sum(-1).clamp(min=1.0)

