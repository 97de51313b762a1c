"""One way to run a per-case function over many cases: worker processes, a progress bar, clear failures."""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Sequence

from tqdm import tqdm

from ldiff.errors import LdiffError


def default_num_workers() -> int:
    return max(1, min(8, (multiprocessing.cpu_count() or 2)))


def map_cases(function: Callable[[Any], Any], cases: Sequence[Any], num_workers: int, description: str) -> list[Any]:
    """``[function(case) for case in cases]`` in ``num_workers`` processes, in order, with a tqdm bar.

    A worker that dies (killed for memory, say) becomes one sentence naming the case it was working on.
    """
    if num_workers <= 1 or len(cases) <= 1:
        return [function(case) for case in tqdm(cases, desc=description, unit="case", leave=False)]
    results: list[Any] = [None] * len(cases)
    # spawn, not fork: torch and SimpleITK threads do not survive a fork reliably.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=num_workers, mp_context=context) as pool:
        futures = {pool.submit(function, case): index for index, case in enumerate(cases)}
        with tqdm(total=len(cases), desc=description, unit="case", leave=False) as bar:
            for future, index in futures.items():
                try:
                    results[index] = future.result()
                except BrokenProcessPool:
                    name = getattr(cases[index], "identifier", str(cases[index]))
                    raise LdiffError(
                        f"A worker process died while {description} case {name} (out of memory?): "
                        f"rerun with fewer workers, e.g. -np 1."
                    ) from None
                bar.update(1)
    return results
