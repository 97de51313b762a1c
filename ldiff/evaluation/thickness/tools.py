"""Thickness tools behind one small interface: a T1w scan, its brain mask and optional tissue map in,
a cortical thickness map and the tissue segmentation it came from out.

Only ANTs DiReCT (``KellyKapowski`` from antspyx, the thesis's "ANTs" row) is implemented, because it
is the only one that installs from the package index and runs offline here. Another tool (FreeSurfer,
FastSurfer, DL+DiReCT) is added by writing a class with a ``name`` and a ``measure`` method of the
same signature and listing it in ``THICKNESS_TOOLS``; the study code asks nothing else of a tool.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import SimpleITK as sitk

from ldiff.errors import LdiffError

CSF, GM, WM = 1, 2, 3
"""Tissue labels of segmentations and tissue maps (0 background), as the example dataset's tissue*."""

MISSING_ANTS = ("ldiff_evaluate_thickness needs antspyx (ANTs DiReCT), an optional extra: "
                "pip install 'ldiff[thickness]' (or pip install antspyx).")


@dataclass(frozen=True)
class ThicknessResult:
    """``thickness``: (z, y, x) float32 in mm, 0 outside the cortex; ``segmentation``: (z, y, x) uint8
    with 0 background, 1 CSF, 2 GM, 3 WM (the one the thickness was computed from)."""

    thickness: np.ndarray
    segmentation: np.ndarray


class ThicknessTool(Protocol):
    name: str

    def measure(self, t1: sitk.Image, brain_mask: np.ndarray, tissue: np.ndarray | None = None) -> ThicknessResult:
        """Cortical thickness of ``t1`` inside ``brain_mask`` ((z, y, x) bool); ``tissue``, when given, is
        a (z, y, x) map with the labels above that replaces the tool's own segmentation."""


def require_ants() -> None:
    """Raise one sentence when antspyx is not installed."""
    try:
        import ants  # noqa: F401
    except ImportError as error:
        raise LdiffError(MISSING_ANTS) from error


def brain_mask_of(image: np.ndarray) -> np.ndarray:
    """The brain of a skull-stripped scan: its non-zero voxels with holes filled ((z, y, x) bool)."""
    from scipy import ndimage

    return ndimage.binary_fill_holes(image != 0)


def bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    """The slices of ``mask``'s bounding box grown by ``margin`` voxels (clipped to the array)."""
    if not mask.any():
        raise LdiffError("The brain mask is empty.")
    slices = []
    for axis in range(mask.ndim):
        occupied = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        slices.append(slice(max(int(occupied[0]) - margin, 0), min(int(occupied[-1]) + margin + 1, mask.shape[axis])))
    return tuple(slices)


@dataclass(frozen=True)
class AntsDirect:
    """Atropos three-class segmentation (k-means start, MRF 0.1) and DiReCT (KellyKapowski) with the
    antsCorticalThickness settings (45 iterations, gradient step 0.025, smoothing 1.5).

    Intensities are clipped to the brain's 1st-99.5th percentiles first: Atropos starts its k-means
    from classes spaced over the intensity range, and a few bright voxels (vessels, resampling
    overshoot) otherwise take a class of their own and leave white matter without one.
    """

    name: str = "ants_direct"
    iterations: int = 45
    gradient_step: float = 0.025
    smoothing: float = 1.5
    mrf: float = 0.1

    def measure(self, t1: sitk.Image, brain_mask: np.ndarray, tissue: np.ndarray | None = None) -> ThicknessResult:
        require_ants()
        import ants

        image = sitk.GetArrayFromImage(t1).astype(np.float32)
        crop = bounding_box(brain_mask, margin=3)  # DiReCT's time grows with the volume it is given
        spacing = tuple(float(v) for v in t1.GetSpacing())

        def to_ants(array: np.ndarray):
            return ants.from_numpy(np.ascontiguousarray(array.transpose(2, 1, 0), dtype=np.float32), spacing=spacing)

        mask = brain_mask[crop]
        if tissue is None:
            values = image[crop]
            low, high = np.percentile(values[mask], [1.0, 99.5])
            segmented = ants.atropos(a=to_ants(np.clip(values, low, high)), x=to_ants(mask.astype(np.float32)),
                                     i="Kmeans[3]", m=f"[{self.mrf},1x1x1]", c="[5,0]")
            segmentation = segmented["segmentation"]
            grey, white = segmented["probabilityimages"][GM - 1], segmented["probabilityimages"][WM - 1]
        else:
            labels = np.where(mask, tissue[crop], 0).astype(np.float32)
            segmentation = to_ants(labels)
            grey, white = to_ants((labels == GM).astype(np.float32)), to_ants((labels == WM).astype(np.float32))
        thickness = ants.kelly_kapowski(s=segmentation, g=grey, w=white, its=self.iterations, r=self.gradient_step,
                                        m=self.smoothing, gm_label=GM, wm_label=WM)
        full_thickness = np.zeros(image.shape, dtype=np.float32)
        full_thickness[crop] = thickness.numpy().transpose(2, 1, 0)
        full_segmentation = np.zeros(image.shape, dtype=np.uint8)
        full_segmentation[crop] = np.rint(segmentation.numpy().transpose(2, 1, 0)).astype(np.uint8)
        return ThicknessResult(full_thickness, full_segmentation)


THICKNESS_TOOLS: dict[str, type] = {"ants_direct": AntsDirect}
