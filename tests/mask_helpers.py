"""Reference helpers for tests/test_masks.py, computed independently of the code they check."""
from __future__ import annotations

import numpy as np

from ldiff.masks import ShapePlacer


def dilation_kernel(ndim: int = 3, radius_voxels: float | None = None, *, radius_mm: float | None = None,
                    spacing=None) -> np.ndarray:
    """Brute-force ball structuring element, written here independently of ldiff.masks.morphology:
    offsets whose physical distance is within the radius (voxels count along the finest axis, as
    dilate_mask documents); spacing is (x, y, z) mm and the kernel (z, y, x)."""
    step = np.ones(ndim) if spacing is None else np.asarray(spacing, float)[::-1]
    radius = radius_mm if radius_mm is not None else radius_voxels * float(step.min())
    reach = np.floor(radius / step + 1e-9).astype(int)
    offsets = np.meshgrid(*[np.arange(-h, h + 1) for h in reach], indexing="ij")
    return np.sqrt(sum((o * s) ** 2 for o, s in zip(offsets, step))) <= radius + 1e-9


def place_shape(shape_mask, wm_mask, rng, min_wm_fraction=0.9, centre_weights=None, brain_mask=None,
                forbidden=None, max_tries=50, return_best=False):
    """One shape placed by ShapePlacer, painted into a full-size bool volume (or None)."""
    placer = ShapePlacer(wm_mask, brain_mask, forbidden, centre_weights)
    placement = placer.place(shape_mask, rng, min_wm_fraction, max_tries, return_best)
    if placement is None:
        return None
    volume = np.zeros(placer.shape, dtype=bool)
    placement.paint(volume)
    return volume
