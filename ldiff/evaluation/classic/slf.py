"""SLF filling (Valverde et al. 2014, "A white matter lesion-filling approach to improve brain tissue
volume measurements", NeuroImage: Clinical).

SLF replaces every lesion voxel with a draw from N(mean_WM, (0.5 sd_WM)^2), where mean_WM and sd_WM
are statistics of the white matter outside the lesions. Here they are global (the whole image's
WM), so unlike ``nawm`` the fill ignores the lesion's surroundings and cannot follow a bias field or
a local WM gradient. The authors' MATLAB toolbox (``SLF_lesion_filling.m``) differs in two details
not reproduced here: it takes the statistics per axial slice (the third NIfTI axis) and uses the
median rather than the mean of the slice's WM, its WM coming from a 3-class fuzzy c-means.

WM statistics: with a WM mask, its voxels outside the lesions. Without one, they are estimated from
the brain (nonzero voxels outside the lesions, so the image must be skull-stripped with a zero
background): the dominant intensity population
(:func:`~ldiff.evaluation.classic.nawm.dominant_population`) of the voxels above the brain median.
On T1 WM is the brightest tissue, so when it is a large share of the brain (adult brains: roughly
as much WM as GM) the upper half of the histogram is mostly WM, and the mode-seeking estimate drops
the GM tail reaching above the median. This assumes a T1-like contrast with WM as the upper mode: on
FLAIR or T2, where WM is darker than GM, it returns GM statistics, so give a WM mask there. It also
fails when GM clearly outnumbers WM above the median (about twice as much GM as WM, or a GM/WM
contrast of a few noise sd), and its sd is that of the population clipped at 2.5 sd (about 5 % low),
as in ``nawm``.
"""
from __future__ import annotations

import numpy as np

from ldiff.evaluation.classic.lesions import Spacing, check_fill_inputs, output_like
from ldiff.evaluation.classic.nawm import dominant_population

# Valverde et al.: the fill's standard deviation is half that of the WM.
_SD_FRACTION = 0.5


def wm_statistics(values: np.ndarray, lesions: np.ndarray, wm: np.ndarray | None) -> tuple[float, float]:
    """(mean, standard deviation) of the WM outside the lesions; arrays share one (Z, Y, X) shape.

    Raises ValueError if no WM voxel is found (an empty WM mask, or no nonzero voxel outside the
    lesions when there is no mask).
    """
    if wm is not None:
        samples = values[wm & ~lesions]
    else:
        brain = values[(values != 0) & ~lesions]
        # >= rather than >: a brain of a single intensity still has an upper half.
        upper = brain[brain >= np.median(brain)] if brain.size else brain
        samples = upper[dominant_population(upper)]
    if samples.size == 0:
        raise ValueError("no white-matter voxel found outside the lesions to take the SLF statistics from")
    return float(samples.mean()), float(samples.std())


def fill_slf(
    image: np.ndarray,
    lesion_mask: np.ndarray,
    spacing: Spacing | None,
    rng: np.random.Generator,
    wm_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Fill every lesion voxel with a draw from N(mean_WM, (0.5 sd_WM)^2) (Valverde et al. 2014).

    ``image``: (Z, Y, X) intensities, any scale. ``lesion_mask``: same shape, nonzero = lesion.
    ``spacing`` is accepted for a uniform signature and unused: the statistics are global. ``rng``:
    the source of the draws. ``wm_mask``: optional, same shape, nonzero = white matter; without it
    the WM statistics are estimated assuming a T1-like contrast (see the module docstring; give a
    WM mask for FLAIR or T2). Returns a new array (float dtype of the input, float64 for integer
    input) equal to the input outside the lesions. Raises ValueError if no WM voxel is found.
    """
    values, lesions, wm = check_fill_inputs(image, lesion_mask, wm_mask)
    result = output_like(image)
    if not lesions.any():
        return result  # nothing to fill, so no reason to require WM
    mean, sd = wm_statistics(values, lesions, wm)
    # One global distribution, so the lesions need not be visited one by one: the draws fill the
    # lesion voxels in scan order, which is as reproducible for a given seed.
    result[lesions] = rng.normal(mean, _SD_FRACTION * sd, size=int(lesions.sum()))
    return result
