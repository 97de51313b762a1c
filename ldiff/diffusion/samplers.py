"""Reverse-process samplers that share one :class:`~ldiff.diffusion.schedule.NoiseSchedule`.

A sampler owns only the list of timesteps it visits and the update rule between two of them, so a
network trained once can be sampled with DDPM (all steps, ancestral) or DDIM (few steps, optionally
deterministic) without retraining. Every update goes from a timestep ``t`` to an earlier one
``t_prev``; ``t_prev = -1`` stands for the clean image (``abar = 1``), so the last step returns the
(clipped) predicted ``x0`` itself.

Conditioning stays outside the sampler: ``model_fn(x_t, timesteps)`` is any callable that returns
the network output for ``x_t`` (a closure that concatenates the voided image and mask, for example).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ldiff.diffusion.schedule import NoiseSchedule
from ldiff.diffusion.walk import (  # noqa: F401  (FINAL_TIMESTEP, ModelFn: re-exported)
    FINAL_TIMESTEP,
    Move,
    ModelFn,
    run_walk,
    standard_normal_like,
    paste_back,
    validate_mask,
)

TIMESTEP_SPACINGS = ("leading", "trailing")


def spaced_timesteps(num_train_timesteps: int, num_inference_steps: int, spacing: str = "trailing") -> list[int]:
    """Evenly spaced timesteps, in descending (sampling) order.

    - ``"trailing"`` ends the grid at ``T - 1``: for ``T = 1000``, 50 steps give ``999, 979, ..., 19``.
      The first step then starts where pure noise is the right input, which is why it is ldiff's
      default (Lin et al. 2024, "Common diffusion noise schedules and sample steps are flawed").
    - ``"leading"`` starts the grid at 0: ``980, 960, ..., 0``. It is the diffusers default and what
      the reference thesis used (its "DDIM step 3 of 50" is ``t = 40``).

    Raises:
        ValueError: for an unknown spacing or a step count outside ``1 .. num_train_timesteps``.
    """
    if spacing not in TIMESTEP_SPACINGS:
        raise ValueError(f"timestep spacing must be one of {TIMESTEP_SPACINGS}, got {spacing!r}.")
    if not 1 <= num_inference_steps <= num_train_timesteps:
        raise ValueError(f"num_inference_steps must be in 1..{num_train_timesteps}, got {num_inference_steps}.")
    if spacing == "leading":
        stride = num_train_timesteps // num_inference_steps
        return [index * stride for index in reversed(range(num_inference_steps))]
    return [
        round(num_train_timesteps * (num_inference_steps - index) / num_inference_steps) - 1
        for index in range(num_inference_steps)
    ]


@dataclass
class SamplerStepOutput:
    """Result of one reverse step: ``prev_sample`` is ``x_{t_prev}``, ``pred_x0`` the (clipped) clean estimate."""

    prev_sample: torch.Tensor
    pred_x0: torch.Tensor


class Sampler:
    """Common part of the samplers: the timestep grid, clipping, and the sampling loop.

    Args:
        schedule: the noise schedule the network was trained with.
        num_inference_steps: number of reverse steps (network calls).
        spacing: ``"trailing"`` or ``"leading"``, see :func:`spaced_timesteps`.
        clip_sample: clamp predicted ``x0`` to ``[-1, 1]``; ``None`` follows ``schedule.clip_sample``.
    """

    name = "base"

    def __init__(
        self,
        schedule: NoiseSchedule,
        num_inference_steps: int,
        spacing: str = "trailing",
        clip_sample: bool | None = None,
    ) -> None:
        self.schedule = schedule
        self.clip_sample = schedule.clip_sample if clip_sample is None else bool(clip_sample)
        self.spacing = spacing
        self.timesteps: list[int] = []
        self.set_timesteps(num_inference_steps, spacing)

    def set_timesteps(self, num_inference_steps: int, spacing: str | None = None) -> list[int]:
        """Choose the timesteps to visit (descending) and return them; see :func:`spaced_timesteps`."""
        spacing = self.spacing if spacing is None else spacing
        self.timesteps = spaced_timesteps(self.schedule.num_train_timesteps, num_inference_steps, spacing)
        self.spacing = spacing
        return self.timesteps

    @property
    def num_inference_steps(self) -> int:
        return len(self.timesteps)

    def timestep_pairs(self) -> list[tuple[int, int]]:
        """``(t, t_prev)`` for every step, in sampling order; the last ``t_prev`` is ``-1`` (clean image)."""
        return list(zip(self.timesteps, [*self.timesteps[1:], FINAL_TIMESTEP]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings (not the schedule) that :func:`build_sampler` turns back into this sampler."""
        return {
            "name": self.name,
            "num_inference_steps": self.num_inference_steps,
            "spacing": self.spacing,
            "clip_sample": self.clip_sample,
        }

    def predict_x0_and_epsilon(
        self, model_output: torch.Tensor, t: int, x_t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted clean image (clipped if enabled) and the noise consistent with it.

        After clipping, the noise is recomputed from the clipped ``x0`` so that the two stay on one
        forward trajectory through ``x_t``; otherwise the update would mix two different clean images.
        """
        pred_x0 = self.schedule.predict_x0(model_output, x_t, t)
        if self.clip_sample:
            pred_x0 = pred_x0.clamp(-1.0, 1.0)
            return pred_x0, self.schedule.epsilon_from_x0(pred_x0, x_t, t)
        return pred_x0, self.schedule.predict_epsilon(model_output, x_t, t)

    def step(
        self,
        model_output: torch.Tensor,
        t: int,
        t_prev: int,
        x_t: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> SamplerStepOutput:
        """One reverse update from ``x_t`` to ``x_{t_prev}``; ``model_output`` has the shape of ``x_t``."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget any state kept between steps (multistep solvers); called at the start of every walk."""

    def levels(self, start_timestep: int | None = None) -> list[int]:
        """Timesteps of the walk's positions, descending, ending with ``-1`` (clean).

        Args:
            start_timestep: ``None`` for the whole grid; otherwise a training timestep in ``[-1, T)``
                to start from exactly (partial noising), followed by the grid timesteps below it.
        """
        if start_timestep is None:
            return [*self.timesteps, FINAL_TIMESTEP]
        if not FINAL_TIMESTEP <= start_timestep < self.schedule.num_train_timesteps:
            raise ValueError(f"start timestep must be in -1..{self.schedule.num_train_timesteps - 1}, got {start_timestep}.")
        if start_timestep == FINAL_TIMESTEP:
            return [FINAL_TIMESTEP]
        return [start_timestep, *(t for t in self.timesteps if t < start_timestep), FINAL_TIMESTEP]

    def moves(self, start_timestep: int | None = None) -> list[Move]:
        """The walk: one reverse move ``(t, t_prev)`` between consecutive :meth:`levels` (RePaint adds jumps)."""
        levels = self.levels(start_timestep)
        return list(zip(levels[:-1], levels[1:]))

    def _step(self, model_output: torch.Tensor, t: int, t_prev: int, x_t: torch.Tensor,
              generator: torch.Generator | None) -> torch.Tensor:
        return self.step(model_output, t, t_prev, x_t, generator).prev_sample

    @torch.no_grad()
    def sample(
        self,
        model_fn: ModelFn,
        shape: Sequence[int],
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        x_start: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the whole reverse process from noise.

        Args:
            model_fn: ``model_fn(x_t, timesteps)`` with ``x_t`` of ``shape`` and ``timesteps`` a long tensor
                of shape ``(B,)`` (one timestep per sample, shared by all slices of a stack); returns
                the network output with the shape of ``x_t``.
            shape: ``(B, C, H, W)`` or ``(B, C, D, H, W)``.
            generator: seeds the initial noise and any noise the steps add.
            device, dtype: where and in which dtype the sample is kept.
            x_start: start from this ``x_{timesteps[0]}`` instead of pure noise.

        Returns:
            the sample ``x0``, shape ``shape``, values in ``[-1, 1]`` when clipping is enabled.
        """
        x = torch.empty(tuple(shape), device=device, dtype=dtype)
        x = standard_normal_like(x, generator) if x_start is None else x_start.to(device=device, dtype=dtype)
        self.reset()
        return run_walk(self._step, self.schedule, model_fn, self.moves(), x, generator)

    @torch.no_grad()
    def inpaint(
        self,
        model_fn: ModelFn,
        known_image: torch.Tensor,
        mask: torch.Tensor,
        generator: torch.Generator | None = None,
        *,
        x_start: torch.Tensor | None = None,
        replace_known: bool = True,
        start_timestep: int | None = None,
    ) -> torch.Tensor:
        """Paint ``mask`` in ``known_image`` (both ``(B, ...)``, see :func:`~ldiff.diffusion.walk.validate_mask`).

        The walk of :meth:`sample`, with the known region of ``x_t`` replaced by the known image noised
        to ``t`` before every network call (``replace_known``) and pasted back exactly at the end. For a
        conditional model the conditioning is the caller's business (``model_fn`` closes over it).
        ``x_start``: the state at the walk's first timestep (default pure noise); ``start_timestep``:
        start the walk there (see :meth:`levels`; partial noising), ``None`` runs the whole grid.

        Returns:
            ``(B, C, ...)`` in ``known_image``'s dtype: the sample inside the mask, ``known_image``
            exactly outside.
        """
        mask = validate_mask(mask, known_image)
        moves = self.moves(start_timestep)
        if not moves:  # starting at the clean image: nothing to sample
            x = known_image if x_start is None else x_start.to(device=known_image.device, dtype=known_image.dtype)
            return paste_back(x, known_image, mask)
        if x_start is None:
            x = standard_normal_like(known_image, generator)
        else:
            x = x_start.to(device=known_image.device, dtype=known_image.dtype)
        self.reset()
        return run_walk(self._step, self.schedule, model_fn, moves, x, generator, known_image, mask, replace_known)


class DDIMSampler(Sampler):
    """DDIM (Song et al. 2021): deterministic for ``eta = 0``, DDPM-like noise for ``eta = 1``.

    ``x_prev = sqrt(abar_prev) * x0 + sqrt(1 - abar_prev - sigma^2) * eps + sigma * z`` with
    ``sigma = eta * sqrt((1 - abar_prev) / (1 - abar_t)) * sqrt(1 - abar_t / abar_prev)``.
    """

    name = "ddim"

    def __init__(
        self,
        schedule: NoiseSchedule,
        num_inference_steps: int = 50,
        spacing: str = "trailing",
        eta: float = 0.0,
        clip_sample: bool | None = None,
    ) -> None:
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}.")
        self.eta = float(eta)
        super().__init__(schedule, num_inference_steps, spacing, clip_sample)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "eta": self.eta}

    def step(
        self,
        model_output: torch.Tensor,
        t: int,
        t_prev: int,
        x_t: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> SamplerStepOutput:
        """One DDIM update; ``generator`` is used only when ``eta > 0``."""
        pred_x0, pred_epsilon = self.predict_x0_and_epsilon(model_output, t, x_t)
        alpha_bar = self.schedule.alpha_cumprod_at(t)
        alpha_bar_prev = self.schedule.alpha_cumprod_at(t_prev)
        variance = (1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)
        sigma = self.eta * variance**0.5
        # max() guards against a tiny negative from rounding when eta = 1 and t_prev is close to t.
        direction = max(1 - alpha_bar_prev - sigma**2, 0.0) ** 0.5
        prev_sample = alpha_bar_prev**0.5 * pred_x0 + direction * pred_epsilon
        if sigma > 0:
            prev_sample = prev_sample + sigma * standard_normal_like(x_t, generator)
        return SamplerStepOutput(prev_sample=prev_sample, pred_x0=pred_x0)


class DDPMSampler(Sampler):
    """Ancestral sampling with the posterior ``q(x_prev | x_t, x0)`` of Ho et al. (2020), "fixed small" variance.

    With the default (all ``T`` timesteps) every step is the textbook DDPM step. With fewer steps,
    the effective beta between two visited timesteps is ``1 - abar_t / abar_prev`` (the respacing of
    Nichol & Dhariwal 2021), which makes this sampler equal to DDIM with ``eta = 1``.
    """

    name = "ddpm"

    def __init__(
        self,
        schedule: NoiseSchedule,
        num_inference_steps: int | None = None,
        spacing: str = "trailing",
        clip_sample: bool | None = None,
    ) -> None:
        steps = schedule.num_train_timesteps if num_inference_steps is None else num_inference_steps
        super().__init__(schedule, steps, spacing, clip_sample)

    def posterior_coefficients(self, t: int, t_prev: int) -> tuple[float, float, float]:
        """``(c_x0, c_xt, variance)`` of ``q(x_prev | x_t, x0) = N(c_x0 * x0 + c_xt * x_t, variance)``.

        For consecutive steps: ``c_x0 = beta_t sqrt(abar_{t-1}) / (1 - abar_t)``,
        ``c_xt = sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t)`` and
        ``variance = beta_t (1 - abar_{t-1}) / (1 - abar_t)``.
        """
        alpha_bar = self.schedule.alpha_cumprod_at(t)
        alpha_bar_prev = self.schedule.alpha_cumprod_at(t_prev)
        alpha = alpha_bar / alpha_bar_prev
        beta = 1 - alpha
        coefficient_x0 = beta * alpha_bar_prev**0.5 / (1 - alpha_bar)
        coefficient_xt = alpha**0.5 * (1 - alpha_bar_prev) / (1 - alpha_bar)
        variance = beta * (1 - alpha_bar_prev) / (1 - alpha_bar)
        return coefficient_x0, coefficient_xt, variance

    def step(
        self,
        model_output: torch.Tensor,
        t: int,
        t_prev: int,
        x_t: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> SamplerStepOutput:
        """One ancestral update; the last step (``t_prev = -1``) adds no noise and returns ``pred_x0``."""
        pred_x0, _ = self.predict_x0_and_epsilon(model_output, t, x_t)
        coefficient_x0, coefficient_xt, variance = self.posterior_coefficients(t, t_prev)
        prev_sample = coefficient_x0 * pred_x0 + coefficient_xt * x_t
        if variance > 0:
            prev_sample = prev_sample + variance**0.5 * standard_normal_like(x_t, generator)
        return SamplerStepOutput(prev_sample=prev_sample, pred_x0=pred_x0)


# Imported here, not at the top: dpm_solver.py subclasses Sampler, defined above.
from ldiff.diffusion.dpm_solver import DPMSolverSampler  # noqa: E402

SAMPLERS: dict[str, type[Sampler]] = {"ddim": DDIMSampler, "ddpm": DDPMSampler, "dpm_solver": DPMSolverSampler}


def build_sampler(schedule: NoiseSchedule, config: dict[str, Any]) -> Sampler:
    """Build a sampler from ``{"name": "ddim" | "ddpm" | "dpm_solver", ...}``; the other keys are its constructor's arguments.

    Raises:
        ValueError: for an unknown sampler name or setting.
    """
    settings = dict(config)
    name = settings.pop("name", None)
    if name not in SAMPLERS:
        raise ValueError(f"sampler name must be one of {sorted(SAMPLERS)}, got {name!r}.")
    try:
        return SAMPLERS[name](schedule, **settings)
    except TypeError as error:  # an unknown keyword: report it as a config problem, not a crash
        raise ValueError(f"invalid settings for sampler {name!r}: {error}") from None
