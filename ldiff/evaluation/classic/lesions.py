"""What every classic filler shares: input checks, lesion components and crops around them.

Each filler works lesion by lesion (connected components of the mask) on a crop around the lesion,
so its cost grows with the lesion load rather than with the volume: a 1 mm whole-brain volume is
about 7 million voxels, the lesions of a typical MS scan a few thousand.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
from scipy import ndimage

from ldiff.masks.geometry import spacing_for_array

Spacing = Sequence[float]

# 26-connectivity: lesions that touch only at an edge or a corner are one lesion, as a rater
# drawing slice by slice would see them; it also keeps per-lesion statistics from being computed on
# fragments of a single voxel.
FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class Lesion:
    """One connected lesion seen through a crop of the volume.

    ``box``: slices of the crop in the full (Z, Y, X) volume. ``inside``: bool, crop-shaped, this
    lesion's voxels. ``any_lesion``: bool, crop-shaped, voxels of every lesion (this one and
    neighbours reaching into the crop), which are never treated as normal tissue.
    """

    box: tuple[slice, ...]
    inside: np.ndarray
    any_lesion: np.ndarray


def check_fill_inputs(
    image: np.ndarray, lesion_mask: np.ndarray, wm_mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate and normalise the arguments every filler takes.

    Returns (image as float64 (Z, Y, X), lesion mask as bool, WM mask as bool or None). Raises
    ValueError for non-3D input, shape mismatches or non-finite intensities: such input would make
    the local statistics meaningless rather than merely imprecise.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must be 3D (Z, Y, X), got shape {image.shape}")
    lesion_mask = np.asarray(lesion_mask)
    if lesion_mask.shape != image.shape:
        raise ValueError(f"lesion mask shape {lesion_mask.shape} differs from image shape {image.shape}")
    if wm_mask is not None:
        wm_mask = np.asarray(wm_mask)
        if wm_mask.shape != image.shape:
            raise ValueError(f"WM mask shape {wm_mask.shape} differs from image shape {image.shape}")
        wm_mask = wm_mask.astype(bool)
    values = image.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("image contains NaN or Inf values")
    return values, lesion_mask.astype(bool), wm_mask


def output_like(image: np.ndarray) -> np.ndarray:
    """A copy of ``image`` to write fills into: float inputs keep their dtype, others become float64.

    Keeping the float dtype makes voxels outside the lesions bit-identical to the input; integer
    inputs are returned as float64 so the fill is not rounded here (the file layer rounds once,
    when it casts back to the file's pixel type).
    """
    image = np.asarray(image)
    if np.issubdtype(image.dtype, np.floating):
        return image.copy()
    return image.astype(np.float64)


def voxel_reach(radius_mm: float, spacing: Spacing | None) -> np.ndarray:
    """Per-array-axis (z, y, x) number of voxels within ``radius_mm`` (at least 1 per axis)."""
    return np.maximum(1, np.ceil(radius_mm / spacing_for_array(spacing, 3)).astype(int))


def grow_box(box: tuple[slice, ...], pad: Sequence[int], shape: Sequence[int]) -> tuple[slice, ...]:
    """``box`` grown by ``pad[i]`` voxels on both sides of axis i, clipped to ``shape``."""
    return tuple(slice(max(0, s.start - p), min(n, s.stop + p)) for s, p, n in zip(box, pad, shape))


def label_lesions(lesion_mask: np.ndarray) -> tuple[np.ndarray, list[tuple[int, tuple[slice, ...]]]]:
    """Label the 26-connected lesions of ``lesion_mask`` (bool (Z, Y, X)).

    Returns (int32 labels, [(label, tight bounding box), ...]) in label order (scan order of each
    lesion's first voxel), which keeps random draws reproducible for a given seed.
    """
    labels, _ = ndimage.label(lesion_mask, structure=FULL_CONNECTIVITY)
    boxes = [(index, box) for index, box in enumerate(ndimage.find_objects(labels), start=1) if box is not None]
    return labels, boxes


def crop_lesion(
    labels: np.ndarray, lesion_mask: np.ndarray, index: int, tight_box: tuple[slice, ...], pad: Sequence[int]
) -> Lesion:
    """Lesion ``index`` of :func:`label_lesions` seen through its bounding box grown by ``pad`` voxels."""
    box = grow_box(tight_box, pad, lesion_mask.shape)
    return Lesion(box=box, inside=labels[box] == index, any_lesion=lesion_mask[box])


def iterate_lesions(lesion_mask: np.ndarray, pad: Sequence[int]) -> Iterator[Lesion]:
    """Yield each lesion of ``lesion_mask`` (bool (Z, Y, X)) with a crop grown by ``pad`` voxels."""
    labels, boxes = label_lesions(lesion_mask)
    for index, tight_box in boxes:
        yield crop_lesion(labels, lesion_mask, index, tight_box, pad)


def shell_within(inside: np.ndarray, radius_mm: float, spacing: Spacing | None) -> np.ndarray:
    """Voxels outside ``inside`` whose centre lies within ``radius_mm`` of one of its voxel centres."""
    distance = ndimage.distance_transform_edt(~inside, sampling=spacing_for_array(spacing, 3))
    return (distance <= radius_mm + 1e-9) & ~inside
