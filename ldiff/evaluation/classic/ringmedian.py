"""Ring-median filling: each lesion becomes one constant, the median of the NAWM ring around it.

The simplest honest baseline: no texture, no random draw, only the local white-matter level. Per
26-connected lesion:

1. Ring: voxels outside every lesion whose centre lies within ``ring_mm`` of the lesion (measured in
   mm, so anisotropic scans get a physically round ring). Voxels of a neighbouring lesion are never
   part of it: they are the abnormal tissue being replaced, not a reference for it.
2. NAWM samples: with a WM mask, the ring voxels inside it (the whole ring when none is, as ``rim``
   does: a lesion drawn over the WM border still gets a local level). Without one, the ring's
   dominant intensity population (:func:`~ldiff.evaluation.classic.nawm.dominant_population`), so
   that nearby cortex or CSF does not pull the median off WM.
3. If fewer than ``min_samples`` samples are found, the radius doubles (up to ``max_doublings``
   times), as ``nawm`` does; if still none, the NAWM of the whole volume is used.
4. Fill: the median of the samples, one value for the whole lesion. The median rather than the mean
   because a few partial-volume or unlabelled abnormal voxels in the ring barely move it.
"""
from __future__ import annotations

import numpy as np

from ldiff.evaluation.classic.lesions import Spacing, check_fill_inputs, output_like
from ldiff.evaluation.classic.nawm import local_nawm_samples, nawm_samples


def ring_samples(values: np.ndarray, ring: np.ndarray, wm: np.ndarray | None) -> np.ndarray:
    """NAWM intensities (1D float64) of the ``ring`` voxels of ``values`` (``wm``: same crop shape or None)."""
    if wm is not None and not np.any(ring & wm):
        # No WM in the ring at all (a lesion drawn outside the WM mask): the whole ring is still a
        # better local reference than a level taken from the other side of the brain.
        return values[ring]
    return nawm_samples(values, ring, wm)


def fill_ringmedian(
    image: np.ndarray,
    lesion_mask: np.ndarray,
    spacing: Spacing | None,
    rng: np.random.Generator,
    wm_mask: np.ndarray | None = None,
    *,
    ring_mm: float = 3.0,
    min_samples: int = 20,
    max_doublings: int = 3,
) -> np.ndarray:
    """Fill each lesion with the median intensity of the normal-appearing WM ring around it.

    ``image``: (Z, Y, X) intensities, any scale. ``lesion_mask``: same shape, nonzero = lesion.
    ``spacing``: (x, y, z) mm (None = 1 mm). ``rng`` is accepted for a uniform signature and unused:
    the fill is deterministic. ``wm_mask``: optional, same shape, nonzero = white matter. Returns a
    new array (float dtype of the input, float64 for integer input) equal to the input outside the
    lesions, constant inside each lesion. Parameters are described in the module docstring.
    """
    if ring_mm <= 0 or min_samples < 1 or max_doublings < 0:
        raise ValueError("ring_mm must be > 0, min_samples >= 1 and max_doublings >= 0")
    values, lesions, wm = check_fill_inputs(image, lesion_mask, wm_mask)
    result = output_like(image)
    for lesion, samples in local_nawm_samples(values, lesions, wm, spacing, ring_mm, min_samples, max_doublings,
                                              ring_samples):
        result[lesion.box][lesion.inside] = np.median(samples)
    return result
