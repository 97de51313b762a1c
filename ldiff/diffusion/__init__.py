"""Noise schedules and reverse-process samplers; see ``schedule.py`` and ``samplers.py``.

Inpainting (``inpainting.py``: conditional models; ``repaint.py``: RePaint for unconditional ones),
partial-noising lesion synthesis (``synthesis.py``) and DPM-Solver++ (``dpm_solver.py``) build on them.
"""
from ldiff.diffusion.samplers import (
    DDIMSampler,
    DDPMSampler,
    Sampler,
    SamplerStepOutput,
    build_sampler,
    spaced_timesteps,
)
from ldiff.diffusion.schedule import DEFAULT_SCHEDULE_CONFIG, NoiseSchedule
from ldiff.diffusion.dpm_solver import DPMSolverSampler
from ldiff.diffusion.inpainting import conditional_inpaint, paste_back, renoise, validate_mask
from ldiff.diffusion.repaint import RePaintSampler
from ldiff.diffusion.synthesis import (
    PARTIAL_NOISING_DEFAULTS,
    paint_coarse_lesion,
    resolve_t0,
    synthesise_by_partial_noising,
)

__all__ = [
    "DEFAULT_SCHEDULE_CONFIG",
    "DDIMSampler",
    "DDPMSampler",
    "DPMSolverSampler",
    "PARTIAL_NOISING_DEFAULTS",
    "RePaintSampler",
    "NoiseSchedule",
    "Sampler",
    "SamplerStepOutput",
    "build_sampler",
    "conditional_inpaint",
    "paint_coarse_lesion",
    "paste_back",
    "renoise",
    "resolve_t0",
    "spaced_timesteps",
    "synthesise_by_partial_noising",
    "validate_mask",
]
