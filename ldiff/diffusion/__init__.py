"""Noise schedules and reverse-process samplers; see ``schedule.py`` and ``samplers.py``."""
from ldiff.diffusion.samplers import (
    DDIMSampler,
    DDPMSampler,
    Sampler,
    SamplerStepOutput,
    build_sampler,
    spaced_timesteps,
)
from ldiff.diffusion.schedule import DEFAULT_SCHEDULE_CONFIG, NoiseSchedule

__all__ = [
    "DEFAULT_SCHEDULE_CONFIG",
    "DDIMSampler",
    "DDPMSampler",
    "NoiseSchedule",
    "Sampler",
    "SamplerStepOutput",
    "build_sampler",
    "spaced_timesteps",
]
