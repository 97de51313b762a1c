"""RePaint (Lugmayr et al. 2022): inpainting with an unconditional model by resampling.

An unconditional model never sees the known region, so after every reverse step the known region is
overwritten by the known image noised to the new timestep (fresh noise), and the unknown region keeps
the model's update. Merged this way, the two halves disagree at the mask border; RePaint lets them
harmonise by jumping back: every ``jump_length`` steps the whole image is re-noised ``jump_length``
steps up with the forward process and denoised again, ``num_resamplings - 1`` extra times.

The walk over the timestep grid (DDIM-spaced, or every training step for DDPM):

- the grid is ``[*timesteps, -1]``; its positions run from ``0`` (the noisiest) to ``N`` (clean);
- jump points are the positions ``N, N - j, N - 2j, ...`` (counted back from the clean end, as in
  the original code) from which a jump of ``j = jump_length`` positions stays inside the walk;
- a down move is one network call; a jump up is one multi-step re-noising
  (:func:`~ldiff.diffusion.walk.renoise`) over ``j`` positions.

Network calls for a walk of ``n`` steps: ``n + floor(n / j) * (num_resamplings - 1) * j``; the thesis
setting (50 steps, jump 8, 10 resamplings) gives ``50 + 6 * 9 * 8 = 482``. The original code also
refuses a jump that would land on the walk's first position; here such a jump is allowed, which only
matters when ``n`` is a multiple of ``j``.
"""
from __future__ import annotations

from typing import Any

import torch

from ldiff.diffusion.samplers import DDIMSampler
from ldiff.diffusion.schedule import NoiseSchedule
from ldiff.diffusion.walk import ModelFn, Move


class RePaintSampler(DDIMSampler):
    """RePaint over a DDIM-spaced grid: a DDIM sampler whose walk jumps back; configured by a JSON-able dict.

    Its reverse step is DDIM's (eta 1 by default: a respaced DDPM step); :meth:`moves` adds the jumps,
    and the inherited :meth:`inpaint` runs the one sampling loop (:func:`~ldiff.diffusion.walk.run_walk`) over them.

    Args:
        schedule: the noise schedule the unconditional network was trained with.
        num_inference_steps: steps of the grid (``schedule.num_train_timesteps`` gives DDPM's grid).
        jump_length: positions per jump back, ``>= 1``; ``None`` jumps back over the whole walk (the
            thesis's partial-noising synthesis: "jump t0").
        num_resamplings: passes over each stretch between jump points, ``>= 1``; ``1`` is plain
            replacement inpainting with as many network calls as DDIM.
        spacing: ``"trailing"`` or ``"leading"``, see :func:`~ldiff.diffusion.samplers.spaced_timesteps`.
        eta: DDIM stochasticity of each reverse step. Default 1 (ancestral steps, equal to a respaced
            DDPM step): RePaint's resampling argument is made for the stochastic posterior step.
            ``0`` gives deterministic DDIM steps (the ``diffusers`` default the thesis ran with);
            the re-noising still injects noise, so resampling then harmonises less.
        clip_sample: clamp predicted ``x0`` to ``[-1, 1]``; ``None`` follows the schedule.
    """

    name = "repaint"

    def __init__(
        self,
        schedule: NoiseSchedule,
        num_inference_steps: int = 50,
        jump_length: int | None = 8,
        num_resamplings: int = 10,
        spacing: str = "trailing",
        eta: float = 1.0,
        clip_sample: bool | None = None,
    ) -> None:
        if jump_length is not None and (isinstance(jump_length, bool) or not isinstance(jump_length, int) or jump_length < 1):
            raise ValueError(f"jump_length must be a positive integer or null, got {jump_length!r}.")
        if isinstance(num_resamplings, bool) or not isinstance(num_resamplings, int) or num_resamplings < 1:
            raise ValueError(f"num_resamplings must be an integer >= 1, got {num_resamplings!r}.")
        super().__init__(schedule, num_inference_steps, spacing, eta=eta, clip_sample=clip_sample)
        self.jump_length = jump_length
        self.num_resamplings = num_resamplings

    # ----------------------------------------------------------------------------------- config
    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings (not the schedule) that :meth:`from_dict` turns back into this sampler."""
        return {
            "name": self.name,
            "num_inference_steps": self.num_inference_steps,
            "jump_length": self.jump_length,
            "num_resamplings": self.num_resamplings,
            "spacing": self.spacing,
            "eta": self.eta,
            "clip_sample": self.clip_sample,
        }

    @classmethod
    def from_dict(cls, schedule: NoiseSchedule, config: dict[str, Any]) -> "RePaintSampler":
        """Build from ``to_dict()``'s output; missing keys take the constructor defaults.

        Raises:
            ValueError: for another ``name``, an unknown key or an invalid value.
        """
        settings = dict(config)
        name = settings.pop("name", cls.name)
        if name != cls.name:
            raise ValueError(f"expected a {cls.name!r} sampler config, got name {name!r}.")
        try:
            return cls(schedule, **settings)
        except TypeError as error:  # an unknown keyword is a config problem
            raise ValueError(f"invalid settings for sampler {cls.name!r}: {error}") from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items() if k != 'name')})"

    # ----------------------------------------------------------------------------------- the walk
    def moves(self, start_timestep: int | None = None) -> list[Move]:
        """Every move of the walk in order, as ``(t_from, t_to)``; see the module docstring."""
        levels = self.levels(start_timestep)
        steps = len(levels) - 1
        jump = steps if self.jump_length is None else self.jump_length
        # Extra passes left at each jump point; a jump up lands on an exhausted (or no) jump point.
        remaining: dict[int, int] = {}
        if jump >= 1:
            remaining = {position: self.num_resamplings - 1 for position in range(steps, jump - 1, -jump)}
        moves: list[Move] = []
        position = 0
        while position < steps:
            moves.append((levels[position], levels[position + 1]))
            position += 1
            if remaining.get(position, 0) > 0:
                remaining[position] -= 1
                # One multi-step re-noising has the law of `jump` single-step ones, with fewer draws.
                moves.append((levels[position], levels[position - jump]))
                position -= jump
        return moves

    def count_network_calls(self, start_timestep: int | None = None) -> int:
        """Network calls of one :meth:`sample` (the number of down moves)."""
        return sum(t_to < t_from for t_from, t_to in self.moves(start_timestep))

    @property
    def network_calls(self) -> int:
        """Network calls of a full RePaint sample; the thesis's 50 / 8 / 10 gives 482."""
        return self.count_network_calls()

    # ----------------------------------------------------------------------------------- sampling
    def sample(self, model_fn: ModelFn, known_image: torch.Tensor, mask: torch.Tensor,  # type: ignore[override]
               generator: torch.Generator | None = None, **keywords) -> torch.Tensor:
        """RePaint always inpaints: the same as :meth:`~ldiff.diffusion.samplers.Sampler.inpaint`."""
        return self.inpaint(model_fn, known_image, mask, generator, **keywords)
