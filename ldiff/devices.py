"""Choosing the torch device for ``--device auto|cpu|cuda``, shared by training and prediction."""
from __future__ import annotations

import torch

from ldiff.errors import LdiffError


def resolve_device(requested: str, num_processes: int = 1) -> str:
    """``"cpu"`` or ``"cuda"`` for ``--device auto|cpu|cuda``; one sentence when CUDA is asked for but absent."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise LdiffError("CUDA was asked for (--device cuda or --num-gpus), but torch sees no CUDA device.")
        if num_processes > torch.cuda.device_count():
            raise LdiffError(f"{num_processes} GPU processes were asked for, but torch sees "
                             f"{torch.cuda.device_count()} GPU(s).")
    return requested
