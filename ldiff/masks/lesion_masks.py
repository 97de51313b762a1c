"""Plausible MS lesion masks for a healthy scan: shapes placed in white matter near the ventricles.

Shapes are real lesions from a :class:`~ldiff.masks.LesionLibrary` (flipped and rotated at random)
or, without a library, randomly oriented ellipsoids with semi-axes drawn log-uniformly in mm. Each
shape is anchored on a white-matter voxel drawn with probability proportional to
``exp(-distance to the ventricles / periventricular_mm)`` (uniform over WM when the scale is None or
no ventricle was found) and accepted when at least :data:`MIN_WM_FRACTION` of it lies in usable WM;
the part outside usable WM is cut off, so no lesion voxel is ever outside it.

Lesions never touch each other (not even at a corner): a placement that would touch an earlier
lesion is retried elsewhere, so the number of 26-connected components of a mask equals the number
of lesions placed. A shape cut into pieces by the clipping keeps only its largest piece.

Two ways to say how much lesion to place:

* ``count``: exactly that many lesions (fewer only if the WM is too full; then ``lesion_count`` says
  how many were placed).
* ``load_ml``: shapes are drawn and placed until the total volume reaches the target. A shape that
  would end more than :data:`LOAD_TOLERANCE` (2 %) above the target is set aside and another drawn,
  so smaller shapes top the load up (the last lesions of a load are therefore smaller on average).
  After :data:`LOAD_PATIENCE` such misses in a row the mask is as close as the shapes allow: the
  load ends within 2 % above the target, or below it by less than the smallest shape drawn (for
  the default ellipsoids ~0.015 mL), or short when the white matter has no room left (logged).

Arrays are (z, y, x); spacings (x, y, z) mm.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from ldiff.masks.target_anatomy import TargetAnatomy
from ldiff.masks import LesionLibrary, Placement, ShapePlacer, periventricular_weights, random_ellipsoid

logger = logging.getLogger("ldiff")

DEFAULT_COUNT = 10
# Log-uniform semi-axes of synthetic ellipsoids: about 0.015 to 0.9 mL, the span of typical MS lesions.
DEFAULT_RADIUS_MM = (1.5, 6.0)
# Decay length of the periventricular preference (see ldiff.masks.periventricular_weights).
DEFAULT_PERIVENTRICULAR_MM = 10.0
MIN_WM_FRACTION = 0.9
# Random anchors tried per shape by the placer, and placements retried when one touches a lesion.
ANCHOR_TRIES = 50
TOUCH_RETRIES = 5
# Shapes drawn per requested lesion before giving up on a count (a full or very thin WM).
DRAWS_PER_LESION = 20
# Consecutive shapes that do not fit (or would overshoot) before a load is declared reached.
LOAD_PATIENCE = 50
# A load may end this far (relative) above its target.
LOAD_TOLERANCE = 0.02
# A load this far (relative) below the target is reported: the WM had no room for more lesions.
LOAD_SHORTFALL_WARNING = 0.1
_FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True, eq=False)
class ProposedMask:
    """A proposed lesion mask: ``mask`` bool (Z, Y, X) and what it holds.

    ``lesion_count``: lesions placed (= 26-connected components). ``load_ml``: total volume.
    ``shape_source``: "library" or "synthetic". ``periventricular``: whether placement preferred the
    ventricles (False when uniform was asked for or no ventricle was found).
    """

    mask: np.ndarray
    lesion_count: int
    load_ml: float
    shape_source: str
    periventricular: bool


def lesion_load_ml(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Volume of the nonzero voxels of ``mask`` in mL (``spacing`` (x, y, z) mm)."""
    return float(np.count_nonzero(mask) * np.prod(spacing) / 1000.0)


def largest_piece(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a bool array (a copy; empty stays empty)."""
    labels, count = ndimage.label(mask, structure=_FULL_CONNECTIVITY)
    if count <= 1:
        return mask.copy()
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


class LesionPainter:
    """Places shapes one by one into a mask of ``anatomy``'s shape, keeping lesions apart.

    ``library``: real shapes (resampled here to the anatomy's spacing when needed) or None for
    ellipsoids with semi-axes in ``radius_mm`` (low, high). ``periventricular_mm``: decay length of
    the preference for the ventricles, or None for a uniform choice over usable WM.
    """

    def __init__(self, anatomy: TargetAnatomy, rng: np.random.Generator, library: LesionLibrary | None = None,
                 radius_mm: Sequence[float] = DEFAULT_RADIUS_MM,
                 periventricular_mm: float | None = DEFAULT_PERIVENTRICULAR_MM):
        self.anatomy = anatomy
        self.rng = rng
        if library is not None and len(library) == 0:
            library = None
        if library is not None and not np.allclose(library.spacing, anatomy.spacing):
            library = library.resampled(anatomy.spacing)
        self.library = library
        self.radius_mm = tuple(float(v) for v in radius_mm)
        self.periventricular = periventricular_mm is not None and bool(anatomy.ventricles.any())
        weights = (periventricular_weights(anatomy.ventricles, anatomy.spacing, periventricular_mm)
                   if self.periventricular else None)
        # brain_mask = usable WM clips every placement to it: no voxel can land in CSF or cortex.
        self.placer = ShapePlacer(anatomy.wm, brain_mask=anatomy.wm, centre_weights=weights)
        self.mask = np.zeros(anatomy.wm.shape, dtype=bool)
        self.lesion_count = 0
        self.voxel_count = 0

    @property
    def shape_source(self) -> str:
        return "synthetic" if self.library is None else "library"

    def draw_shape(self) -> np.ndarray:
        """One shape, a bool crop (Z, Y, X) at the anatomy's spacing."""
        if self.library is not None:
            return self.library.sample(self.rng, augment=True)
        return random_ellipsoid(self.rng, self.radius_mm, self.anatomy.spacing)

    def _touches_mask(self, placement: Placement) -> bool:
        """Whether the placed piece overlaps or touches (26-neighbourhood) an earlier lesion."""
        grown = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(placement.slices, self.mask.shape))
        local = np.zeros([s.stop - s.start for s in grown], dtype=bool)
        inner = tuple(slice(s.start - g.start, s.stop - g.start) for s, g in zip(placement.slices, grown))
        local[inner] = placement.mask
        halo = ndimage.binary_dilation(local, structure=_FULL_CONNECTIVITY)
        return bool(np.any(halo & self.mask[grown]))

    def fit(self, shape: np.ndarray) -> Placement | None:
        """A placement of ``shape`` in usable WM that keeps clear of earlier lesions, or None."""
        if not self.placer.has_candidates:
            return None
        for _ in range(TOUCH_RETRIES):
            placement = self.placer.place(shape, self.rng, MIN_WM_FRACTION, ANCHOR_TRIES)
            if placement is None:
                return None
            placement = Placement(placement.slices, largest_piece(placement.mask), placement.wm_fraction)
            if placement.mask.any() and not self._touches_mask(placement):
                return placement
        return None

    def paint(self, placement: Placement) -> None:
        placement.paint(self.mask)
        self.lesion_count += 1
        self.voxel_count += int(np.count_nonzero(placement.mask))

    def place_count(self, count: int) -> None:
        """Place ``count`` lesions (fewer when WM runs out of room within the draw budget)."""
        for _ in range(count * DRAWS_PER_LESION):
            if self.lesion_count >= count:
                return
            placement = self.fit(self.draw_shape())
            if placement is not None:
                self.paint(placement)

    def place_load(self, load_ml: float) -> None:
        """Place lesions until their total volume reaches ``load_ml`` (see the module notes)."""
        target = load_ml * 1000.0 / self.anatomy.voxel_volume_mm3  # in voxels
        ceiling = target * (1.0 + LOAD_TOLERANCE)
        misses = 0
        while self.voxel_count < target and misses < LOAD_PATIENCE:
            shape = self.draw_shape()
            # Checked before placing (cheap) and after (clipping can only shrink a shape).
            if self.voxel_count + np.count_nonzero(shape) > ceiling:
                misses += 1
                continue
            placement = self.fit(shape)
            if placement is None:
                misses += 1
                continue
            self.paint(placement)
            misses = 0

    def result(self) -> ProposedMask:
        return ProposedMask(self.mask.copy(), self.lesion_count,
                            self.voxel_count * self.anatomy.voxel_volume_mm3 / 1000.0,
                            self.shape_source, self.periventricular)


def propose_lesion_mask(anatomy: TargetAnatomy, rng: np.random.Generator, *, count: int | None = None,
                        load_ml: float | None = None, library: LesionLibrary | None = None,
                        radius_mm: Sequence[float] = DEFAULT_RADIUS_MM,
                        periventricular_mm: float | None = DEFAULT_PERIVENTRICULAR_MM) -> ProposedMask:
    """A lesion mask (bool, the anatomy's (Z, Y, X) shape) of ``count`` lesions or ``load_ml`` mL.

    Give at most one of ``count`` and ``load_ml``; with neither, :data:`DEFAULT_COUNT` lesions. Every
    lesion voxel lies in ``anatomy.wm``; the same ``rng`` state gives the same mask.
    """
    if count is not None and load_ml is not None:
        raise ValueError("give either count or load_ml, not both")
    if count is not None and count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if load_ml is not None and not load_ml >= 0:
        raise ValueError(f"load_ml must be >= 0, got {load_ml}")
    painter = LesionPainter(anatomy, rng, library, radius_mm, periventricular_mm)
    if load_ml is not None:
        painter.place_load(load_ml)
        short = painter.voxel_count * anatomy.voxel_volume_mm3 / 1000.0 < (1.0 - LOAD_SHORTFALL_WARNING) * load_ml
        wanted = f"{load_ml:g} mL"
    else:
        count = DEFAULT_COUNT if count is None else count
        painter.place_count(count)
        short, wanted = painter.lesion_count < count, f"{count} lesions"
    result = painter.result()
    if short:
        logger.warning("only %d lesions (%.3f mL) fitted in the white matter; %s were asked for",
                       result.lesion_count, result.load_ml, wanted)
    return result
