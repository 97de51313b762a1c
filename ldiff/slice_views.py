"""Slice orientations of a (Z, Y, X) volume in RAS order: which axis a 2D (or pseudo-3D) model slices along.

Preprocessed volumes are (Z, Y, X) with Z inferior-superior, Y posterior-anterior and X left-right
(RAS). A view is an axis order under which axis 0 is the slicing axis: the model then sees the
in-plane axes 1 and 2 exactly as in its training. Training with ``slice_axes="all"`` draws samples from
all three views; prediction with several views fills the mask once per view and averages, which gives a
2D model's fill the 3D consistency that one stack of axial slices lacks (each view's errors differ).

Every view is its own inverse permutation (it swaps two axes or none), so :func:`from_view` is
:func:`to_view` again; both are spelled out for the reader.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

# view name -> the (Z, Y, X) axis that becomes each axis of the view (axis 0 is sliced)
VIEWS: dict[str, tuple[int, int, int]] = {
    "axial": (0, 1, 2),     # slices along Z; in-plane (Y, X), as the plans' slice_axis 0
    "coronal": (1, 0, 2),   # slices along Y; in-plane (Z, X)
    "sagittal": (2, 1, 0),  # slices along X; in-plane (Y, Z)
}
ALL_VIEWS: tuple[str, ...] = tuple(VIEWS)
# Views in which mirroring the last in-plane axis is left-right, i.e. anatomically plausible.
MIRRORABLE_VIEWS = frozenset({"axial", "coronal"})


def check_views(views: Sequence[str]) -> tuple[str, ...]:
    """``views`` as a tuple, or ValueError naming the unknown or repeated one."""
    views = tuple(views)
    if not views:
        raise ValueError("at least one view is needed (axial, coronal, sagittal).")
    for view in views:
        if view not in VIEWS:
            raise ValueError(f"unknown view {view!r}; choose from {', '.join(ALL_VIEWS)}.")
    if len(set(views)) != len(views):
        raise ValueError(f"views repeat: {', '.join(views)}.")
    return views


def parse_views(views: str | Sequence[str]) -> tuple[str, ...]:
    """``"all"``, names joined by ``+`` (the form a benchmark method spec carries) or a sequence of names,
    checked by :func:`check_views`."""
    if isinstance(views, str):
        views = ALL_VIEWS if views == "all" else tuple(views.split("+"))
    return check_views(views)


def default_views(description: dict) -> tuple[str, ...]:
    """The views a model fills along unless told: all three for a model trained on all of them
    (``training.slice_axes == "all"``) on near-isotropic voxels, else axial only."""
    training = description.get("training") or {}
    if training.get("slice_axes") == "all" and is_isotropic(description.get("target_spacing") or (1.0, 1.0, 1.0)):
        return ALL_VIEWS
    return ("axial",)


def to_view(volume: np.ndarray, view: str) -> np.ndarray:
    """``volume`` (..., Z, Y, X) with its last three axes in ``view`` order, as a contiguous array."""
    axes = VIEWS[view]
    leading = volume.ndim - 3
    order = tuple(range(leading)) + tuple(leading + axis for axis in axes)
    return np.ascontiguousarray(volume.transpose(order))


def from_view(volume: np.ndarray, view: str) -> np.ndarray:
    """The inverse of :func:`to_view`: back to (..., Z, Y, X)."""
    return to_view(volume, view)


def is_isotropic(spacing: Sequence[float], tolerance: float = 1.5) -> bool:
    """True when the largest voxel side is at most ``tolerance`` times the smallest (views look alike)."""
    return max(spacing) <= tolerance * min(spacing)
