"""Placing a lesion shape in white matter: choose where a shape goes so that it lies in WM.

This fixes the thesis's circles, which had no anatomical constraint and could land outside the
brain. A placement anchors the shape's deepest voxel on a candidate WM voxel (optionally drawn with
a preference such as closeness to the ventricles, where MS lesions cluster) and accepts it when at
least ``min_wm_fraction`` of the shape's voxels fall in usable WM.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ldiff.masks.geometry import Spacing, spacing_for_array


@dataclass(frozen=True)
class Placement:
    """A placed shape: ``mask`` (bool crop, clipped to the allowed region) goes at ``volume[slices]``."""

    slices: tuple[slice, ...]
    mask: np.ndarray
    wm_fraction: float

    def paint(self, volume: np.ndarray) -> None:
        """OR this placement into a full-size bool ``volume`` in place."""
        volume[self.slices] |= self.mask


def deepest_voxel(shape_mask: np.ndarray) -> tuple[int, ...]:
    """Index of the shape voxel farthest from the shape's outside (first one on ties)."""
    padded = np.pad(np.asarray(shape_mask, dtype=bool), 1)
    depth = ndimage.distance_transform_edt(padded)
    return tuple(int(i) - 1 for i in np.unravel_index(int(np.argmax(depth)), padded.shape))


class ShapePlacer:
    """Places shapes in one volume (2D or 3D); precomputes the candidate voxels once for many shapes.

    ``wm_mask``: where lesions may lie. ``brain_mask`` (optional): nothing returned is ever outside
    it. ``forbidden`` (optional): voxels never returned and counted as not-WM, e.g. an image's real
    lesions so that a fill target never contains real lesion tissue. ``centre_weights`` (optional,
    >= 0, same shape): relative probability of each WM voxel as anchor; uniform over WM otherwise.
    """

    def __init__(
        self,
        wm_mask: np.ndarray,
        brain_mask: np.ndarray | None = None,
        forbidden: np.ndarray | None = None,
        centre_weights: np.ndarray | None = None,
    ):
        wm = np.asarray(wm_mask, dtype=bool)
        self.shape = wm.shape
        allowed = np.ones(self.shape, dtype=bool)
        for name, extra in (("brain_mask", brain_mask), ("forbidden", forbidden)):
            if extra is not None and np.shape(extra) != self.shape:
                raise ValueError(f"{name} shape {np.shape(extra)} differs from wm_mask shape {self.shape}")
        if brain_mask is not None:
            allowed &= np.asarray(brain_mask, dtype=bool)
        if forbidden is not None:
            allowed &= ~np.asarray(forbidden, dtype=bool)
        self.allowed = allowed
        self.acceptable = wm & allowed
        self.candidates = np.flatnonzero(self.acceptable)
        self._cumulative: np.ndarray | None = None
        if centre_weights is not None:
            if np.shape(centre_weights) != self.shape:
                raise ValueError(f"centre_weights shape {np.shape(centre_weights)} differs from {self.shape}")
            weights = np.asarray(centre_weights, dtype=float).ravel()[self.candidates]
            if np.any(weights < 0) or not np.all(np.isfinite(weights)):
                raise ValueError("centre_weights must be finite and >= 0")
            keep = weights > 0
            self.candidates = self.candidates[keep]
            # A cumulative table makes each draw a binary search instead of an O(n) rng.choice.
            self._cumulative = np.cumsum(weights[keep])

    @property
    def has_candidates(self) -> bool:
        return self.candidates.size > 0

    def _draw_anchor(self, rng: np.random.Generator) -> tuple[int, ...]:
        if self._cumulative is None:
            flat = self.candidates[int(rng.integers(self.candidates.size))]
        else:
            position = np.searchsorted(self._cumulative, rng.random() * self._cumulative[-1], side="right")
            flat = self.candidates[min(int(position), self.candidates.size - 1)]
        return tuple(int(i) for i in np.unravel_index(int(flat), self.shape))

    def _try(self, shape: np.ndarray, anchor_in_shape: tuple[int, ...], centre: tuple[int, ...]) -> Placement:
        origin = [c - a for c, a in zip(centre, anchor_in_shape)]
        volume_slices, shape_slices = [], []
        for start, size, limit in zip(origin, shape.shape, self.shape):
            low, high = max(start, 0), min(start + size, limit)
            volume_slices.append(slice(low, high))
            shape_slices.append(slice(low - start, high - start))
        piece = shape[tuple(shape_slices)]
        volume_slices = tuple(volume_slices)
        # Parts cut off by the volume edge count against the fraction: they are certainly not in WM.
        in_wm = np.count_nonzero(piece & self.acceptable[volume_slices])
        fraction = in_wm / max(np.count_nonzero(shape), 1)
        return Placement(volume_slices, piece & self.allowed[volume_slices], float(fraction))

    def place(
        self,
        shape_mask: np.ndarray,
        rng: np.random.Generator,
        min_wm_fraction: float = 0.9,
        max_tries: int = 50,
        return_best: bool = False,
    ) -> Placement | None:
        """Try up to ``max_tries`` random anchors; return the first with enough WM, else see below.

        When no try reaches ``min_wm_fraction``: None, or with ``return_best`` the try with the largest
        WM fraction. Always None when there is no candidate voxel (no usable WM). Because the anchor is
        a shape voxel placed on usable WM, every try overlaps WM in at least one voxel.
        """
        shape = np.asarray(shape_mask, dtype=bool)
        if shape.ndim != len(self.shape):
            raise ValueError(f"a {shape.ndim}D shape cannot be placed in a {len(self.shape)}D volume")
        if not self.has_candidates or not shape.any():
            return None
        anchor = deepest_voxel(shape)
        best: Placement | None = None
        for _ in range(max(1, max_tries)):
            placement = self._try(shape, anchor, self._draw_anchor(rng))
            if placement.wm_fraction >= min_wm_fraction:
                return placement
            if best is None or placement.wm_fraction > best.wm_fraction:
                best = placement
        return best if return_best else None


def periventricular_weights(
    ventricle_mask: np.ndarray, spacing: Spacing | None = None, scale_mm: float = 10.0
) -> np.ndarray:
    """A centre preference exp(-distance / scale_mm) to the nearest ventricle voxel; float32, same shape.

    MS lesions are most frequent around the lateral ventricles; ``scale_mm`` sets how quickly the
    preference decays (at 3 * scale_mm it is 5 % of the value next to the ventricles). An empty
    ventricle mask gives uniform weights.
    """
    ventricles = np.asarray(ventricle_mask, dtype=bool)
    if scale_mm <= 0:
        raise ValueError(f"scale_mm must be > 0, got {scale_mm}")
    if not ventricles.any():
        return np.ones(ventricles.shape, dtype=np.float32)
    distance = ndimage.distance_transform_edt(~ventricles, sampling=spacing_for_array(spacing, ventricles.ndim))
    return np.exp(-distance / scale_mm).astype(np.float32)
