"""Fill a painted region along several slice views and average the fills inside it.

The sampling of one view is the caller's (``Predictor._sample`` on a volume already in that view's
axis order, with its ROI plan); this module only turns volumes into each view and back, gives each
view its seed and averages. See :mod:`ldiff.slice_views`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ldiff.seeds import keyed_seed
from ldiff.slice_views import ALL_VIEWS, from_view, to_view

# (image (C, *S), paint (*S), seed) -> the sampled image (C, *S) and the number of crops it used
SampleOneView = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, int]]


def view_seed(seed: int, view: str) -> int:
    """The axial view keeps the case's seed (an axial fill is what it always was); every other view has its
    own, so a view's draws do not depend on which other views run."""
    return seed if view == "axial" else keyed_seed(seed, ALL_VIEWS.index(view))


def fill_along_views(start: np.ndarray, paint: np.ndarray, views: Sequence[str], seed: int,
                     sample_one_view: SampleOneView) -> tuple[np.ndarray, int]:
    """``start`` (C, Z, Y, X) with the ``paint`` voxels replaced by the mean of each view's fill.

    Returns (the filled volume, the crops sampled over all views). Only the painted voxels are averaged,
    so everything else is ``start`` exactly, and a single view gives exactly that view's fill.
    """
    painted = start.copy()
    fills, crops = [], 0
    for view in views:
        filled, used = sample_one_view(to_view(start, view), to_view(paint, view), view_seed(seed, view))
        fills.append(from_view(filled, view)[:, paint])
        crops += used
    painted[:, paint] = np.mean(fills, axis=0, dtype=np.float64).astype(painted.dtype)
    return painted, crops
