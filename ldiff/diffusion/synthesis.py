"""Lesion synthesis with an unconditional model by partial noising (SDEdit, Meng et al. 2022).

The thesis's recipe: paint a coarse lesion into the mask (:func:`paint_coarse_lesion`), noise the
whole image to a small timestep ``t0`` (its ``t = 40`` of 1000, "DDIM step 3 of 50"), and denoise from
there with RePaint, which keeps the region outside the mask and jumps back to ``t0`` a few times so
the lesion and its surroundings harmonise. Little noise keeps the coarse lesion's intensity and
shape; more noise gives the model more freedom (and more chance to erase the lesion).
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ldiff.diffusion.walk import paste_back, validate_mask
from ldiff.diffusion.repaint import RePaintSampler
from ldiff.diffusion.samplers import FINAL_TIMESTEP, ModelFn, standard_normal_like

# The thesis's synthesis walk: a 50-step "leading" grid (so t = 40 lies on it and the walk from
# there is 40 -> 20 -> 0 -> clean), one jump back over the whole walk, 3 passes: 9 network calls.
PARTIAL_NOISING_DEFAULTS: dict[str, Any] = {
    "name": "repaint",
    "num_inference_steps": 50,
    "jump_length": None,
    "num_resamplings": 3,
    "spacing": "leading",
    "eta": 1.0,
}
THESIS_T0 = 40


def _gaussian_blur(volume: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur over every dim after the first two, zero outside the array.

    Args:
        volume: ``(B, 1, ...)`` floating point.
        sigma: standard deviation in voxels, ``> 0``.

    Returns:
        tensor of ``volume``'s shape and dtype.
    """
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=volume.dtype, device=volume.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).reshape(1, 1, -1)
    for dim in range(2, volume.ndim):
        moved = volume.movedim(dim, -1)
        lines = F.conv1d(moved.reshape(-1, 1, moved.shape[-1]), kernel, padding=radius)
        volume = lines.reshape(moved.shape).movedim(-1, dim)
    return volume


def _channel_intensities(intensity: float | Sequence[float] | torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """``intensity`` shaped ``(1 or B, C, 1, ...)`` to broadcast against ``image`` ``(B, C, ...)``."""
    values = torch.as_tensor(intensity, dtype=image.dtype, device=image.device)
    batch, channels = image.shape[:2]
    if values.ndim == 0:
        values = values.expand(1, channels)
    elif values.ndim == 1 and values.shape[0] == channels:
        values = values.reshape(1, channels)
    elif not (values.ndim == 2 and values.shape[0] in (1, batch) and values.shape[1] == channels):
        raise ValueError(f"intensity must be a scalar, ({channels},) or ({batch}, {channels}); got shape {tuple(values.shape)}.")
    return values.reshape(*values.shape, *([1] * (image.ndim - 2)))


def paint_coarse_lesion(
    image: torch.Tensor,
    mask: torch.Tensor,
    intensity: float | Sequence[float] | torch.Tensor,
    edge_sigma_voxels: float = 0.5,
) -> torch.Tensor:
    """Paint a lesion of a given intensity into the mask, with a soft edge that stays inside the mask.

    The weight of the lesion intensity is ``w = clamp(2 * blur(mask) - 1, 0, 1)`` inside the mask and
    0 outside. Along a straight edge ``w = erf(d / (sigma * sqrt 2))`` at depth ``d`` from the mask's
    boundary: 0 on the boundary, ``erf(0.5 / (sigma sqrt 2))`` at the first voxel layer (0.68 for
    ``sigma = 0.5``) and about 1 at ``2 * sigma``. A blended rim, rather than a step,
    is what partial noising at a small ``t0`` can turn into a plausible lesion border. A lesion thinner
    than a few sigma does not reach the full intensity, hence the small default: with 0.5 voxels a
    3x3x3 cube gets the full intensity at its centre, 0.78 of it on its faces and 0.43 at its corners
    (with 1 voxel: 0.38 at the centre and nothing at the corners).

    Args:
        image: ``(B, C, H, W)`` or ``(B, C, D, H, W)`` in ``[-1, 1]``.
        mask: ``(B, 1, ...)`` 0/1, ``1`` = lesion to paint.
        intensity: the lesion intensity in the image's ``[-1, 1]`` space: one value for all channels,
            one per channel ``(C,)``, or one per sample and channel ``(B, C)`` (e.g. a percentile of the
            fingerprint's lesion intensities, mapped by the caller).
        edge_sigma_voxels: width of the soft edge in voxels (the same along every axis); ``0``
            paints a hard-edged lesion.

    Returns:
        ``(B, C, ...)`` in ``image``'s dtype, equal to ``image`` bit for bit outside the mask.
    """
    if edge_sigma_voxels < 0:
        raise ValueError(f"edge_sigma_voxels must be >= 0, got {edge_sigma_voxels}.")
    inside = validate_mask(mask, image)
    values = _channel_intensities(intensity, image)
    # The weight is computed in float32 whatever the image dtype: half-precision convolutions are
    # missing on some devices, and the weight needs no more precision than that.
    weight = inside.float()
    if edge_sigma_voxels > 0:
        weight = (2 * _gaussian_blur(weight, float(edge_sigma_voxels)) - 1).clamp(0.0, 1.0) * weight
    weight = weight.to(image.dtype)
    painted = image + weight * (values - image)
    return paste_back(painted, image, inside)


def resolve_t0(t0: int | float, num_train_timesteps: int) -> int:
    """The training timestep to noise to.

    Args:
        t0: an ``int`` is a training timestep in ``[-1, T)`` (the thesis's 40; ``-1`` = no noise); a
            ``float`` in ``[0, 1]`` is a fraction of the training schedule, mapped to
            ``round(t0 * T) - 1`` (``0.0`` = no noise, ``0.041`` = 40 of 1000, ``1.0`` = ``T - 1``).
            ``t0 = 0`` is the least noisy training step (noise std ``sqrt(1 - abar_0)``, 0.01 for
            the linear schedule), not the clean image.

    Raises:
        ValueError: for a value outside those ranges, TypeError for a bool or another type.
    """
    if isinstance(t0, bool) or not isinstance(t0, (numbers.Integral, numbers.Real)):
        raise TypeError(f"t0 must be an int timestep or a float fraction, got {t0!r}.")
    if isinstance(t0, numbers.Integral):
        if not FINAL_TIMESTEP <= t0 < num_train_timesteps:
            raise ValueError(f"an int t0 is a timestep in -1..{num_train_timesteps - 1}, got {t0}.")
        return int(t0)
    if not 0.0 <= t0 <= 1.0:
        raise ValueError(f"a float t0 is a fraction of the schedule in [0, 1], got {t0}.")
    return round(t0 * num_train_timesteps) - 1


@torch.no_grad()
def synthesise_by_partial_noising(
    sampler: RePaintSampler,
    model_fn: ModelFn,
    image_with_coarse_lesion: torch.Tensor,
    mask: torch.Tensor,
    t0: int | float = THESIS_T0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Turn a coarse painted lesion into a realistic one with an unconditional model.

    The image (coarse lesion included) is noised to ``t0`` with the forward process, then denoised by
    ``sampler``'s RePaint walk from ``t0`` (``t0`` itself, then the grid timesteps below it): the known
    region outside the mask is taken from the noised input after every step, and with
    ``jump_length=None`` the walk jumps back to ``t0`` ``num_resamplings - 1`` times. Build the
    sampler with ``RePaintSampler.from_dict(schedule, PARTIAL_NOISING_DEFAULTS)`` for the thesis's
    setting; ``sampler.count_network_calls(resolve_t0(t0, T))`` gives the cost (9 for the defaults).

    Args:
        sampler: the RePaint settings (grid, jump length, resamplings, eta, clipping).
        model_fn: ``model_fn(x_t, timesteps) -> output`` of an unconditional model of MS anatomy.
        image_with_coarse_lesion: ``(B, C, ...)`` in ``[-1, 1]``, e.g. from :func:`paint_coarse_lesion`.
        mask: ``(B, 1, ...)`` 0/1, the lesion region (may be dilated to give the border room).
        t0: noise level to start from, see :func:`resolve_t0`.
        generator: seeds every noise draw.

    Returns:
        ``(B, C, ...)``: the synthesised lesion inside the mask, the input exactly outside it.
    """
    start = resolve_t0(t0, sampler.schedule.num_train_timesteps)
    if start == FINAL_TIMESTEP:  # no noise, no steps: the input comes back unchanged
        return sampler.sample(model_fn, image_with_coarse_lesion, mask, generator, start_timestep=start)
    noise = standard_normal_like(image_with_coarse_lesion, generator)
    x_start = sampler.schedule.add_noise(image_with_coarse_lesion, noise, start)
    return sampler.sample(model_fn, image_with_coarse_lesion, mask, generator, x_start=x_start, start_timestep=start)
