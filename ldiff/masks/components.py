"""Lesion connected components and the dataset-level lesion statistics used by the fingerprint.

Components use 26-connectivity in 3D (8 in 2D): two voxels touching at a corner belong to the same
lesion, which matches how raters draw lesions slice by slice and avoids splitting thin oblique ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from ldiff.masks.boundary import boundary_width_from_intensity
from ldiff.masks.geometry import Spacing, spacing_for_array

# The fingerprint's percentiles; the planner reads them by these keys ("p5" ... "p95").
PERCENTILES = (5, 25, 50, 75, 95)
AXIS_NAMES_ZYX = ("z", "y", "x")


@dataclass(frozen=True, eq=False)  # eq=False: comparing the mask arrays with == is ambiguous
class LesionComponent:
    """One connected lesion. Index-valued fields are in array (z, y, x) order.

    ``bbox_zyx``: (start, stop) per axis, stop exclusive. ``extent_mm_zyx``: bounding-box size times
    the voxel spacing. ``centroid_zyx``: mean voxel index (float, full-volume coordinates).
    ``mask``: bool array of the bounding-box shape, True on this component only (not its neighbours).
    """

    label: int
    voxel_count: int
    volume_mm3: float
    bbox_zyx: tuple[tuple[int, int], ...]
    extent_mm_zyx: tuple[float, ...]
    centroid_zyx: tuple[float, ...]
    mask: np.ndarray

    @property
    def slices(self) -> tuple[slice, ...]:
        """The bounding box as slices, to index the full volume: ``volume[component.slices]``."""
        return tuple(slice(start, stop) for start, stop in self.bbox_zyx)


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label the full-connectivity components of a 2D/3D mask: (int32 labels 0..n, n)."""
    mask = np.asarray(mask, dtype=bool)
    structure = np.ones((3,) * mask.ndim, dtype=bool)
    labels, count = ndimage.label(mask, structure=structure)
    return labels.astype(np.int32, copy=False), int(count)


def lesion_components(
    lesion_mask: np.ndarray, spacing: Spacing | None = None, min_voxels: int = 1
) -> list[LesionComponent]:
    """The connected components of a (Z, Y, X) (or (Y, X)) lesion mask, ordered by label.

    ``lesion_mask``: any array, nonzero = lesion. ``spacing``: (x, y, z) mm (None = 1 mm).
    Components smaller than ``min_voxels`` are dropped (labels of the others are unchanged).
    """
    labels, count = label_components(lesion_mask)
    axis_spacing = spacing_for_array(spacing, labels.ndim)
    voxel_volume = float(np.prod(axis_spacing))
    if count == 0:
        return []
    counts = np.bincount(labels.ravel(), minlength=count + 1)
    centroids = ndimage.center_of_mass(np.ones(labels.shape), labels, index=np.arange(1, count + 1))
    components = []
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        voxel_count = int(counts[label])
        if box is None or voxel_count < min_voxels:
            continue
        sizes = np.array([s.stop - s.start for s in box])
        components.append(
            LesionComponent(
                label=label,
                voxel_count=voxel_count,
                volume_mm3=voxel_count * voxel_volume,
                bbox_zyx=tuple((int(s.start), int(s.stop)) for s in box),
                extent_mm_zyx=tuple(float(v) for v in sizes * axis_spacing),
                centroid_zyx=tuple(float(c) for c in centroids[label - 1]),
                mask=labels[box] == label,
            )
        )
    return components


def _summary(values: Sequence[float]) -> dict[str, float | None]:
    """Percentiles (numpy's default linear interpolation), min, max and mean; None when empty."""
    keys = [f"p{p}" for p in PERCENTILES] + ["min", "max", "mean"]
    if len(values) == 0:
        return dict.fromkeys(keys)
    array = np.asarray(values, dtype=float)
    result = {f"p{p}": float(v) for p, v in zip(PERCENTILES, np.percentile(array, PERCENTILES))}
    result.update(min=float(array.min()), max=float(array.max()), mean=float(array.mean()))
    return result


def lesion_statistics(
    lesion_masks: Sequence[np.ndarray],
    spacings: Sequence[Spacing] | Spacing,
    images: Sequence[np.ndarray] | None = None,
    wm_masks: Sequence[np.ndarray] | None = None,
    min_voxels: int = 1,
) -> dict:
    """A JSON-able lesion fingerprint of a dataset.

    ``lesion_masks``: one (Z, Y, X) mask per case. ``spacings``: one (x, y, z) spacing per case, or
    a single spacing shared by all. ``images`` (optional): one (Z, Y, X) intensity channel per case
    (any scale; FLAIR or T1) from which the lesion boundary width is measured, restricted to
    ``wm_masks`` when given. Without images ``boundary_width_mm`` is None and
    :func:`dilation_radius_voxels` falls back to the thesis's radius of 1 voxel.

    Keys: ``n_cases``, ``n_lesions``, ``lesions_per_case`` (list of counts), ``lesion_count``
    (summary of those counts), ``volume_mm3`` (summary), ``extent_mm`` ({"x","y","z"}: summary),
    ``boundary_width_mm`` (median over cases, or None) and ``boundary_width_mm_per_case``.
    A summary holds p5, p25, p50, p75, p95, min, max, mean (None when there are no lesions).
    """
    n_cases = len(lesion_masks)
    if len(spacings) > 0 and np.isscalar(spacings[0]):
        spacings = [spacings] * n_cases
    if len(spacings) != n_cases:
        raise ValueError(f"{len(spacings)} spacings for {n_cases} lesion masks")
    if images is not None and len(images) != n_cases:
        raise ValueError(f"{len(images)} images for {n_cases} lesion masks")
    if wm_masks is not None and len(wm_masks) != n_cases:
        raise ValueError(f"{len(wm_masks)} WM masks for {n_cases} lesion masks")

    counts, volumes = [], []
    extents: dict[str, list[float]] = {name: [] for name in AXIS_NAMES_ZYX}
    widths: list[float | None] = []
    for case, (mask, spacing) in enumerate(zip(lesion_masks, spacings)):
        if np.ndim(mask) != 3:
            raise ValueError(f"case {case}: lesion mask must be 3D (Z, Y, X), got shape {np.shape(mask)}")
        components = lesion_components(mask, spacing, min_voxels=min_voxels)
        counts.append(len(components))
        for component in components:
            volumes.append(component.volume_mm3)
            for name, extent in zip(AXIS_NAMES_ZYX, component.extent_mm_zyx):
                extents[name].append(extent)
        if images is not None:
            wm = None if wm_masks is None else wm_masks[case]
            widths.append(boundary_width_from_intensity(images[case], mask, spacing, wm_mask=wm))

    measured = [w for w in widths if w is not None]
    return {
        "n_cases": n_cases,
        "n_lesions": int(sum(counts)),
        "lesions_per_case": counts,
        "lesion_count": _summary(counts),
        "volume_mm3": _summary(volumes),
        "extent_mm": {name: _summary(extents[name]) for name in ("x", "y", "z")},
        "boundary_width_mm": float(np.median(measured)) if measured else None,
        "boundary_width_mm_per_case": widths,
    }
