"""Training masks for the diffusion tasks: a mixture of real lesion shapes and synthetic ellipsoids.

The thesis's best models ("mixture") trained on real lesion masks and random circles in equal parts;
ldiff keeps the mixture but places every shape in white matter, never outside the brain, and
optionally never on an image's own lesions. All choices live in a JSON-able config (defaults in
:data:`DEFAULT_MASK_CONFIG`) that the planner writes into plans.json.
"""
from __future__ import annotations

import copy

import numpy as np

from ldiff.masks.boundary import dilation_radius_voxels
from ldiff.masks.geometry import Spacing, spacing_for_array
from ldiff.masks.library import LesionLibrary, axial_cross_section
from ldiff.masks.morphology import dilate_mask
from ldiff.masks.placement import ShapePlacer
from ldiff.masks.shapes import random_ellipse, random_ellipsoid

DEFAULT_MASK_CONFIG: dict = {
    # Probability that a lesion of a mask is a real shape from the library (else an ellipsoid).
    # Ignored (treated as 0) without a non-empty library, e.g. for a healthy-only dataset.
    "real_shape_fraction": 0.5,
    # Inclusive range of the number of lesions placed per mask.
    "lesions_per_mask": [1, 3],
    # Range of the ellipsoid/ellipse semi-axes in mm, each drawn log-uniformly.
    "ellipsoid_radius_mm": [1.5, 8.0],
    # Minimum fraction of a shape's voxels that must lie in usable WM (see ShapePlacer).
    "min_wm_fraction": 0.9,
    # Attempts to place one shape before it is skipped.
    "placement_tries": 50,
    # Dilation of the finished mask, as for real lesion masks at inference (see dilate_mask).
    "dilation_radius_voxels": 1,
    "dilation_shape": "ball",
    # 2D only: smallest axial cross-section (pixels) a real shape must offer to be used.
    "min_cross_section_voxels": 4,
    # Random flips and 90-degree axial rotations of real shapes.
    "augment_real_shapes": True,
    # When a volume or slice has no usable WM, place shapes anywhere in the brain instead of
    # returning an empty mask (e.g. axial slices near the vertex).
    "fallback_to_brain": True,
}

ShapeKind = str  # "real" or "synthetic"


def resolve_mask_config(config: dict | None = None) -> dict:
    """Defaults overlaid with ``config``, validated; a new dict. Unknown keys are an error (typos)."""
    resolved = copy.deepcopy(DEFAULT_MASK_CONFIG)
    unknown = set(config or {}) - set(resolved)
    if unknown:
        raise ValueError(f"unknown mask config keys: {sorted(unknown)}")
    resolved.update(copy.deepcopy(config or {}))
    if not 0.0 <= float(resolved["real_shape_fraction"]) <= 1.0:
        raise ValueError("real_shape_fraction must be in [0, 1]")
    low, high = (int(v) for v in resolved["lesions_per_mask"])
    if not 1 <= low <= high:
        raise ValueError("lesions_per_mask must be [low, high] with 1 <= low <= high")
    resolved["lesions_per_mask"] = [low, high]
    radius_low, radius_high = (float(v) for v in resolved["ellipsoid_radius_mm"])
    if not 0 < radius_low <= radius_high:
        raise ValueError("ellipsoid_radius_mm must be [low, high] with 0 < low <= high")
    resolved["ellipsoid_radius_mm"] = [radius_low, radius_high]
    if not 0.0 <= float(resolved["min_wm_fraction"]) <= 1.0:
        raise ValueError("min_wm_fraction must be in [0, 1]")
    if int(resolved["placement_tries"]) < 1:
        raise ValueError("placement_tries must be >= 1")
    if int(resolved["dilation_radius_voxels"]) < 0:
        raise ValueError("dilation_radius_voxels must be >= 0")
    if resolved["dilation_shape"] not in ("ball", "cube"):
        raise ValueError("dilation_shape must be 'ball' or 'cube'")
    return resolved


def mask_config_from_statistics(statistics: dict, spacing: Spacing, base: dict | None = None) -> dict:
    """A mask config fitted to a dataset's lesion statistics (from ``lesion_statistics``).

    Ellipsoid semi-axes span half the in-plane (x, y) lesion extents from the 5th to the 95th
    percentile (in-plane because through-plane extents are quantised by thick slices), at least one
    finest voxel; the dilation radius follows :func:`dilation_radius_voxels`; without lesions the
    real-shape fraction is 0. Other keys come from ``base`` or the defaults.
    """
    config = resolve_mask_config(base)
    finest = float(min(spacing))
    extents = statistics.get("extent_mm", {})
    p5 = [(extents.get(axis) or {}).get("p5") for axis in ("x", "y")]
    p95 = [(extents.get(axis) or {}).get("p95") for axis in ("x", "y")]
    if statistics.get("n_lesions", 0) > 0 and None not in p5 + p95:
        low = max(finest, min(p5) / 2)
        config["ellipsoid_radius_mm"] = [low, max(low, max(p95) / 2)]
    else:
        config["real_shape_fraction"] = 0.0
    config["dilation_radius_voxels"] = dilation_radius_voxels(statistics.get("boundary_width_mm"), spacing)
    return resolve_mask_config(config)


class MaskSampler:
    """Draws training masks: bool (Z, Y, X) volumes or (Y, X) axial slices, inside the brain.

    ``config``: see :data:`DEFAULT_MASK_CONFIG`. ``lesion_library``: real shapes; resampled to
    ``spacing`` when its own spacing differs; None or empty means synthetic shapes only.
    ``spacing``: (x, y, z) mm of the volumes the masks are drawn for (None = 1 mm isotropic).
    """

    def __init__(
        self,
        config: dict | None = None,
        lesion_library: LesionLibrary | None = None,
        spacing: Spacing | None = None,
    ):
        self.config = resolve_mask_config(config)
        self.spacing = tuple(float(v) for v in spacing_for_array(spacing, 3)[::-1])
        library = None
        if lesion_library is not None and len(lesion_library) > 0:
            library = lesion_library
            if not np.allclose(library.spacing, self.spacing):
                library = library.resampled(self.spacing)
        self.library = library
        # For 2D, only shapes with a usable cross-section; filtered once so the mixture ratio holds.
        self._library_2d = None
        if library is not None:
            minimum = int(self.config["min_cross_section_voxels"])
            usable = [s for s in library.shapes if s.reshape(s.shape[0], -1).sum(axis=1).max() >= minimum]
            self._library_2d = LesionLibrary(usable, self.spacing) if usable else None

    def choose_shape(self, rng: np.random.Generator, ndim: int = 3) -> tuple[np.ndarray, ShapeKind]:
        """One lesion shape (bool crop, (Z, Y, X) or (Y, X)) and its kind, "real" or "synthetic"."""
        library = self.library if ndim == 3 else self._library_2d
        if library is not None and rng.random() < float(self.config["real_shape_fraction"]):
            shape = library.sample(rng, augment=bool(self.config["augment_real_shapes"]))
            if ndim == 2:
                shape = axial_cross_section(shape, rng, int(self.config["min_cross_section_voxels"]))
            return shape, "real"
        draw = random_ellipsoid if ndim == 3 else random_ellipse
        return draw(rng, self.config["ellipsoid_radius_mm"], self.spacing), "synthetic"

    def sample_volume_mask(
        self,
        wm_mask: np.ndarray,
        brain_mask: np.ndarray,
        rng: np.random.Generator,
        forbidden: np.ndarray | None = None,
        centre_weights: np.ndarray | None = None,
    ) -> np.ndarray:
        """A bool (Z, Y, X) mask of ``lesions_per_mask`` placed, dilated shapes.

        ``wm_mask``/``brain_mask``: (Z, Y, X), nonzero = tissue. The result lies inside the brain and
        outside ``forbidden``; ``centre_weights`` biases where shapes go (see ShapePlacer). Empty only
        when there is nowhere to put a lesion (no usable WM and, with the fallback, no usable brain).
        """
        return self._sample(3, wm_mask, brain_mask, rng, forbidden, centre_weights)

    def sample_slice_mask(
        self,
        wm_slice: np.ndarray,
        brain_slice: np.ndarray,
        rng: np.random.Generator,
        forbidden: np.ndarray | None = None,
        centre_weights: np.ndarray | None = None,
    ) -> np.ndarray:
        """As :meth:`sample_volume_mask` for one axial slice: bool (Y, X), ellipses and cross-sections."""
        return self._sample(2, wm_slice, brain_slice, rng, forbidden, centre_weights)

    def _sample(
        self,
        ndim: int,
        wm_mask: np.ndarray,
        brain_mask: np.ndarray,
        rng: np.random.Generator,
        forbidden: np.ndarray | None,
        centre_weights: np.ndarray | None,
    ) -> np.ndarray:
        if np.ndim(wm_mask) != ndim or np.shape(brain_mask) != np.shape(wm_mask):
            raise ValueError(
                f"expected {ndim}D wm and brain masks of one shape, got {np.shape(wm_mask)} and {np.shape(brain_mask)}"
            )
        brain = np.asarray(brain_mask, dtype=bool)
        placer = ShapePlacer(np.asarray(wm_mask, dtype=bool), brain, forbidden, centre_weights)
        if not placer.has_candidates and self.config["fallback_to_brain"]:
            placer = ShapePlacer(brain, brain, forbidden, centre_weights)
        result = np.zeros(brain.shape, dtype=bool)
        if not placer.has_candidates:
            return result
        low, high = self.config["lesions_per_mask"]
        fraction, tries = float(self.config["min_wm_fraction"]), int(self.config["placement_tries"])
        for _ in range(int(rng.integers(low, high + 1))):
            shape, _ = self.choose_shape(rng, ndim)
            placement = placer.place(shape, rng, fraction, tries)
            if placement is not None:
                placement.paint(result)
        if not result.any():
            # Nothing fitted (e.g. thin WM on a slice): keep the best attempt, since an empty mask
            # teaches the model nothing.
            shape, _ = self.choose_shape(rng, ndim)
            best = placer.place(shape, rng, fraction, tries, return_best=True)
            if best is not None:
                best.paint(result)
        spacing = self.spacing if ndim == 3 else self.spacing[:2]
        result = dilate_mask(
            result, int(self.config["dilation_radius_voxels"]), spacing, self.config["dilation_shape"]
        )
        # Dilation may reach past the brain or into forbidden voxels; the guarantee is re-imposed.
        return result & placer.allowed

