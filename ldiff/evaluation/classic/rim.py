"""Rim filling in the style of ANTs ``LesionFilling``.

ANTs fills each lesion with values drawn at random from the voxels of its one-voxel rim, i.e. the
layer just outside the drawn border. Because it was written for T1-weighted images, where lesions
are dark, it draws only from rim voxels at or above the lesion's mean intensity, so dark partial-
volume or CSF voxels touching the lesion are not copied in. That filter is the
``hypointense_only=True`` option here; it is off by default because it is wrong for FLAIR or T2,
where lesions are bright and the filter would keep exactly the abnormal rim voxels. When no rim
voxel passes the filter (the lesion is not darker than its rim), all rim voxels are used.

The rim is the 26-neighbourhood dilation of the lesion minus every lesion voxel. With a WM mask,
only rim voxels inside it are used (falling back to the whole rim when none is); ANTs itself takes
no WM mask. A lesion without any rim (it covers the whole image) is left unchanged.
"""
from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from ldiff.evaluation.classic.lesions import (
    FULL_CONNECTIVITY,
    Spacing,
    check_fill_inputs,
    iterate_lesions,
    output_like,
)

logger = logging.getLogger("ldiff")


def rim_samples(
    values: np.ndarray,
    inside: np.ndarray,
    any_lesion: np.ndarray,
    wm: np.ndarray | None,
    hypointense_only: bool,
) -> np.ndarray:
    """Intensities (1D float64) of the rim voxels a lesion may be filled from.

    ``values``, ``inside`` (this lesion), ``any_lesion`` (all lesions) and ``wm`` share one crop shape.
    """
    rim = ndimage.binary_dilation(inside, structure=FULL_CONNECTIVITY) & ~any_lesion
    if wm is not None and np.any(rim & wm):
        rim &= wm
    samples = values[rim]
    if hypointense_only and samples.size:
        bright = samples >= values[inside].mean()
        if bright.any():
            samples = samples[bright]
    return samples


def fill_rim(
    image: np.ndarray,
    lesion_mask: np.ndarray,
    spacing: Spacing | None,
    rng: np.random.Generator,
    wm_mask: np.ndarray | None = None,
    *,
    hypointense_only: bool = False,
) -> np.ndarray:
    """Fill each lesion with random draws (with replacement) from its one-voxel rim.

    ``image``: (Z, Y, X) intensities, any scale. ``lesion_mask``: same shape, nonzero = lesion.
    ``spacing`` is accepted for a uniform signature and unused: the rim is one voxel whatever its
    size. ``wm_mask``: optional, same shape, restricts the rim to WM. ``hypointense_only``: ANTs'
    rule for T1 (draw only from rim voxels >= the lesion mean). Returns a new array (float dtype of
    the input, float64 for integer input) equal to the input outside the lesions.
    """
    values, lesions, wm = check_fill_inputs(image, lesion_mask, wm_mask)
    result = output_like(image)
    for lesion in iterate_lesions(lesions, pad=(1, 1, 1)):
        crop_wm = None if wm is None else wm[lesion.box]
        samples = rim_samples(values[lesion.box], lesion.inside, lesion.any_lesion, crop_wm, hypointense_only)
        if samples.size == 0:
            logger.warning("A lesion has no rim voxels to draw from (it covers the image); left unchanged.")
            continue
        result[lesion.box][lesion.inside] = rng.choice(samples, size=int(lesion.inside.sum()), replace=True)
    return result
