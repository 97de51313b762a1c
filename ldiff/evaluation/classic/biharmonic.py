"""Biharmonic inpainting: the smoothest continuation of the surrounding intensities into the lesion.

scikit-image's ``inpaint_biharmonic`` solves the discrete biharmonic equation (Laplacian of the
Laplacian = 0) at every masked voxel with the known voxels as boundary values. The result is smooth
(no noise texture) and reproduces any linear trend across the lesion exactly. Its stencil reaches 2
voxels, so solving on a crop with a margin of at least 2 voxels gives the same solution as the whole
volume, at a tiny fraction of the cost (one sparse solve per lesion instead of one over 7 million
voxels). The only difference: scikit-image clips the result to the range of the known voxels it
sees, which on a crop is the local range.

Voxels are treated as isotropic (the stencil is in voxel units); other lesions inside a crop are
masked too, so they never serve as boundary values.
"""
from __future__ import annotations

import numpy as np

from ldiff.evaluation.classic.lesions import Spacing, check_fill_inputs, iterate_lesions, output_like

# The biharmonic stencil of scikit-image reaches this far (radius 2).
_STENCIL_RADIUS = 2


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
    from skimage.restoration import inpaint_biharmonic

    if margin < _STENCIL_RADIUS:
        raise ValueError(f"margin must be at least {_STENCIL_RADIUS} voxels, got {margin}")
    values, lesions, _ = check_fill_inputs(image, lesion_mask, wm_mask)
    result = output_like(image)
    for lesion in iterate_lesions(lesions, pad=(margin,) * 3):
        if lesion.any_lesion.all():
            continue  # nothing known to continue from
        filled = inpaint_biharmonic(values[lesion.box], lesion.any_lesion)
        result[lesion.box][lesion.inside] = filled[lesion.inside]
    return result
