"""Small shared helpers: spacing conventions and cropping of boolean masks.

Arrays are indexed (z, y, x) (or (y, x) for an axial slice) while spacings are given in SimpleITK's
(x, y, z) order, so every function that mixes the two goes through :func:`spacing_for_array`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

Spacing = Sequence[float]


def spacing_for_array(spacing: Spacing | None, ndim: int) -> np.ndarray:
    """Turn an (x, y[, z]) spacing in mm into per-array-axis spacing, i.e. (z, y, x) or (y, x).

    ``None`` means 1 mm along every axis. A 3-element spacing is accepted for a 2D (y, x) slice: the
    slice is axial, so only its in-plane (x, y) part is used.
    """
    if spacing is None:
        return np.ones(ndim, dtype=float)
    values = np.asarray(spacing, dtype=float).ravel()
    if ndim == 2 and values.size == 3:
        values = values[:2]
    if values.size != ndim:
        raise ValueError(f"spacing {tuple(spacing)} does not fit a {ndim}D array")
    if np.any(~np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"spacing must be positive and finite, got {tuple(spacing)}")
    return values[::-1].copy()


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The tight bounding box of the True voxels of ``mask`` as slices, or None if it is empty."""
    if not mask.any():
        return None
    box = []
    for axis in range(mask.ndim):
        other_axes = tuple(a for a in range(mask.ndim) if a != axis)
        present = np.flatnonzero(mask.any(axis=other_axes))
        box.append(slice(int(present[0]), int(present[-1]) + 1))
    return tuple(box)


def padded_box(box: tuple[slice, ...], pad: Sequence[int], shape: Sequence[int]) -> tuple[slice, ...]:
    """Grow ``box`` by ``pad[i]`` voxels on both sides of axis i, clipped to the array ``shape``."""
    return tuple(
        slice(max(0, s.start - p), min(n, s.stop + p)) for s, p, n in zip(box, pad, shape)
    )


def crop_to_content(mask: np.ndarray) -> np.ndarray:
    """The boolean mask cropped to its bounding box (an empty mask gives an empty-shaped array)."""
    mask = np.asarray(mask, dtype=bool)
    box = bounding_box(mask)
    if box is None:
        return np.zeros((0,) * mask.ndim, dtype=bool)
    return mask[box].copy()
