"""The forward (noising) process of a denoising diffusion model and the conversions around it.

A :class:`NoiseSchedule` is a small object built from a JSON-able config. It owns the beta table and
everything derived from it: noising for training (:meth:`~NoiseSchedule.add_noise`), the training
target and its min-SNR loss weight, and the conversions from a network output to a predicted clean
image or noise that every sampler needs. Samplers (``ldiff.diffusion.samplers``) hold a schedule and
never keep their own copy of the tables, so a trained model can be sampled with any of them.

Conventions (those of Ho et al. 2020 with zero-based indices):

- ``t`` runs over ``0 .. num_train_timesteps - 1``; ``alphas_cumprod[t] = prod_{i <= t} (1 - betas[i])``,
  so ``t = 0`` is the least noisy step (``alphas_cumprod[0] = 1 - betas[0]``), not the clean image.
- ``x_t = sqrt(abar_t) * x0 + sqrt(1 - abar_t) * noise`` with ``noise ~ N(0, I)``.
- Images live in ``[-1, 1]``; ``clip_sample`` clamps predicted clean images to that range.
- The tables are float64; a coefficient is cast to the dtype of the tensor it multiplies only at the
  point of use, so float16 or bfloat16 callers do not lose the precision of ``1 - abar_t`` near ``t = 0``.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import torch

BETA_SCHEDULES = ("linear", "cosine")
PREDICTION_TYPES = ("epsilon", "v_prediction")

DEFAULT_SCHEDULE_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "linear",
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "prediction_type": "epsilon",
    "min_snr_gamma": 5.0,
    "clip_sample": True,
}

# Nichol & Dhariwal (2021), section 3.2: the offset keeps beta_0 from being vanishingly small and
# the clip keeps the last betas from reaching 1, which would make the reverse process singular.
_COSINE_OFFSET = 0.008
_COSINE_MAX_BETA = 0.999


def linear_betas(num_train_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """Betas evenly spaced from ``beta_start`` to ``beta_end`` (DDPM, Ho et al. 2020).

    Returns:
        float64 tensor of shape ``(num_train_timesteps,)``.
    """
    return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)


def cosine_betas(num_train_timesteps: int) -> torch.Tensor:
    """Betas of the cosine schedule (Nichol & Dhariwal 2021), each clipped at 0.999.

    ``abar(s) = cos(((s / T) + 0.008) / 1.008 * pi / 2) ** 2`` and ``beta_t = 1 - abar(t + 1) / abar(t)``.

    Returns:
        float64 tensor of shape ``(num_train_timesteps,)`` with values in ``(0, 0.999]``.
    """
    steps = torch.arange(num_train_timesteps + 1, dtype=torch.float64) / num_train_timesteps
    alpha_bar = torch.cos((steps + _COSINE_OFFSET) / (1 + _COSINE_OFFSET) * math.pi / 2) ** 2
    betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
    return betas.clamp(max=_COSINE_MAX_BETA)


class NoiseSchedule:
    """Beta schedule, noising, training targets and output conversions of a diffusion model.

    Args:
        num_train_timesteps: number of diffusion steps ``T`` the network is trained on.
        beta_schedule: ``"linear"`` (Ho et al. 2020) or ``"cosine"`` (Nichol & Dhariwal 2021; ignores
            ``beta_start`` and ``beta_end``).
        beta_start: first beta of the linear schedule.
        beta_end: last beta of the linear schedule.
        prediction_type: what the network predicts: ``"epsilon"`` (the noise) or ``"v_prediction"``
            (``v = sqrt(abar) * noise - sqrt(1 - abar) * x0``, Salimans & Ho 2022).
        min_snr_gamma: the gamma of min-SNR loss weighting (Hang et al. 2023); ``None`` weights every
            timestep equally.
        clip_sample: whether samplers clamp predicted clean images to ``[-1, 1]``.
    """

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_schedule: str = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        prediction_type: str = "epsilon",
        min_snr_gamma: float | None = 5.0,
        clip_sample: bool = True,
    ) -> None:
        if isinstance(num_train_timesteps, bool) or not isinstance(num_train_timesteps, int) or num_train_timesteps < 2:
            raise ValueError(f"num_train_timesteps must be an integer >= 2, got {num_train_timesteps!r}.")
        if beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {beta_schedule!r}.")
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}.")
        if beta_schedule == "linear" and not 0 < beta_start <= beta_end < 1:
            raise ValueError(f"linear betas need 0 < beta_start <= beta_end < 1, got {beta_start} and {beta_end}.")
        if min_snr_gamma is not None and not min_snr_gamma > 0:
            raise ValueError(f"min_snr_gamma must be positive or null, got {min_snr_gamma!r}.")
        self.num_train_timesteps = num_train_timesteps
        self.beta_schedule = beta_schedule
        self.beta_start = float(beta_start)
        self.beta_end = float(beta_end)
        self.prediction_type = prediction_type
        self.min_snr_gamma = None if min_snr_gamma is None else float(min_snr_gamma)
        self.clip_sample = bool(clip_sample)

        if beta_schedule == "linear":
            self.betas = linear_betas(num_train_timesteps, self.beta_start, self.beta_end)
        else:
            self.betas = cosine_betas(num_train_timesteps)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.sqrt_alphas_cumprod = self.alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - self.alphas_cumprod).sqrt()

    # ----------------------------------------------------------------------------------- config
    def to_dict(self) -> dict[str, Any]:
        """The JSON-able config that :meth:`from_dict` turns back into an identical schedule."""
        return {
            "num_train_timesteps": self.num_train_timesteps,
            "beta_schedule": self.beta_schedule,
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
            "prediction_type": self.prediction_type,
            "min_snr_gamma": self.min_snr_gamma,
            "clip_sample": self.clip_sample,
        }

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> "NoiseSchedule":
        """Build a schedule from a config; missing keys take the defaults of ``DEFAULT_SCHEDULE_CONFIG``.

        Raises:
            ValueError: for an unknown key (a typo in a plans file must not silently fall back to a
                default) or an invalid value.
        """
        unknown = sorted(set(config) - set(DEFAULT_SCHEDULE_CONFIG))
        if unknown:
            raise ValueError(f"unknown noise-schedule key(s) {unknown}; valid keys are {sorted(DEFAULT_SCHEDULE_CONFIG)}.")
        return cls(**{**DEFAULT_SCHEDULE_CONFIG, **config})

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.to_dict().items())
        return f"{type(self).__name__}({arguments})"

    # ----------------------------------------------------------------------------------- tables
    def alpha_cumprod_at(self, t: int) -> float:
        """``abar_t`` as a Python float; ``t = -1`` means "after the last reverse step" and gives 1.0."""
        if t == -1:
            return 1.0
        if not 0 <= t < self.num_train_timesteps:
            raise IndexError(f"timestep {t} is outside 0..{self.num_train_timesteps - 1}.")
        return float(self.alphas_cumprod[t])

    def _coefficient(self, table: torch.Tensor, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """``table[t]`` shaped to broadcast against ``like`` (batch first), in ``like``'s dtype and device.

        ``t`` is a Python int (one timestep for the whole batch) or an integer tensor of shape ``(B,)``
        with ``B == like.shape[0]``; the result then has shape ``(B, 1, ..., 1)``.
        """
        if isinstance(t, numbers.Integral):
            return table[int(t)].to(device=like.device, dtype=like.dtype)
        if t.dtype.is_floating_point or t.dtype == torch.bool:
            raise TypeError(f"timesteps must be an integer tensor, got {t.dtype}.")
        if t.ndim != 1 or t.shape[0] != like.shape[0]:
            raise ValueError(f"timesteps must have shape (B,) = ({like.shape[0]},), got {tuple(t.shape)}.")
        values = table.to(t.device)[t]
        return values.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.ndim - 1)))

    def _sqrt_alphas_cumprod(self, t: torch.Tensor | int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sqrt(abar_t), sqrt(1 - abar_t))`` broadcastable against ``like``."""
        signal = self._coefficient(self.sqrt_alphas_cumprod, t, like)
        sigma = self._coefficient(self.sqrt_one_minus_alphas_cumprod, t, like)
        return signal, sigma

    # ----------------------------------------------------------------------------------- training
    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """Sample ``x_t`` of the forward process.

        Args:
            x0: clean images, shape ``(B, ...)`` (any trailing dims), values in ``[-1, 1]``.
            noise: standard normal noise of the same shape as ``x0``.
            t: integer timesteps of shape ``(B,)`` in ``[0, T)``, or one int for the whole batch.

        Returns:
            ``sqrt(abar_t) * x0 + sqrt(1 - abar_t) * noise``, same shape and dtype as ``x0``.
        """
        signal, sigma = self._sqrt_alphas_cumprod(t, x0)
        return signal * x0 + sigma * noise

    def training_target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """What the network should output for ``add_noise(x0, noise, t)``: the noise or ``v``.

        Shapes as in :meth:`add_noise`; the result has the shape of ``x0``.
        """
        if self.prediction_type == "epsilon":
            return noise
        signal, sigma = self._sqrt_alphas_cumprod(t, x0)
        return signal * noise - sigma * x0

    def snr(self, t: torch.Tensor | int) -> torch.Tensor:
        """Signal-to-noise ratio ``abar_t / (1 - abar_t)``, float64, shape ``(B,)`` (or a scalar for an int)."""
        alpha_bar = self.alphas_cumprod.to(t.device)[t] if isinstance(t, torch.Tensor) else self.alphas_cumprod[t]
        return alpha_bar / (1.0 - alpha_bar)

    def loss_weights(self, t: torch.Tensor) -> torch.Tensor:
        """Per-sample min-SNR-gamma loss weights (Hang et al. 2023) for the schedule's prediction type.

        The weight turns a loss on the network output into ``min(SNR, gamma)`` times a loss on the
        predicted clean image: ``min(SNR, gamma) / SNR`` for epsilon and ``min(SNR, gamma) / (SNR + 1)``
        for v. With ``min_snr_gamma = None`` every weight is 1.

        Args:
            t: integer timesteps, shape ``(B,)``.

        Returns:
            float32 tensor of shape ``(B,)`` on ``t``'s device, values in ``(0, 1]``.
        """
        if self.min_snr_gamma is None:
            return torch.ones(t.shape, dtype=torch.float32, device=t.device)
        snr = self.snr(t)
        capped = snr.clamp(max=self.min_snr_gamma)
        denominator = snr if self.prediction_type == "epsilon" else snr + 1.0
        return (capped / denominator).to(torch.float32)

    # ----------------------------------------------------------------------------------- conversions
    def predict_x0(self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """The clean image implied by a network output at ``x_t`` (no clipping; samplers clip).

        Args:
            model_output: the network's epsilon or v, same shape as ``x_t``.
            x_t: noisy images, shape ``(B, ...)``.
            t: integer timesteps of shape ``(B,)`` or one int.

        Returns:
            predicted ``x0``, same shape and dtype as ``x_t``.
        """
        signal, sigma = self._sqrt_alphas_cumprod(t, x_t)
        if self.prediction_type == "epsilon":
            return (x_t - sigma * model_output) / signal
        return signal * x_t - sigma * model_output

    def predict_epsilon(self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """The noise implied by a network output at ``x_t``; shapes as in :meth:`predict_x0`."""
        if self.prediction_type == "epsilon":
            return model_output
        signal, sigma = self._sqrt_alphas_cumprod(t, x_t)
        return sigma * x_t + signal * model_output

    def epsilon_from_x0(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """The noise that takes ``x0`` to ``x_t``: ``(x_t - sqrt(abar_t) * x0) / sqrt(1 - abar_t)``."""
        signal, sigma = self._sqrt_alphas_cumprod(t, x_t)
        return (x_t - signal * x0) / sigma
