"""The one sampling loop of ldiff, and the pieces every sampler and inpainter shares.

Every way ldiff samples is a walk over timesteps (:func:`run_walk`): plain sampling from noise
(DDPM, DDIM, DPM-Solver++), inpainting with a conditional model (the known region replaced by the
noised truth after every step), and RePaint (the same replacement, plus jumps back up the noise
levels). The samplers differ only in their moves and in their reverse update (``step``).

Conventions:

- images are ``(B, C, H, W)`` or ``(B, C, D, H, W)`` in ``[-1, 1]``;
- a mask is ``(B, 1, ...)`` (or ``(1, 1, ...)`` for the whole batch) with values 0 and 1, ``1`` marking
  the region to paint (the unknown region) and ``0`` the known region; it broadcasts over channels;
- ``t = -1`` (:data:`FINAL_TIMESTEP`) is the clean image (``abar = 1``).

The reference thesis regenerated whole slices with its conditional models and never pasted the
known region back, so voxels outside the mask changed. A walk with a known image ends with
:func:`paste_back`, which makes the result equal the known image bit for bit outside the mask.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from ldiff.diffusion.schedule import NoiseSchedule

FINAL_TIMESTEP = -1

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# (t_from, t_to): t_to < t_from is a reverse step (one network call), t_to > t_from a re-noising jump.
Move = tuple[int, int]
# step(model_output, t, t_prev, x_t, generator) -> x_{t_prev}
StepFn = Callable[[torch.Tensor, int, int, torch.Tensor, "torch.Generator | None"], torch.Tensor]


def standard_normal_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``, drawn on the generator's device then moved to ``x``'s.

    Drawing on the generator's device makes a seeded CPU generator give the same noise whether the
    model runs on a CPU or a GPU.
    """
    device = generator.device if generator is not None else x.device
    noise = torch.randn(x.shape, generator=generator, device=device, dtype=torch.float32)
    return noise.to(device=x.device, dtype=x.dtype)


def validate_mask(mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Check a paint mask against its image and return it as a boolean tensor on the image's device.

    Args:
        mask: ``(B, 1, ...)`` or ``(1, 1, ...)`` with values 0/1 (bool, integer or floating point).
        image: ``(B, C, ...)``, the image the mask belongs to.

    Returns:
        bool tensor of the mask's shape, ``True`` = region to paint.

    Raises:
        ValueError: for a shape that does not broadcast as described, or values other than 0 and 1
            (a soft mask would blend the known region into the result, so it is refused rather than
            silently thresholded).
    """
    if image.ndim not in (4, 5):
        raise ValueError(f"images must be (B, C, H, W) or (B, C, D, H, W), got shape {tuple(image.shape)}.")
    if mask.ndim != image.ndim or mask.shape[1] != 1 or mask.shape[0] not in (1, image.shape[0]) \
            or mask.shape[2:] != image.shape[2:]:
        raise ValueError(
            f"mask must have shape (B, 1, ...) = ({image.shape[0]}, 1, {', '.join(map(str, image.shape[2:]))}) "
            f"or a batch of 1, got {tuple(mask.shape)}."
        )
    if mask.dtype != torch.bool:
        if not torch.all((mask == 0) | (mask == 1)):
            raise ValueError("mask values must be 0 or 1.")
        mask = mask != 0
    return mask.to(image.device)


def paste_back(generated: torch.Tensor, known_image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``generated`` inside the mask, ``known_image`` (bit for bit) outside.

    Args:
        generated, known_image: ``(B, C, ...)`` of the same shape.
        mask: boolean ``(B, 1, ...)``, ``True`` = painted region (see :func:`validate_mask`).

    Returns:
        ``(B, C, ...)`` in the dtype of ``generated``.
    """
    # torch.where rather than a blend: mask * x + (1 - mask) * known is not exact when x holds inf or NaN.
    return torch.where(mask, generated, known_image.to(generated.dtype))


def noise_known_region(
    schedule: NoiseSchedule, known_image: torch.Tensor, t: int, generator: torch.Generator | None
) -> torch.Tensor:
    """A fresh sample of ``q(x_t | x0 = known_image)``; ``t = -1`` returns the known image itself.

    Args:
        known_image: ``(B, C, ...)`` in ``[-1, 1]``.
        t: a training timestep in ``[0, T)`` or ``-1``.

    Returns:
        ``(B, C, ...)``, same dtype and device as ``known_image``.
    """
    if t == FINAL_TIMESTEP:
        return known_image
    return schedule.add_noise(known_image, standard_normal_like(known_image, generator), t)


def renoise(
    schedule: NoiseSchedule, x_prev: torch.Tensor, t_prev: int, t: int, generator: torch.Generator | None
) -> torch.Tensor:
    """Go forward from ``x_{t_prev}`` to ``x_t`` with the multi-step transition ``q(x_t | x_{t_prev})``.

    ``x_t = sqrt(abar_t / abar_prev) * x_prev + sqrt(1 - abar_t / abar_prev) * z``: the composition of
    the single-step transitions from ``t_prev + 1`` to ``t``, so a strided jump (RePaint over a DDIM
    grid) adds exactly the noise of all the skipped steps, not only that of ``beta_t``.

    Args:
        x_prev: ``(B, C, ...)``, a sample at ``t_prev``.
        t_prev: the earlier timestep, ``-1`` (the clean image) to ``T - 2``.
        t: the later timestep, ``t_prev < t < T``.

    Returns:
        ``(B, C, ...)``, same dtype and device as ``x_prev``.
    """
    if not t_prev < t:
        raise ValueError(f"renoise goes forward in time: need t_prev < t, got t_prev={t_prev}, t={t}.")
    ratio = schedule.alpha_cumprod_at(t) / schedule.alpha_cumprod_at(t_prev)
    return ratio**0.5 * x_prev + (1.0 - ratio) ** 0.5 * standard_normal_like(x_prev, generator)


def run_walk(
    step: StepFn,
    schedule: NoiseSchedule,
    model_fn: ModelFn,
    moves: Sequence[Move],
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    known_image: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    replace_known: bool = True,
) -> torch.Tensor:
    """Follow ``moves`` from ``x`` (the state at ``moves[0][0]``); the one sampling loop.

    - A reverse move ``(t, t_prev)`` calls ``model_fn(x, t)`` once and applies ``step``.
    - A forward move re-noises the whole image with :func:`renoise` (RePaint's jump back).
    - With ``known_image`` and a boolean ``mask`` (see :func:`validate_mask`): when ``replace_known``,
      the known region is overwritten by the known image noised to the current level at the start
      and after every reverse step (so every network call sees it as in training: the truth noised
      to ``t``, with fresh noise; after a jump it is already such a sample and is kept), and the
      result is pasted back exactly at the end.

    Returns:
        the final state, ``x``'s shape and dtype.
    """
    inpainting = known_image is not None
    merge = inpainting and replace_known
    if merge and moves:
        x = paste_back(x, noise_known_region(schedule, known_image, moves[0][0], generator), mask)
    for t_from, t_to in moves:
        if t_to > t_from:
            x = renoise(schedule, x, t_from, t_to, generator)
            continue
        timesteps = torch.full((x.shape[0],), t_from, dtype=torch.long, device=x.device)
        model_output = model_fn(x, timesteps).to(x.dtype)
        x = step(model_output, t_from, t_to, x, generator)
        if merge:
            x = paste_back(x, noise_known_region(schedule, known_image, t_to, generator), mask)
    return paste_back(x, known_image, mask) if inpainting else x
