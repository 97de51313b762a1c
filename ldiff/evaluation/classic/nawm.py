"""NAWM filling in the style of FSL ``lesion_filling`` (Battaglini et al. 2012, Hum Brain Mapp).

Battaglini et al. replace each lesion's voxels with intensities drawn from the normal-appearing
white matter (NAWM) around that lesion, so that the filled lesion has the local WM level *and* its
texture (noise), which is what segmentation tools expect of WM. Here, per 26-connected lesion:

1. Neighbourhood: voxels outside every lesion whose centre lies within ``neighbourhood_mm`` of the
   lesion (a shell, measured in mm so anisotropic scans get a physically round shell).
2. NAWM samples: with a WM mask, the shell voxels inside it. Without one, the shell's dominant
   intensity population (see :func:`dominant_population`): lesions sit in WM, so WM is normally the
   most common tissue around them, and a mode-seeking estimate stays on WM where a plain mean or
   median would be dragged towards nearby cortex or CSF. Juxtacortical lesions whose shell is mostly
   grey matter break that assumption; give a WM mask for them.
3. If fewer than ``min_samples`` NAWM voxels are found, the shell radius doubles (up to
   ``max_doublings`` times); if still none, the NAWM of the whole volume is used.
4. Fill: independent draws from a Gaussian with the samples' mean and standard deviation (the
   published method, ``distribution="gaussian"``) or, with ``distribution="empirical"``, draws with
   replacement from the samples themselves (keeps skew, e.g. from partial volume).
"""
from __future__ import annotations

import math
from typing import Callable, Iterator, Literal

import numpy as np

from ldiff.evaluation.classic.lesions import (
    Lesion,
    Spacing,
    check_fill_inputs,
    crop_lesion,
    label_lesions,
    output_like,
    shell_within,
    voxel_reach,
)

Distribution = Literal["gaussian", "empirical"]

# Sigma clipping at +-2.5 sd keeps 98.8 % of a normal population; the standard deviation of what is
# kept is smaller than the population's by this factor, which the estimate divides out.
_CLIP_SD = 2.5
_TRUNCATED_SD_FACTOR = math.sqrt(
    1.0 - 2.0 * _CLIP_SD * math.exp(-0.5 * _CLIP_SD**2) / math.sqrt(2.0 * math.pi) / math.erf(_CLIP_SD / math.sqrt(2.0))
)
_MAD_TO_SD = 1.4826


def histogram_mode(samples: np.ndarray, grid_points: int = 256) -> float:
    """Location of the highest peak of a Gaussian kernel density estimate of 1D ``samples``.

    Bandwidth by Silverman's rule (0.9 min(sd, IQR / 1.34) n^-1/5), which is narrow enough to
    separate WM from GM (contrast several noise sd) and wide enough to be stable for a few dozen voxels.
    """
    samples = np.asarray(samples, dtype=np.float64)
    low, high = float(samples.min()), float(samples.max())
    if high <= low:
        return low
    q75, q25 = np.percentile(samples, [75, 25])
    spread = min(float(samples.std()), float(q75 - q25) / 1.34)
    if spread <= 0:
        spread = float(samples.std())
    bandwidth = 0.9 * spread * samples.size ** (-0.2)
    grid = np.linspace(low, high, grid_points)
    # Chunked so the (grid x samples) kernel matrix stays small for whole-volume fallbacks.
    density = np.zeros(grid_points)
    for start in range(0, samples.size, 65536):
        chunk = samples[start : start + 65536]
        density += np.exp(-0.5 * ((grid[:, None] - chunk[None, :]) / bandwidth) ** 2).sum(axis=1)
    return float(grid[int(np.argmax(density))])


def dominant_population(samples: np.ndarray, iterations: int = 20) -> np.ndarray:
    """Bool mask (same length as 1D ``samples``) of the values in the dominant intensity population.

    Start at the density mode with a MAD-based spread around it, then alternate keeping values within
    2.5 sd and re-estimating mean and (truncation-corrected) sd from them until the kept set is
    stable. A second tissue a few sd away (GM, CSF, another lesion's halo) is excluded.
    """
    samples = np.asarray(samples, dtype=np.float64)
    if samples.size == 0:
        return np.zeros(0, dtype=bool)
    centre = histogram_mode(samples)
    spread = _MAD_TO_SD * float(np.median(np.abs(samples - centre)))
    if spread <= 0:
        return samples == centre
    keep = np.abs(samples - centre) <= _CLIP_SD * spread
    for _ in range(iterations):
        if keep.sum() < 2:
            break
        centre = float(samples[keep].mean())
        spread = float(samples[keep].std()) / _TRUNCATED_SD_FACTOR
        if spread <= 0:
            break
        updated = np.abs(samples - centre) <= _CLIP_SD * spread
        if np.array_equal(updated, keep):
            break
        keep = updated
    return keep


def nawm_samples(values: np.ndarray, candidates: np.ndarray, wm: np.ndarray | None) -> np.ndarray:
    """NAWM intensities (1D float64) among the ``candidates`` voxels of ``values`` (same shapes)."""
    if wm is not None:
        return values[candidates & wm]
    pool = values[candidates]
    return pool[dominant_population(pool)]


def local_nawm_samples(
    values: np.ndarray,
    lesions: np.ndarray,
    wm: np.ndarray | None,
    spacing: Spacing | None,
    radius_mm: float,
    min_samples: int,
    max_doublings: int,
    pick: Callable[[np.ndarray, np.ndarray, np.ndarray | None], np.ndarray],
) -> Iterator[tuple[Lesion, np.ndarray]]:
    """Each lesion with the NAWM intensities around it, as ``nawm`` and ``ringmedian`` draw them.

    ``pick(values_crop, shell, wm_crop)`` chooses the samples among the shell voxels (within
    ``radius_mm`` of the lesion, outside every lesion). While fewer than ``min_samples`` are found the
    radius doubles, at most ``max_doublings`` times; a lesion with none gets the NAWM of the whole
    volume. ValueError when there is no NAWM anywhere.
    """
    labels, boxes = label_lesions(lesions)
    global_samples: np.ndarray | None = None
    for index, tight_box in boxes:
        samples = np.zeros(0)
        radius = float(radius_mm)
        for _ in range(max_doublings + 1):
            lesion = crop_lesion(labels, lesions, index, tight_box, voxel_reach(radius, spacing))
            shell = shell_within(lesion.inside, radius, spacing) & ~lesion.any_lesion
            samples = pick(values[lesion.box], shell, None if wm is None else wm[lesion.box])
            if samples.size >= min_samples:
                break
            radius *= 2.0
        if samples.size == 0:
            if global_samples is None:
                global_samples = nawm_samples(values, ~lesions, wm)
            samples = global_samples
        if samples.size == 0:
            raise ValueError("no normal-appearing white matter found anywhere to fill the lesions from")
        yield lesion, samples


def fill_nawm(
    image: np.ndarray,
    lesion_mask: np.ndarray,
    spacing: Spacing | None,
    rng: np.random.Generator,
    wm_mask: np.ndarray | None = None,
    *,
    neighbourhood_mm: float = 5.0,
    min_samples: int = 50,
    max_doublings: int = 3,
    distribution: Distribution = "gaussian",
) -> np.ndarray:
    """Fill each lesion with random draws matching the NAWM around it (FSL ``lesion_filling`` style).

    ``image``: (Z, Y, X) intensities, any scale. ``lesion_mask``: same shape, nonzero = lesion.
    ``spacing``: (x, y, z) mm (None = 1 mm). ``wm_mask``: optional, same shape, nonzero = white
    matter. Returns a new array (float dtype of the input, float64 for integer input) equal to the
    input outside the lesions. Parameters and the no-WM-mask estimate are described in the module
    docstring.
    """
    if distribution not in ("gaussian", "empirical"):
        raise ValueError(f"distribution must be 'gaussian' or 'empirical', got {distribution!r}")
    if neighbourhood_mm <= 0 or min_samples < 1 or max_doublings < 0:
        raise ValueError("neighbourhood_mm must be > 0, min_samples >= 1 and max_doublings >= 0")
    values, lesions, wm = check_fill_inputs(image, lesion_mask, wm_mask)
    result = output_like(image)
    for lesion, samples in local_nawm_samples(values, lesions, wm, spacing, neighbourhood_mm, min_samples,
                                              max_doublings, nawm_samples):
        count = int(lesion.inside.sum())
        if distribution == "gaussian":
            draws = rng.normal(samples.mean(), samples.std(), size=count)
        else:
            draws = rng.choice(samples, size=count, replace=True)
        result[lesion.box][lesion.inside] = draws
    return result
