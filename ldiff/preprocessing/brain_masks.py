"""Brain and white-matter masks, from a tissue map when one exists, otherwise from intensities.

All functions take (z, y, x) arrays and return boolean (z, y, x) arrays. Lesion voxels always
count as brain and as white matter: MS lesions sit in (and displace) white matter, and the masks
are used to place synthetic lesions and to restrict normalisation statistics to the brain.

Derived masks assume skull-stripped inputs (as the thesis did with HD-BET). On an image with the
skull still present the derived "brain" is the head; ldiff does not strip skulls itself.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

TISSUE_WM = 3
# Share of voxels that must sit exactly at one value (the image minimum, or 0) for the image to count
# as skull-stripped with a constant background (then "brain" is simply "not that value").
_CONSTANT_BACKGROUND_FRACTION = 0.05
# The k-means loop stops when no centre moves by more than this fraction of the intensity range.
_KMEANS_TOLERANCE = 1e-6
_KMEANS_MAX_ITERATIONS = 100
# Sampling cap so that clustering a 256^3 brain takes milliseconds; more voxels change the
# centres by far less than the class spread.
_KMEANS_MAX_SAMPLES = 500_000


def brain_mask_from_tissue(tissue: np.ndarray, lesion: np.ndarray | None = None) -> np.ndarray:
    """Brain = any tissue label (> 0), plus lesion voxels. ``tissue`` holds 0 bg, 1 CSF, 2 GM, 3 WM."""
    brain = np.asarray(tissue) > 0
    if lesion is not None:
        brain |= np.asarray(lesion) > 0
    return brain


def wm_mask_from_tissue(tissue: np.ndarray, lesion: np.ndarray | None = None) -> np.ndarray:
    """White matter = tissue label 3, plus lesion voxels."""
    wm = np.rint(np.asarray(tissue)) == TISSUE_WM
    if lesion is not None:
        wm |= np.asarray(lesion) > 0
    return wm


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1D sample: the bin edge maximising the between-class variance."""
    values = np.asarray(values, dtype=np.float64).ravel()
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return low
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    centres = (edges[:-1] + edges[1:]) / 2
    weight_below = np.cumsum(counts)[:-1].astype(np.float64)
    weight_above = weight_below[-1] + counts[-1] - weight_below
    sum_below = np.cumsum(counts * centres)[:-1]
    sum_total = float(np.sum(counts * centres))
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_below = sum_below / weight_below
        mean_above = (sum_total - sum_below) / weight_above
        between = weight_below * weight_above * (mean_below - mean_above) ** 2
    between = np.nan_to_num(between, nan=-1.0)
    # Threshold at the upper edge of the last "below" bin.
    return float(edges[int(np.argmax(between)) + 1])


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean mask (empty in, empty out)."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if count <= 1:
        return labels > 0
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _constant_background(image: np.ndarray) -> float | None:
    """The image's constant background value (its minimum, else 0), or None if no such value covers
    :data:`_CONSTANT_BACKGROUND_FRACTION` of the voxels."""
    for candidate in (image.min(), 0):
        if np.mean(image == candidate) >= _CONSTANT_BACKGROUND_FRACTION:
            return candidate
    return None


def derive_brain_mask(image: np.ndarray, lesion: np.ndarray | None = None) -> np.ndarray:
    """Brain mask of a (skull-stripped) image: foreground, largest component, holes filled.

    Foreground is "not the background value" when the background is one constant value (typical
    after skull stripping: zeros; the minimum, or 0 when a resampled scan's interpolation undershoots
    below it at the brain's edge), else "above Otsu's threshold". The largest component drops isolated
    noise; filling holes keeps dark enclosed structures (ventricles, hypointense lesions) inside.
    Otsu's threshold on a real T1 scan lies between CSF and grey matter, and the ventricles open to the
    outside through the CSF spaces, so that path loses them and the dark lesions beside them: it is
    kept for backgrounds that really are noisy.
    """
    image = np.asarray(image)
    background = _constant_background(image)
    if background is not None:
        foreground = image != background
    else:
        foreground = image > otsu_threshold(image)
    brain = ndimage.binary_fill_holes(largest_component(foreground))
    if lesion is not None:
        brain |= np.asarray(lesion) > 0
    return brain


def kmeans_1d(values: np.ndarray, classes: int = 3, seed: int = 0) -> np.ndarray:
    """Sorted centres (ascending) of a 1D k-means clustering of ``values``.

    Deterministic: centres start at evenly spaced quantiles and at most ``_KMEANS_MAX_SAMPLES``
    values, drawn with a fixed ``seed``, are used.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size > _KMEANS_MAX_SAMPLES:
        values = np.random.default_rng(seed).choice(values, _KMEANS_MAX_SAMPLES, replace=False)
    centres = np.quantile(values, (np.arange(classes) + 0.5) / classes)
    tolerance = _KMEANS_TOLERANCE * max(float(values.max() - values.min()), 1e-12)
    for _ in range(_KMEANS_MAX_ITERATIONS):
        labels = assign_to_centres(values, centres)
        updated = np.array([values[labels == c].mean() if np.any(labels == c) else centres[c] for c in range(classes)])
        updated.sort()
        moved = np.max(np.abs(updated - centres))
        centres = updated
        if moved <= tolerance:
            break
    return centres


def assign_to_centres(values: np.ndarray, sorted_centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre for every value (centres ascending); same shape as ``values``."""
    boundaries = (sorted_centres[:-1] + sorted_centres[1:]) / 2
    return np.searchsorted(boundaries, values, side="right")


def derive_wm_mask(t1: np.ndarray, brain: np.ndarray, lesion: np.ndarray | None = None) -> np.ndarray:
    """White matter by 3-class k-means of T1-weighted intensities inside the brain (WM = brightest).

    Lesions are left out of the clustering (hypointense T1 lesions would pull the classes) and added
    to WM afterwards.
    """
    brain = np.asarray(brain, dtype=bool)
    lesion_mask = np.zeros_like(brain) if lesion is None else np.asarray(lesion) > 0
    sample_region = brain & ~lesion_mask
    wm = np.zeros_like(brain)
    if np.count_nonzero(sample_region) >= 3:
        t1 = np.asarray(t1)
        centres = kmeans_1d(t1[sample_region], classes=3)
        labels = assign_to_centres(t1[brain], centres)
        wm[brain] = labels == 2
    return wm | lesion_mask


def compute_masks(
    images: np.ndarray,
    lesion: np.ndarray,
    tissue: np.ndarray | None,
    wm_channel: int | None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Brain and WM masks of a case, and a note of how each was obtained.

    ``images`` is (C, Z, Y, X); ``lesion`` and ``tissue`` are (Z, Y, X). Without a tissue map the
    brain comes from channel 0 and WM from clustering ``wm_channel`` (a T1-weighted channel). When no
    T1-weighted channel exists (``wm_channel`` is None, e.g. FLAIR only) WM is the whole brain: on
    FLAIR, WM and GM differ too little for reliable clustering, and an over-large WM mask only
    loosens where synthetic lesions may go, whereas a wrong one would put them in cortex.
    Returns ``(brain, wm, sources)`` with boolean masks and
    ``sources = {"brain_mask_source": ..., "wm_mask_source": ...}``.
    """
    if tissue is not None:
        brain = brain_mask_from_tissue(tissue, lesion)
        wm = wm_mask_from_tissue(tissue, lesion)
        return brain, wm, {"brain_mask_source": "tissue_map", "wm_mask_source": "tissue_map"}
    brain = derive_brain_mask(images[0], lesion)
    if wm_channel is None:
        return brain, brain.copy(), {"brain_mask_source": "channel_0", "wm_mask_source": "brain_fallback"}
    wm = derive_wm_mask(images[wm_channel], brain, lesion)
    return brain, wm, {"brain_mask_source": "channel_0", "wm_mask_source": f"kmeans_channel_{wm_channel}"}
