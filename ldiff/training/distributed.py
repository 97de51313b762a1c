"""Data-parallel training with ``torch.distributed``: started by ``torchrun`` or spawned by ldiff itself.

Two ways to get W processes, both ending in the same :class:`DistributedContext`:

- ``torchrun --nproc_per_node 4 $(which ldiff_train) 1 2d cond_fill`` (also multi-node): torchrun sets
  ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`context_from_environment`
  reads them.
- ``ldiff_train ... --num-gpus 4`` (or ``--num-processes 2 --device cpu``): :func:`spawn` starts the W
  processes on this machine with a free local port.

Backend: NCCL on CUDA, gloo on the CPU. Each rank trains on ``global batch / W`` samples and DDP
averages the gradients, so W ranks with per-rank batch b make the same update as one process with
batch W*b (see ``trainer.py`` for why the loss and the noise keep that exact).
"""
from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes files, validates and shows a progress bar."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """Whether this process was started by torchrun (or another launcher that sets WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def find_free_port() -> int:
    """A TCP port on localhost that nothing listens on right now (for the spawned rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def initialise(device_type: str, rank: int | None = None, world_size: int | None = None,
               local_rank: int | None = None) -> DistributedContext:
    """Join the process group (when there is more than one process) and pick this rank's device.

    Args:
        device_type: ``"cpu"`` or ``"cuda"``.
        rank, world_size, local_rank: given by :func:`spawn`; read from the environment otherwise.
    """
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    local_rank = int(os.environ.get("LOCAL_RANK", rank)) if local_rank is None else local_rank
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
        if world_size > 1 and "OMP_NUM_THREADS" not in os.environ:
            # W processes with one thread per core each would oversubscribe the cores many times over
            # (torchrun sets OMP_NUM_THREADS=1 for the same reason).
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                device_id=device if device_type == "cuda" else None)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown() -> None:
    """Leave the process group if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Mean of ``value`` over all ranks (a no-op copy for one process)."""
    if not context.is_distributed:
        return value.clone()
    reduced = value.detach().clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced / context.world_size


def barrier(context: DistributedContext) -> None:
    if context.is_distributed:
        dist.barrier()


def _spawned_entry(local_rank: int, world_size: int, port: int, function: Callable[..., Any],
                   arguments: tuple) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(local_rank),
                       "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(local_rank)})
    # A spawned process starts with unconfigured logging: rank 0 reports like the parent would.
    logging.basicConfig(level=logging.INFO if local_rank == 0 else logging.WARNING, format="%(message)s")
    function(*arguments)


def spawn(function: Callable[..., Any], world_size: int, arguments: tuple = ()) -> None:
    """Run ``function(*arguments)`` in ``world_size`` new local processes that form one process group.

    Each process sees RANK/WORLD_SIZE/LOCAL_RANK in its environment, exactly as under torchrun, so
    ``function`` needs no second code path. Raises if any process fails.
    """
    import torch.multiprocessing as multiprocessing

    port = find_free_port()
    multiprocessing.spawn(_spawned_entry, args=(world_size, port, function, arguments), nprocs=world_size, join=True)
