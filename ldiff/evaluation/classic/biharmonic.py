"""Biharmonic inpainting: the smoothest continuation of the surrounding intensities into the lesion.

The discrete biharmonic equation (Laplacian of the Laplacian = 0) is solved at every masked voxel with
the known voxels as boundary values, as scikit-image's ``inpaint_biharmonic`` does. The result is smooth
(no noise texture) and reproduces any linear trend across the lesion exactly. The solve, lesion by
lesion on a crop around each, is :func:`ldiff.inference.smooth_fill.biharmonic_inpaint` (the warm
start of conditional filling uses it too); this module gives it the classic fillers' signature.
"""
from __future__ import annotations

import numpy as np

from ldiff.evaluation.classic.lesions import Spacing, check_fill_inputs, output_like
from ldiff.inference.smooth_fill import biharmonic_inpaint


def fill_biharmonic(
    image: np.ndarray,
    lesion_mask: np.ndarray,
    spacing: Spacing | None,
    rng: np.random.Generator,
    wm_mask: np.ndarray | None = None,
    *,
    margin: int = 3,
) -> np.ndarray:
    """Fill each lesion by 3D biharmonic inpainting on a crop around it.

    ``image``: (Z, Y, X) intensities, any scale. ``lesion_mask``: same shape, nonzero = lesion.
    ``margin``: voxels added around each lesion's bounding box (>= 2, the stencil's reach).
    ``spacing``, ``rng`` and ``wm_mask`` are accepted for a uniform signature and unused: the method
    is deterministic and tissue-agnostic. Returns a new array (float dtype of the input, float64
    for integer input) equal to the input outside the lesions.
    """
    values, lesions, _ = check_fill_inputs(image, lesion_mask, wm_mask)
    result = output_like(image)
    result[lesions] = biharmonic_inpaint(values, lesions, margin)[lesions]
    return result
