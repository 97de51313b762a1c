"""Where lesions may go in a healthy scan: brain, usable white matter, CSF and the ventricles.

Arrays are (z, y, x) booleans; spacings are (x, y, z) mm as in SimpleITK. The anatomy comes from a
tissue map (0 background, 1 CSF, 2 GM, 3 WM) when one is given, otherwise from the T1-weighted
image: brain and WM through :func:`ldiff.preprocessing.brain_masks.compute_masks` (WM = brightest of
three k-means classes inside the brain) and CSF = the darkest of the same three classes.

Ventricles (for the periventricular preference) are the CSF lying deep inside the brain: farther
from the brain's outer surface than :data:`VENTRICLE_DEPTH_FRACTION` of the deepest brain voxel's
distance. Sulcal CSF sits within a few mm of the surface, the lateral ventricles near the middle
of the brain, so a relative depth works at any head size and voxel size without an atlas.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ldiff.masks.geometry import spacing_for_array
from ldiff.preprocessing.brain_masks import assign_to_centres, compute_masks, kmeans_1d

TISSUE_CSF, TISSUE_GM, TISSUE_WM = 1, 2, 3
# CSF deeper than this fraction of the brain's maximum depth counts as ventricle. In an adult brain
# (maximum depth ~60 mm) this is ~24 mm: below the deepest sulci, above the lateral ventricles.
VENTRICLE_DEPTH_FRACTION = 0.4
# Deep CSF components smaller than this are misclassified dark voxels (noise, vessels), not ventricles.
MIN_VENTRICLE_MM3 = 20.0
_CROSS = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True, eq=False)  # eq=False: arrays do not compare with ==
class TargetAnatomy:
    """The masks of one healthy scan, all bool (Z, Y, X) of one shape.

    ``brain``: the head's brain voxels. ``wm``: usable white matter, where lesion voxels may lie
    (see :func:`anatomy_from_t1` for why a derived one is eroded). ``csf``: CSF voxels.
    ``ventricles``: the deep part of ``csf`` (possibly empty). ``spacing``: (x, y, z) mm.
    ``source``: "tissue_map" or "kmeans_t1".
    """

    brain: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    ventricles: np.ndarray
    spacing: tuple[float, float, float]
    source: str

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing))


def deep_csf(csf: np.ndarray, brain: np.ndarray, spacing: tuple[float, float, float],
             depth_fraction: float = VENTRICLE_DEPTH_FRACTION, min_volume_mm3: float = MIN_VENTRICLE_MM3) -> np.ndarray:
    """The ventricles: components of deep CSF (bool (Z, Y, X)); empty when there are none.

    Depth is the distance in mm from a voxel to the nearest non-brain voxel (the volume's edge counts
    as outside). Components of at least ``min_volume_mm3`` are kept.
    """
    brain = np.asarray(brain, dtype=bool)
    csf = np.asarray(csf, dtype=bool) & brain
    if not csf.any():
        return np.zeros_like(csf)
    # Padding makes a brain cut by the field of view end at the edge instead of extending past it.
    depth = ndimage.distance_transform_edt(np.pad(brain, 1), sampling=spacing_for_array(spacing, 3))[1:-1, 1:-1, 1:-1]
    deep = csf & (depth > depth_fraction * float(depth.max()))
    labels, count = ndimage.label(deep, structure=np.ones((3, 3, 3), dtype=bool))
    if count == 0:
        return deep
    sizes = np.bincount(labels.ravel(), minlength=count + 1) * float(np.prod(spacing))
    keep = sizes >= min_volume_mm3
    keep[0] = False
    return keep[labels]


def anatomy_from_tissue(tissue: np.ndarray, spacing: tuple[float, float, float]) -> TargetAnatomy:
    """Anatomy of a tissue map (Z, Y, X) with labels 0 background, 1 CSF, 2 GM, 3 WM.

    The map is trusted as it is: usable WM is exactly label 3, so lesions never touch CSF or GM.
    """
    labels = np.rint(np.asarray(tissue)).astype(np.int16)
    brain = labels > 0
    csf = labels == TISSUE_CSF
    return TargetAnatomy(brain, labels == TISSUE_WM, csf, deep_csf(csf, brain, spacing), tuple(spacing), "tissue_map")


def anatomy_from_t1(t1: np.ndarray, spacing: tuple[float, float, float]) -> TargetAnatomy:
    """Anatomy derived from a skull-stripped T1-weighted image (Z, Y, X).

    Usable WM is the k-means WM eroded by one voxel (face neighbours): k-means labels the partial-
    volume voxels of tissue borders by intensity alone, so the outer layer of the derived WM is where
    it is most often wrong, and dropping it keeps synthetic lesions off CSF and cortex. When the
    erosion leaves nothing (a very thin WM), the uneroded WM is used.
    """
    t1 = np.asarray(t1, dtype=np.float32)
    brain, wm, _ = compute_masks(t1[np.newaxis], np.zeros(t1.shape, dtype=bool), None, 0)
    csf = np.zeros_like(brain)
    if np.count_nonzero(brain) >= 3:
        # The same deterministic clustering compute_masks ran for WM, so the classes agree.
        centres = kmeans_1d(t1[brain], classes=3)
        csf[brain] = assign_to_centres(t1[brain], centres) == 0
    eroded = ndimage.binary_erosion(wm, structure=_CROSS)
    usable = eroded if eroded.any() else wm
    return TargetAnatomy(brain, usable, csf, deep_csf(csf, brain, spacing), tuple(spacing), "kmeans_t1")
