"""One entry point for the classic fillers: choose by name, seed once."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ldiff.evaluation.classic.biharmonic import fill_biharmonic
from ldiff.evaluation.classic.lesions import Spacing
from ldiff.evaluation.classic.nawm import fill_nawm
from ldiff.evaluation.classic.patch import fill_patch
from ldiff.evaluation.classic.rim import fill_rim
from ldiff.evaluation.classic.ringmedian import fill_ringmedian
from ldiff.evaluation.classic.slf import fill_slf

CLASSIC_METHODS = ("nawm", "rim", "patch", "biharmonic", "ringmedian", "slf")

_FILLERS: dict[str, Callable[..., np.ndarray]] = {
    "nawm": fill_nawm,
    "rim": fill_rim,
    "patch": fill_patch,
    "biharmonic": fill_biharmonic,
    "ringmedian": fill_ringmedian,
    "slf": fill_slf,
}


def classic_fill(
    image: np.ndarray,
    lesion_mask: np.ndarray,
    method: str,
    spacing: Spacing | None,
    seed: int | Sequence[int] = 0,
    wm_mask: np.ndarray | None = None,
    **options,
) -> np.ndarray:
    """Fill the lesions of ``image`` with the classic filler ``method`` (one of ``CLASSIC_METHODS``).

    ``image``: (Z, Y, X) intensities, any scale. ``lesion_mask``: same shape, nonzero = lesion.
    ``spacing``: (x, y, z) mm. ``seed``: an int or a sequence of ints (as ``numpy.random.default_rng``
    takes); the same seed gives the same output. ``wm_mask``: optional, nonzero = white matter.
    ``options``: keyword parameters of the chosen ``fill_<method>`` function. Returns a new array
    (float dtype of the input, float64 for integer input) equal to the input outside the mask.
    """
    if method not in _FILLERS:
        raise ValueError(f"unknown classic fill method {method!r}; choose one of {', '.join(CLASSIC_METHODS)}")
    rng = np.random.default_rng(seed)
    return _FILLERS[method](image, lesion_mask, spacing, rng, wm_mask, **options)
