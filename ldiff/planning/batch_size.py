"""Choosing the largest batch size that fits a memory budget.

On a CUDA device the decision is measured: the planned network runs a real forward and backward pass
(bf16 autocast, as in training) and a binary search finds the largest batch whose peak allocated
memory stays under the target. Without CUDA it is an estimate: activation memory traced on torch's
``meta`` device (no real allocation) plus weights, gradients, AdamW moments and an EMA copy, checked
against a RAM target. The plan records which method decided.
"""
from __future__ import annotations

from typing import Callable

import torch

from ldiff.networks import build_network, count_parameters, estimate_training_memory_bytes
from ldiff.networks.memory import OPTIMIZER_STATE_COPIES, PARAMETER_BYTES


def largest_fitting(fits: Callable[[int], bool], max_batch_size: int) -> int:
    """Largest ``b`` in [1, max_batch_size] with ``fits(b)``, assuming ``fits`` is monotone; 0 if none."""
    if max_batch_size < 1 or not fits(1):
        return 0
    low, high = 1, max_batch_size
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def estimate_batch_size(network_config: dict, sample_shape: tuple[int, ...], memory_target_bytes: int,
                        max_batch_size: int) -> tuple[int, int]:
    """Return (batch size, estimated bytes at that batch size) from the meta-device estimate.

    The estimate is affine in the batch size (activations per sample + fixed per-parameter state),
    so one trace at batch size 1 gives it exactly; the result is at least 1 even when one sample
    exceeds the target.
    """
    with torch.device("meta"):
        parameters = count_parameters(build_network(network_config))
    fixed = parameters * PARAMETER_BYTES * OPTIMIZER_STATE_COPIES
    per_sample = estimate_training_memory_bytes(network_config, sample_shape, 1) - fixed
    fitting = (memory_target_bytes - fixed) // max(per_sample, 1)
    batch_size = int(min(max(fitting, 1), max_batch_size))
    return batch_size, int(fixed + per_sample * batch_size)


def measure_batch_size_cuda(network_config: dict, sample_shape: tuple[int, ...], memory_target_bytes: int,
                            max_batch_size: int, device: str = "cuda") -> tuple[int, int]:
    """Return (batch size, measured peak bytes) from real forward+backward passes on a CUDA device."""
    model = build_network(network_config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    peaks: dict[int, int] = {}

    def fits(batch_size: int) -> bool:
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        try:
            inputs = torch.randn((batch_size, *sample_shape), device=device)
            timesteps = torch.randint(0, 1000, (batch_size,), device=device)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(inputs, timesteps).float().pow(2).mean()
            loss.backward()
            optimizer.step()  # allocates the AdamW moments, part of real training memory
            torch.cuda.synchronize(device)
        except torch.cuda.OutOfMemoryError:
            return False
        finally:
            optimizer.zero_grad(set_to_none=True)
        peaks[batch_size] = int(torch.cuda.max_memory_allocated(device))
        return peaks[batch_size] <= memory_target_bytes

    batch_size = max(1, largest_fitting(fits, max_batch_size))
    return batch_size, peaks.get(batch_size, 0)  # model and optimizer are freed when this returns
