"""Learning rate as a pure function of the step: linear warm-up, then cosine decay.

The rate depends on nothing but the step counter, so resuming a run needs no scheduler state
beyond the step itself (which the checkpoint stores anyway), and two runs that agree on the step
agree on the rate exactly. The state dict exists only so a checkpoint records the schedule that
produced its optimizer state.
"""
from __future__ import annotations

import math
from typing import Any

import torch


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, final_factor: float = 0.0) -> float:
    """Multiplier of the peak learning rate for the update made at ``step`` (0-based).

    - warm-up, ``step < warmup_steps``: ``(step + 1) / warmup_steps``, so the first update already
      moves the weights (a factor of 0 would waste a step) and the peak is reached at the last one;
    - afterwards, half a cosine from 1 down to ``final_factor`` at ``step = total_steps - 1``.

    Returns:
        a float in ``[final_factor, 1]``; steps beyond ``total_steps`` keep ``final_factor``.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(total_steps - 1 - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / decay_steps, 1.0)
    return final_factor + (1.0 - final_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosineSchedule:
    """Sets ``optimizer``'s learning rate to ``peak_lr * warmup_cosine_factor(step, ...)`` before each update.

    Args:
        optimizer: its every parameter group gets the same rate.
        peak_lr: the rate at the end of warm-up (the plan's ``learning_rate``).
        warmup_steps: linear warm-up length in steps (the thesis used 500).
        total_steps: the run's length; the cosine reaches ``final_factor * peak_lr`` at its last step.
        final_factor: fraction of the peak left at the end (0 as in the thesis's cosine schedule).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, peak_lr: float, warmup_steps: int, total_steps: int,
                 final_factor: float = 0.0) -> None:
        if peak_lr <= 0 or warmup_steps < 0 or total_steps < 1 or not 0.0 <= final_factor <= 1.0:
            raise ValueError(f"invalid learning-rate schedule: peak {peak_lr}, warm-up {warmup_steps}, "
                             f"total {total_steps}, final factor {final_factor}.")
        self.optimizer = optimizer
        self.peak_lr = float(peak_lr)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.final_factor = float(final_factor)

    def lr_at(self, step: int) -> float:
        """The learning rate of the update made at ``step``."""
        return self.peak_lr * warmup_cosine_factor(step, self.warmup_steps, self.total_steps, self.final_factor)

    def apply(self, step: int) -> float:
        """Write the rate of ``step`` into every parameter group and return it."""
        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict[str, Any]:
        """Plain numbers only (loadable with ``torch.load(weights_only=True)``)."""
        return {"peak_lr": self.peak_lr, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps,
                "final_factor": self.final_factor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a saved schedule (a resumed run may still extend ``total_steps`` afterwards)."""
        self.peak_lr = float(state["peak_lr"])
        self.warmup_steps = int(state["warmup_steps"])
        self.total_steps = int(state["total_steps"])
        self.final_factor = float(state["final_factor"])
