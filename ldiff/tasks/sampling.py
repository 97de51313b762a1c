"""The ways a task samples: conditional inpainting (optionally warm-started), RePaint filling, partial-noising synthesis.

==============================  =============================================================================
class                           sampling
==============================  =============================================================================
:class:`ConditionalTask`        ``ddim``, ``ddpm`` or ``dpm_solver`` with the network's own conditioning;
                                the known region is replaced by the noised truth before every call and
                                pasted back at the end (cond_synth)
:class:`ConditionalFillTask`    the same, optionally warm-started from a smooth fill noised to ``t0``
                                (cond_fill)
:class:`RePaintFillTask`        RePaint (Lugmayr et al. 2022) with an unconditional model of healthy
                                anatomy: jumps back and resamples so the fill harmonises (uncond_fill)
:class:`PartialNoisingTask`     a coarse lesion painted into the mask, noised to ``t0`` and denoised with
                                the short RePaint walk (SDEdit; the thesis's synthesis, uncond_synth)
==============================  =============================================================================

Samplers are built from the schedule of the model, so they swap without retraining; an unusable
sampler name is one sentence naming the ones that work.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ldiff.errors import LdiffError
from ldiff.tasks.task import Task

CONDITIONAL_SAMPLERS = ("ddim", "ddpm", "dpm_solver")
# RePaint as the thesis filled: jump 8, 10 resamplings, eta 1 (482 calls at 50 steps).
REPAINT_FILL_DEFAULTS: dict[str, Any] = {"jump_length": 8, "num_resamplings": 10, "eta": 1.0}


def _checked(make: Callable[[], Any]) -> Any:
    try:
        return make()
    except ValueError as error:
        raise LdiffError(f"Invalid sampler settings: {error}") from None


@dataclass(frozen=True)
class ConditionalTask(Task):
    """Sees the voided image and the mask; samples with any of :data:`CONDITIONAL_SAMPLERS`."""

    def build_sampler(self, schedule: Any, name: str, steps: int | None, eta: float = 0.0,
                      jump_length: int | None = None, resamplings: int | None = None) -> Any:
        from ldiff.diffusion import build_sampler

        if name not in CONDITIONAL_SAMPLERS:
            raise LdiffError(f"{self.name} models sample with {', '.join(CONDITIONAL_SAMPLERS)}; "
                             f"--sampler {name} is for unconditional models.")
        config: dict[str, Any] = {"name": name, "num_inference_steps": steps}
        if name == "ddim":
            config["eta"] = eta
        return _checked(lambda: build_sampler(schedule, config))

    def sample(self, sampler: Any, model_fn: Callable, known: Any, mask: Any, generator: Any,
               t0: int | float | None = None) -> Any:
        return sampler.inpaint(model_fn, known, mask, generator)


@dataclass(frozen=True)
class ConditionalFillTask(ConditionalTask):
    """cond_fill: a conditional sampler, from pure noise or (``t0`` set) warm-started.

    The warm start (SDEdit, Meng et al. 2022, applied to filling): the mask is first filled smoothly
    (:func:`ldiff.inference.smooth_fill.smooth_prefill`, biharmonic), that image is noised to ``t0`` and
    the sampler walks from ``t0`` down (with the 3-step DPM-Solver grid, ``t0 < 333`` of 1000 is a single
    network call). The smooth fill carries the scan's own local intensity into the mask; the model
    adds the structure and texture that a smooth continuation lacks. On real scans a model trained on
    other anatomy starts from its own idea of white matter when it starts from noise, and paints a
    biased level (issue 9); how much the warm start buys is measured in documentation/benchmark.md.
    """

    @property
    def takes_t0(self) -> bool:
        return True

    @property
    def warm_starts(self) -> bool:
        return True

    def starting_image(self, image: np.ndarray, with_coarse_lesions: Callable[[], np.ndarray],
                       with_smooth_fill: Callable[[], np.ndarray] | None = None,
                       t0: int | float | None = None) -> np.ndarray:
        if t0 is None or with_smooth_fill is None:
            return image
        return with_smooth_fill()

    def sample(self, sampler: Any, model_fn: Callable, known: Any, mask: Any, generator: Any,
               t0: int | float | None = None) -> Any:
        from ldiff.diffusion import resolve_t0, standard_normal_like

        if t0 is None:
            return sampler.inpaint(model_fn, known, mask, generator)
        start = resolve_t0(t0, sampler.schedule.num_train_timesteps)
        # The prefilled image noised to t0: the known region is replaced by the noised truth at every
        # call anyway, so only the mask's voxels start from the smooth fill.
        x_start = None if start < 0 else sampler.schedule.add_noise(known, standard_normal_like(known, generator), start)
        return sampler.inpaint(model_fn, known, mask, generator, x_start=x_start, start_timestep=start)


@dataclass(frozen=True)
class _RePaintTask(Task):
    """Unconditional: inpaints with a RePaint walk whose defaults :meth:`repaint_defaults` gives."""

    def repaint_defaults(self) -> dict[str, Any]:
        raise NotImplementedError

    def build_sampler(self, schedule: Any, name: str, steps: int | None, eta: float = 0.0,
                      jump_length: int | None = None, resamplings: int | None = None) -> Any:
        from ldiff.diffusion import RePaintSampler

        if name != "repaint":
            raise LdiffError(f"{self.name} models inpaint with RePaint; use --sampler repaint (--resamplings 1 for "
                             f"plain replacement at one call per step).")
        config = self.repaint_defaults()
        chosen = {"jump_length": jump_length, "num_resamplings": resamplings}
        config.update({key: value for key, value in chosen.items() if value is not None})
        if steps is not None:
            config["num_inference_steps"] = steps
        return _checked(lambda: RePaintSampler.from_dict(schedule, config))


@dataclass(frozen=True)
class RePaintFillTask(_RePaintTask):
    """uncond_fill: RePaint over the whole schedule with an unconditional healthy-anatomy model."""

    def repaint_defaults(self) -> dict[str, Any]:
        return {"name": "repaint", **REPAINT_FILL_DEFAULTS}

    def sample(self, sampler: Any, model_fn: Callable, known: Any, mask: Any, generator: Any,
               t0: int | float | None = None) -> Any:
        return sampler.inpaint(model_fn, known, mask, generator)


@dataclass(frozen=True)
class PartialNoisingTask(_RePaintTask):
    """uncond_synth: starts from a coarse lesion, noises it to ``t0`` and denoises (SDEdit)."""

    @property
    def takes_lesion_intensity(self) -> bool:
        return True  # the coarse lesion's intensity

    @property
    def takes_t0(self) -> bool:
        return True

    def repaint_defaults(self) -> dict[str, Any]:
        from ldiff.diffusion import PARTIAL_NOISING_DEFAULTS

        return dict(PARTIAL_NOISING_DEFAULTS)

    def starting_image(self, image: np.ndarray, with_coarse_lesions: Callable[[], np.ndarray],
                       with_smooth_fill: Callable[[], np.ndarray] | None = None,
                       t0: int | float | None = None) -> np.ndarray:
        return with_coarse_lesions()

    def sample(self, sampler: Any, model_fn: Callable, known: Any, mask: Any, generator: Any,
               t0: int | float | None = None) -> Any:
        from ldiff.diffusion import synthesise_by_partial_noising
        from ldiff.diffusion.synthesis import THESIS_T0

        return synthesise_by_partial_noising(sampler, model_fn, known, mask, THESIS_T0 if t0 is None else t0, generator)
