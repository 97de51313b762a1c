"""Patch-based non-local-means filling in the style of NiftySeg ``seg_FillLesions`` (Prados et al. 2016).

Prados et al. fill a lesion from its border inwards: each voxel on the current front is given the
weighted mean of the centres of similar patches found in normal tissue nearby, where similarity is
measured only over the part of the front voxel's patch that is already known. The front then
advances (onion peeling) and the freshly filled voxels become known context for the next layer.
Unlike the NAWM and rim fillers this copies structure (edges, texture, intensity trends) from the
surroundings, whatever the modality, and needs no tissue mask.

Implementation, per 26-connected lesion, on a crop of the lesion plus ``search_radius + patch_radius``:

* Patches are cubes of side ``2 * patch_radius + 1`` voxels (default 5x5x5). Candidates are the
  voxels whose whole patch lies inside the image and contains no lesion voxel (of any lesion).
* Front: the unfilled lesion voxels with at least one known 26-neighbour. All front voxels of one
  layer are estimated from the state before that layer, so the result does not depend on the order
  voxels are visited in.
* Distance: mean squared intensity difference over the target patch's known voxels. Weights:
  exp(-(d^2 - min d^2) / h^2) with h^2 = 2 sigma^2 h_factor^2, where sigma is the image noise estimated
  from pseudo-residuals of the known voxels (Coupe et al. 2008), so a candidate that differs only by
  noise gets a weight of about exp(-1) relative to the best one. Subtracting the row minimum changes
  no ratio of weights but keeps the exponentials from underflowing.
* Search window: candidates within ``search_radius`` voxels (Chebyshev) of the front voxel. Front
  voxels are processed in blocks of ``block_size``^3 voxels that share one candidate pool; a pool
  larger than ``max_candidates`` is subsampled at random with ``rng`` (the only use of randomness).

Patches and windows are in voxel units, so anisotropic scans get anisotropic patches. Voxels with
no candidate in reach (a lesion surrounded by other lesions) get the mean of their patch's known voxels.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ContextManager

import numpy as np
from scipy import ndimage

from ldiff.evaluation.classic.lesions import (
    FULL_CONNECTIVITY,
    Spacing,
    check_fill_inputs,
    iterate_lesions,
    output_like,
)

_MAD_TO_SD = 1.4826


def _single_threaded_blas() -> ContextManager:
    """Limit BLAS to one thread while filling, when threadpoolctl is available.

    The distance matrices here are small (tens of targets x a few thousand candidates); a
    multi-threaded BLAS spends more on waking threads than on arithmetic, and on a busy machine it was
    5-10x slower than one thread on the 1 mm benchmark volume. threadpoolctl comes with scikit-learn
    and is optional: without it the fill is identical, only slower where threads contend.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
_FACE_CONNECTIVITY = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True)
class PatchSettings:
    """Parameters of :func:`fill_patch` (see the module docstring)."""

    patch_radius: int = 2
    search_radius: int = 7
    max_candidates: int = 2000
    h_factor: float = 1.0
    block_size: int = 6

    def __post_init__(self) -> None:
        if self.patch_radius < 1 or self.search_radius < 1 or self.block_size < 1:
            raise ValueError("patch_radius, search_radius and block_size must be >= 1")
        if self.max_candidates < 1 or self.h_factor <= 0:
            raise ValueError("max_candidates must be >= 1 and h_factor > 0")


def noise_sd(values: np.ndarray, known: np.ndarray) -> float:
    """Robust noise standard deviation of ``values`` from voxels whose 6 neighbours are all ``known``.

    Pseudo-residual of a voxel: sqrt(6/7) (value - mean of its 6 face neighbours), which has the
    noise's variance for i.i.d. noise on a locally linear signal. MAD-based, so edges count little.
    Returns 0 for noise-free or too small crops.
    """
    core = ndimage.binary_erosion(known, structure=_FACE_CONNECTIVITY, border_value=0)
    if not core.any():
        return 0.0
    kernel = np.zeros((3, 3, 3))
    kernel[_FACE_CONNECTIVITY] = -1.0 / 6.0
    kernel[1, 1, 1] = 1.0
    residual = np.sqrt(6.0 / 7.0) * ndimage.convolve(values, kernel, mode="nearest")[core]
    return float(_MAD_TO_SD * np.median(np.abs(residual - np.median(residual))))


def patch_offsets(radius: int, shape: tuple[int, ...]) -> np.ndarray:
    """Flat-index offsets (int64, length (2r+1)^3) of a cubic patch in a C-ordered array of ``shape``."""
    span = np.arange(-radius, radius + 1)
    dz, dy, dx = np.meshgrid(span, span, span, indexing="ij")
    return (dz * shape[1] * shape[2] + dy * shape[2] + dx).ravel().astype(np.int64)


class _LesionInpainter:
    """Onion-peeling NLM fill of one lesion crop; arrays are padded by ``patch_radius`` with unknowns."""

    def __init__(self, crop: np.ndarray, any_lesion: np.ndarray, settings: PatchSettings, rng: np.random.Generator):
        self.settings = settings
        self.rng = rng
        radius = settings.patch_radius
        known = ~any_lesion
        # Centring keeps the expanded squared distances well conditioned for large intensity scales.
        offset = float(crop[known].mean()) if known.any() else 0.0
        self.offset = offset
        self.values = np.pad(crop - offset, radius)
        self.known = np.pad(known, radius)
        self.strides = np.array([self.values.shape[1] * self.values.shape[2], self.values.shape[2], 1])
        self.offsets = patch_offsets(radius, self.values.shape)
        whole_patch_known = ndimage.binary_erosion(
            self.known, structure=np.ones((2 * radius + 1,) * 3, dtype=bool), border_value=0
        )
        self.candidates = np.argwhere(whole_patch_known[(slice(radius, -radius),) * 3])
        sigma = noise_sd(crop, known)
        value_range = float(np.ptp(crop[known])) if known.any() else 1.0
        # Noise-free images (phantoms) would give h = 0; a tiny floor keeps the weights defined.
        self.h2 = max(2.0 * (sigma * settings.h_factor) ** 2, (1e-3 * value_range) ** 2, 1e-12)

    def flat(self, coords: np.ndarray) -> np.ndarray:
        """Flat indices into the padded arrays of crop coordinates ``coords`` (N, 3)."""
        return (coords + self.settings.patch_radius) @ self.strides

    def fill(self, inside: np.ndarray) -> np.ndarray:
        """Fill the voxels of ``inside`` (crop-shaped bool); returns their values in ``crop[inside]`` order."""
        radius = self.settings.patch_radius
        interior = (slice(radius, -radius),) * 3
        unknown = inside.copy()
        while unknown.any():
            front = unknown & ndimage.binary_dilation(self.known[interior], structure=FULL_CONNECTIVITY)
            if not front.any():
                break  # no known voxel anywhere in the crop: leave the rest at its value
            coords = np.argwhere(front)
            estimates = np.empty(len(coords))
            _, block_of = np.unique(coords // self.settings.block_size, axis=0, return_inverse=True)
            block_of = block_of.ravel()
            for block in range(int(block_of.max()) + 1):
                rows = np.flatnonzero(block_of == block)
                estimates[rows] = self.estimate(coords[rows])
            positions = self.flat(coords)
            self.values.ravel()[positions] = estimates
            self.known.ravel()[positions] = True
            unknown &= ~front
        return self.values[interior][inside] + self.offset

    def candidate_pool(self, targets: np.ndarray) -> np.ndarray:
        """Candidate centres (C, 3) within the search window of any of ``targets`` (F, 3), subsampled."""
        reach = self.settings.search_radius
        low, high = targets.min(axis=0) - reach, targets.max(axis=0) + reach
        near = np.all((self.candidates >= low) & (self.candidates <= high), axis=1)
        pool = self.candidates[near]
        if len(pool) > self.settings.max_candidates:
            chosen = self.rng.choice(len(pool), size=self.settings.max_candidates, replace=False)
            pool = pool[np.sort(chosen)]
        return pool

    def estimate(self, targets: np.ndarray) -> np.ndarray:
        """Weighted-mean estimates (F,) for the front voxels ``targets`` (F, 3, crop coordinates)."""
        index = self.flat(targets)[:, None] + self.offsets[None, :]
        patches = self.values.ravel()[index]
        weights_known = self.known.ravel()[index].astype(np.float64)
        count = weights_known.sum(axis=1)
        masked = patches * weights_known
        fallback = masked.sum(axis=1) / count
        pool = self.candidate_pool(targets)
        if len(pool) == 0:
            return fallback
        pool_flat = self.flat(pool)
        candidate_patches = self.values.ravel()[pool_flat[:, None] + self.offsets[None, :]]
        # Squared distance over known voxels only, expanded so that it is two matrix products.
        distance = (
            (masked * patches).sum(axis=1)[:, None]
            - 2.0 * masked @ candidate_patches.T
            + weights_known @ (candidate_patches**2).T
        ) / count[:, None]
        np.maximum(distance, 0.0, out=distance)
        in_window = np.ones(distance.shape, dtype=bool)
        for axis in range(3):  # per axis in int16: a (F, C, 3) int64 temporary costs more than the distances
            gap = targets[:, axis, None].astype(np.int16) - pool[None, :, axis].astype(np.int16)
            in_window &= np.abs(gap) <= self.settings.search_radius
        distance[~in_window] = np.inf
        reachable = in_window.any(axis=1)
        best = np.where(reachable, distance.min(axis=1), 0.0)
        weights = np.exp(-(distance - best[:, None]) / self.h2)
        estimates = (weights @ self.values.ravel()[pool_flat]) / np.maximum(weights.sum(axis=1), 1e-300)
        return np.where(reachable, estimates, fallback)


def fill_patch(
    image: np.ndarray,
    lesion_mask: np.ndarray,
    spacing: Spacing | None,
    rng: np.random.Generator,
    wm_mask: np.ndarray | None = None,
    *,
    patch_radius: int = 2,
    search_radius: int = 7,
    max_candidates: int = 2000,
    h_factor: float = 1.0,
    block_size: int = 6,
) -> np.ndarray:
    """Fill each lesion by onion-peeling patch-based non-local means (``seg_FillLesions`` style).

    ``image``: (Z, Y, X) intensities, any scale. ``lesion_mask``: same shape, nonzero = lesion.
    ``spacing`` and ``wm_mask`` are accepted for a uniform signature and unused (patches are in
    voxels; patch similarity, not a tissue mask, decides where intensities come from). ``rng``
    subsamples candidate pools larger than ``max_candidates``. Returns a new array (float dtype of
    the input, float64 for integer input) equal to the input outside the lesions.
    """
    settings = PatchSettings(patch_radius, search_radius, max_candidates, h_factor, block_size)
    values, lesions, _ = check_fill_inputs(image, lesion_mask, wm_mask)
    result = output_like(image)
    pad = (search_radius + patch_radius,) * 3
    with _single_threaded_blas():
        for lesion in iterate_lesions(lesions, pad=pad):
            inpainter = _LesionInpainter(values[lesion.box], lesion.any_lesion, settings, rng)
            result[lesion.box][lesion.inside] = inpainter.fill(lesion.inside)
    return result
