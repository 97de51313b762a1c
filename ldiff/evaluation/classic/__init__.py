"""Classic lesion fillers that MS researchers use today, reimplemented for honest comparison.

* ``nawm``: random draws from the local normal-appearing WM (FSL ``lesion_filling``, Battaglini 2012);
* ``rim``: random draws from the one-voxel rim (ANTs ``LesionFilling``);
* ``patch``: onion-peeling patch-based non-local means (NiftySeg ``seg_FillLesions``, Prados 2016);
* ``biharmonic``: smooth biharmonic continuation (as scikit-image's ``inpaint_biharmonic``);
* ``ringmedian``: one constant per lesion, the median of the NAWM ring around it (a simple baseline);
* ``slf``: draws from N(mean, (sd / 2)^2) of the image's WM (SLF, Valverde 2014).

Each ``fill_<name>(image, lesion_mask, spacing, rng, wm_mask=None, **options)`` takes a (Z, Y, X)
image and returns a new array that differs from it only inside the lesion mask; ``classic_fill``
picks one by name and seeds it; ``fill_classic_files`` does the same for NIfTI files.
"""
from ldiff.evaluation.classic.biharmonic import fill_biharmonic
from ldiff.evaluation.classic.dispatch import CLASSIC_METHODS, classic_fill
from ldiff.evaluation.classic.files import fill_classic_files
from ldiff.evaluation.classic.nawm import fill_nawm
from ldiff.evaluation.classic.patch import fill_patch
from ldiff.evaluation.classic.rim import fill_rim
from ldiff.evaluation.classic.ringmedian import fill_ringmedian
from ldiff.evaluation.classic.slf import fill_slf

__all__ = [
    "CLASSIC_METHODS",
    "classic_fill",
    "fill_biharmonic",
    "fill_classic_files",
    "fill_nawm",
    "fill_patch",
    "fill_rim",
    "fill_ringmedian",
    "fill_slf",
]
