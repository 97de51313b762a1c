"""The stream of training batches: step-numbered, split across DDP ranks, made by background workers.

The batch of step s on rank r holds the samples with global indices [r * B, (r + 1) * B) of step s.
Since every sample is a pure function of (seed, step, index) (see :mod:`ldiff.training.data`):

* one process with batch size B * W sees exactly the union of W ranks with batch size B;
* a run resumed at step k sees exactly the batches an uninterrupted run saw from step k on;
* the number of workers changes the speed, never the data.

Workers are batchgenerators' MultiThreadedAugmenter processes: worker w computes steps
``start + w, start + w + n, ...`` and the augmenter collects the worker queues in round-robin order
(worker 0, 1, ..., n - 1, 0, ...), which puts the steps back in order; the consumer checks every
step number anyway. Workers send numpy arrays (pickled through the queue); the consumer wraps them
as torch tensors without copying.

Shutting down: :class:`TrainingBatches` is a context manager and has :meth:`TrainingBatches.close`;
use ``with training_batches(...) as batches:`` or call ``close()`` when done. The workers are daemon
processes, so even a forgotten iterator cannot keep the interpreter alive.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

if TYPE_CHECKING:
    from ldiff.training.data import SampleSource

# Batches each worker may hold ready; two is what batchgenerators recommends.
BATCHES_CACHED_PER_WORKER = 2


def rank_indices(batch_size: int, rank: int) -> range:
    """Global sample indices of ``rank``'s part of a step."""
    return range(rank * batch_size, (rank + 1) * batch_size)


class _StepLoader:
    """The data loader one worker runs: the batches of steps ``start_step + w + k * num_workers``.

    batchgenerators calls :meth:`set_thread_id` with the worker's number before the first batch.
    """

    def __init__(self, source: "SampleSource", batch_size: int, start_step: int, rank: int, num_workers: int):
        self.source = source
        self.indices = rank_indices(batch_size, rank)
        self.start_step = start_step
        self.stride = max(1, num_workers)
        self.next_step = start_step

    def set_thread_id(self, thread_id: int) -> None:
        self.next_step = self.start_step + int(thread_id)

    def __iter__(self) -> "_StepLoader":
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        step = self.next_step
        self.next_step += self.stride
        batch = self.source.batch(step, self.indices)
        batch["step"] = np.array(step, dtype=np.int64)
        return batch


class TrainingBatches(Iterator[tuple[int, dict[str, torch.Tensor]]]):
    """Infinite iterator of ``(step, batch)``; see the module docstring. Close it (or use ``with``).

    ``batch`` maps "image", "paint_mask" and "loss_mask" to torch.float32 tensors of shape
    (batch_size, C, *S) and (batch_size, 1, *S) (S = (H, W) or (D, H, W)).
    """

    def __init__(self, source: "SampleSource", batch_size: int, start_step: int, rank: int = 0,
                 world_size: int = 1, num_workers: int = 2):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}.")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}.")
        self.next_step = int(start_step)
        self._loader = _StepLoader(source, batch_size, int(start_step), rank, num_workers)
        self._augmenter = None
        self._closed = False
        if num_workers > 0:
            # Imported here: batchgenerators is only needed when there are workers.
            from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter

            # Workers start on the first next(); seeds are irrelevant as nothing uses numpy's global RNG.
            self._augmenter = MultiThreadedAugmenter(self._loader, None, num_workers,
                                                     num_cached_per_queue=BATCHES_CACHED_PER_WORKER,
                                                     seeds=None, pin_memory=False)

    def __iter__(self) -> "TrainingBatches":
        return self

    def __next__(self) -> tuple[int, dict[str, torch.Tensor]]:
        if self._closed:
            raise StopIteration
        try:
            item = next(self._augmenter) if self._augmenter is not None else next(self._loader)
            step = int(item.pop("step"))
            if step != self.next_step:
                # Would mean the augmenter stopped returning its queues round-robin: fail loudly,
                # since silently reordered steps would break resumption and DDP equivalence.
                raise RuntimeError(f"data workers delivered step {step} where step {self.next_step} was due.")
        except BaseException:
            self.close()  # never leave workers behind an iterator that can no longer be used
            raise
        self.next_step += 1
        return step, {key: torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)) for key, value in item.items()}

    def close(self) -> None:
        """Stop and join the worker processes (idempotent); further next() calls raise StopIteration."""
        self._shutdown(force=False)

    def _shutdown(self, force: bool) -> None:
        if self._closed:
            return
        self._closed = True
        if self._augmenter is not None:
            augmenter, self._augmenter = self._augmenter, None
            # batchgenerators' only shutdown method (nnU-Net calls it too); "force" is its fast path
            # for garbage collection, when multiprocessing may already be half torn down.
            augmenter._finish(timeout=2, force=True) if force else augmenter._finish()

    def __enter__(self) -> "TrainingBatches":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._shutdown(force=True)
        except Exception:
            pass  # interpreter shutdown may already have torn down multiprocessing


def training_batches(source: "SampleSource", batch_size: int, start_step: int, rank: int = 0, world_size: int = 1,
                     num_workers: int = 2) -> TrainingBatches:
    """Infinite ``(step, batch)`` iterator from ``start_step`` on; ``num_workers=0`` computes in-process.

    Returns a :class:`TrainingBatches`, which must be closed: ``with training_batches(...) as batches``.
    """
    return TrainingBatches(source, batch_size, start_step, rank, world_size, num_workers)
