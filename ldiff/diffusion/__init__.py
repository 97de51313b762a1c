"""Noise schedules and reverse-process samplers; see ``schedule.py`` and ``samplers.py``.

Every sampler runs the one sampling loop of ``walk.py``: from noise (``Sampler.sample``), or inpainting
a mask (``Sampler.inpaint``: the known region replaced by the noised truth, pasted back at the end).
DDPM and DDIM (``samplers.py``), DPM-Solver++ (``dpm_solver.py``) and RePaint (``repaint.py``: a DDIM
sampler whose walk jumps back, for unconditional models) differ only in their moves and update rule;
partial-noising lesion synthesis (``synthesis.py``) builds on RePaint.
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
from ldiff.diffusion.walk import noise_known_region, paste_back, renoise, run_walk, standard_normal_like, validate_mask
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
    "noise_known_region",
    "run_walk",
    "paint_coarse_lesion",
    "paste_back",
    "renoise",
    "resolve_t0",
    "spaced_timesteps",
    "standard_normal_like",
    "synthesise_by_partial_noising",
    "validate_mask",
]
