"""The four tasks, one definition each: what the network sees, what it paints, what the loss counts, how it samples.

A task differs from another only here (``ldiff/tasks/``); training, validation, prediction and the
command line ask the task and never branch on its name.

===============  ===========  ==========================================================================
task             conditional  training masks, target, loss and sampling
===============  ===========  ==========================================================================
``cond_fill``    yes          paint healthy tissue inside a mask drawn by the MaskSampler (real lesion
                              shapes moved onto healthy WM, or synthetic WM ellipsoids). Real lesions
                              are voided in the conditioning and excluded from the loss, so the
                              filler never learns to paint lesions. The loss counts only the painted
                              region. Samples with DPM-Solver++ (default: 3 steps, mean of 4 draws),
                              warm-started from a smooth fill noised to t0 = 250.
``uncond_fill``  no           an unconditional model of healthy anatomy (real lesions excluded from the
                              loss); fills with RePaint at sampling time.
``cond_synth``   yes          paint lesion tissue inside the real (dilated) lesions (the loss counts
                              only that region, as for cond_fill). DDIM, 25 steps, one draw.
``uncond_synth`` no           an unconditional model of MS anatomy, lesions included; synthesises by
                              partial noising of a coarse lesion (SDEdit) with a short RePaint walk.
===============  ===========  ==========================================================================

Tensors are ``(B, C, H, W)`` for ``2d`` and ``(B, C, D, H, W)`` for ``p3d``; images lie in [-1, 1];
masks are 0/1 with one channel (the same region for every modality). Importing this package does
not import torch.
"""
from __future__ import annotations

from ldiff.tasks.sampling import (
    CONDITIONAL_SAMPLERS,
    REPAINT_FILL_DEFAULTS,
    ConditionalFillTask,
    ConditionalTask,
    PartialNoisingTask,
    RePaintFillTask,
)
from ldiff.tasks.task import VOID_VALUE, Task

# Validation during training samples as prediction does, with fewer network calls.
_CONDITIONAL_VALIDATION = (("sampler", "ddim"), ("steps", 25))

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        # Filling: the mean of 4 DPM-Solver++ draws of 3 steps each, an estimate of the posterior mean.
        # Chosen by measurement on real patients and phantoms (documentation/benchmark.md): the mean
        # of 4 draws scores higher than one draw, and more steps per draw bought nothing measurable.
        # A model trained on all three views splits the draws among them (Predictor.views, num_samples).
        # Warm start at t0 = 250 of 1000: a biharmonic fill noised to t0 and denoised (one network call per
        # draw on the 3-step grid); chosen by measurement on transplanted lesions in two real patients and
        # on the test phantoms, their own lesions included (documentation/benchmark.md#warm-start).
        ConditionalFillTask("cond_fill", True, False, "conditional lesion filling: paints healthy tissue inside a mask",
                            (("sampler", "dpm_solver"), ("steps", 3), ("num_samples", 4), ("t0", 250)),
                            _CONDITIONAL_VALIDATION),
        # RePaint with one pass per step (plain replacement) for validation: the method of prediction
        # at 25 calls instead of 482.
        RePaintFillTask("uncond_fill", False, False,
                        "unconditional healthy-anatomy model; fills with RePaint at sampling",
                        (("sampler", "repaint"), ("steps", 50), ("num_samples", 1)),
                        (("sampler", "repaint"), ("steps", 25), ("resamplings", 1))),
        # Synthesis: one draw, so that lesions keep a realistic texture (a mean of draws is smooth).
        ConditionalTask("cond_synth", True, True, "conditional lesion synthesis: paints lesions inside a mask",
                        (("sampler", "ddim"), ("steps", 25), ("num_samples", 1)), _CONDITIONAL_VALIDATION),
        PartialNoisingTask("uncond_synth", False, True,
                           "unconditional MS-anatomy model; synthesises by partial noising",
                           (("sampler", "repaint"), ("steps", 50), ("num_samples", 1)),
                           (("sampler", "repaint"),)),
    )
}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)
# The tasks that paint lesions (for commands that need a synthesis model, e.g. ldiff_synthesize_dataset).
SYNTHESIS_TASK_NAMES: tuple[str, ...] = tuple(name for name, task in TASKS.items() if task.paints_lesions)
# What a prediction without a named model or task does (``ldiff_predict -i scan -o filled``): fill.
DEFAULT_TASK_NAME = "cond_fill"


def get_task(name: str, lesion_level_cue: bool = False) -> Task:
    """The task called ``name`` (with the lesion-level cue if asked, see :class:`Task`); ValueError
    listing the four names for an unknown one, or for a cue the task cannot take."""
    if name not in TASKS:
        raise ValueError(f"unknown task '{name}': choose one of {', '.join(TASKS)}")
    return TASKS[name].with_lesion_level_cue(lesion_level_cue) if lesion_level_cue else TASKS[name]


def task_of_model(description: dict) -> Task:
    """The task a model.json describes: its name and whether it was trained with the lesion-level cue."""
    return get_task(description["task"], bool(description.get("lesion_level_cue", False)))


__all__ = ["CONDITIONAL_SAMPLERS", "DEFAULT_TASK_NAME", "REPAINT_FILL_DEFAULTS", "SYNTHESIS_TASK_NAMES", "TASKS", "TASK_NAMES", "VOID_VALUE", "ConditionalFillTask", "ConditionalTask", "task_of_model",
           "PartialNoisingTask", "RePaintFillTask", "Task", "get_task"]
