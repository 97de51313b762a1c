"""How prediction samples: the options a user sets and how they resolve against a model's task.

:class:`SamplingOptions` holds the user's choices (``None`` = the task's default, see
:attr:`ldiff.tasks.Task.default_sampling`); :func:`resolved_sampler`, :func:`resolved_t0` and
:func:`build_task_sampler` turn them into what the :class:`~ldiff.inference.predictor.Predictor` runs,
with one sentence for a choice the task cannot use.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ldiff.diffusion import resolve_t0
from ldiff.errors import LdiffError
from ldiff.inference.model_loading import LoadedModel
from ldiff.inference.roi import DEFAULT_CONTEXT_MARGIN
from ldiff.preprocessing.standardisation import target_landmarks
from ldiff.slice_views import parse_views

DEFAULT_STEPS = {"ddim": 25, "ddpm": 1000, "dpm_solver": 15, "repaint": 50}
# SamplingOptions.t0 for no warm start: the conditional filler walks the whole grid from pure noise.
FULL_WALK = "full"


@dataclass(frozen=True)
class SamplingOptions:
    """How to sample; ``None`` means the task's default (see :mod:`ldiff.inference.predictor`'s docstring).

    ``eta`` (DDIM only), ``jump_length`` and ``resamplings`` (RePaint), ``t0`` (the noise level that
    partial noising starts from, an int timestep or a float fraction of the schedule: uncond_synth's
    coarse lesion, default 40 of 1000; cond_fill's warm start from a smooth fill, default the task's,
    :data:`FULL_WALK` for none: the whole walk from pure noise), ``batch_size`` (samples per network call, the K
    draws of a crop included; default the model's training batch size, at least 1), ``context_margin`` and ``context_slices`` (see
    :func:`ldiff.inference.roi.plan_rois`),
    ``num_samples`` (draws averaged per crop: 1 gives one realistic sample with texture; K > 1 gives
    their mean, an estimate of the posterior mean that minimises the expected squared error, smoother
    than any single draw, at K times the cost), ``views`` (slice orientations, see
    :mod:`ldiff.slice_views`: the mask is filled along each and the fills averaged; ``num_samples``
    draws in each view; also ``"all"`` or names joined by ``+``). ``sampler``, ``steps`` and ``num_samples`` default to the task's
    :attr:`~ldiff.tasks.Task.default_sampling`, ``num_samples`` divided by the number of views (at
    least 1), so that several views cost about what one does; ``views`` to the model's (see
    :attr:`Predictor.views`). ``match_contrast`` (conditional synthesis): set the painted lesions'
    contrast to their surroundings after sampling (:mod:`ldiff.inference.contrast_matching`): True
    to the lesion intensity given (``lesion_intensity`` or ``lesion_intensity_from``), else to the
    training lesions'; False never; True and None (default) differ only in that None falls back quietly
    to the model's own contrast where the model has no training fingerprint. ``standardise``: map the
    normalised input's brain histogram onto the training data's before sampling and the output back
    (:mod:`ldiff.preprocessing.standardisation`): True (refused for a model without
    ``intensity_landmarks``), False, or None (default): where the task standardises by default
    (:attr:`~ldiff.tasks.Task.standardises_intensities`) and the model has landmarks.
    """

    sampler: str | None = None
    steps: int | None = None
    eta: float = 0.0
    jump_length: int | None = None
    resamplings: int | None = None
    t0: int | float | str | None = None
    batch_size: int | None = None
    context_margin: int = DEFAULT_CONTEXT_MARGIN
    context_slices: int | None = None
    num_samples: int | None = None
    views: tuple[str, ...] | str | None = None
    match_contrast: bool | None = None
    standardise: bool | None = None

    def __post_init__(self) -> None:
        positive = {"steps": self.steps, "batch_size": self.batch_size, "jump_length": self.jump_length,
                    "resamplings": self.resamplings, "num_samples": self.num_samples}
        non_negative = {"context_margin": self.context_margin, "context_slices": self.context_slices, "eta": self.eta}
        problems = [f"{name} must be >= 1, got {value}" for name, value in positive.items()
                    if value is not None and value < 1]
        problems += [f"{name} must be >= 0, got {value}" for name, value in non_negative.items()
                     if value is not None and value < 0]
        if self.t0 is not None and self.t0 != FULL_WALK and (
                isinstance(self.t0, (bool, str)) or not isinstance(self.t0, (int, float))):
            problems.append(f"t0 must be a timestep, a fraction of the schedule or '{FULL_WALK}', got {self.t0!r}")
        if self.views is not None:
            try:
                object.__setattr__(self, "views", parse_views(self.views))
            except ValueError as error:
                problems.append(f"views: {error}".rstrip("."))
        if problems:
            raise LdiffError("Invalid prediction options: " + "; ".join(problems) + ".")


def resolved_sampler(model: LoadedModel, options: SamplingOptions) -> tuple[str, int | None]:
    """(sampler name, steps): the options', else the task's defaults (steps of a sampler the user named
    without steps: :data:`DEFAULT_STEPS`)."""
    defaults = model.task.default_sampling
    name = options.sampler or str(defaults["sampler"])
    steps = options.steps or (int(defaults["steps"]) if name == defaults["sampler"] else DEFAULT_STEPS.get(name))
    return name, steps


def resolved_t0(model: LoadedModel, options: SamplingOptions) -> int | float | None:
    """The noise level partial noising starts from: the option's, else the task's default; None for
    the whole walk from pure noise (:data:`FULL_WALK`, or a task that takes no ``t0``). One sentence
    for a ``t0`` the task cannot use."""
    task = model.task
    if options.t0 is not None and not task.takes_t0:
        raise LdiffError(f"t0 (the noise level to start from) is for cond_fill and uncond_synth models, not "
                         f"{task.name}.")
    if options.t0 == FULL_WALK and not task.warm_starts:
        raise LdiffError(f"t0 {FULL_WALK} is for cond_fill models; {task.name} starts from a coarse lesion noised to "
                         f"a timestep or fraction.")
    t0 = options.t0 if options.t0 is not None else task.default_sampling.get("t0")
    if t0 is None or t0 == FULL_WALK:
        return None
    try:
        resolve_t0(t0, model.schedule.num_train_timesteps)
    except (TypeError, ValueError) as error:
        raise LdiffError(f"Invalid prediction options: {error}") from None
    return t0


def build_task_sampler(model: LoadedModel, options: SamplingOptions) -> Any:
    """The sampler object for the model's task; one sentence for a sampler the task cannot use."""
    name, steps = resolved_sampler(model, options)
    return model.task.build_sampler(model.schedule, name, steps, eta=options.eta, jump_length=options.jump_length,
                                    resamplings=options.resamplings)


def resolved_landmarks(model: LoadedModel, options: SamplingOptions) -> np.ndarray | None:
    """The training intensity landmarks (C, P) that prediction standardises the input to, or None for no
    standardisation (``options.standardise``); one sentence where it is asked of a model without them."""
    if options.standardise is False or (options.standardise is None and not model.task.standardises_intensities):
        return None
    landmarks = target_landmarks(model.description, model.num_channels)
    if landmarks is None and options.standardise:
        raise LdiffError(f"{model.folder}: its model.json has no intensity_landmarks (models trained before they were "
                         f"recorded), so its input cannot be standardised; predict without standardisation.")
    return landmarks
