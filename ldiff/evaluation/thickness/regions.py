"""Cortical regions without a download: lobe-sized sectors of MNI space, carried to each scan.

No atlas ships offline with ldiff's dependencies (nilearn downloads its atlases), so the regions are
a geometric partition of MNI152 coordinates (RAS, mm) that follows the lobes' rough extent:

* hemisphere: ``x < 0`` left, ``x >= 0`` right;
* occipital: ``y < -70``;
* temporal: ``-70 <= y < 10`` and ``z < 0`` (below the Sylvian fissure's level);
* parietal: ``-70 <= y < -20`` and ``z >= 0`` (behind the central sulcus' mean position);
* frontal: the rest (``y >= -20`` above ``z = 0``, and everything in front of ``y = 10``).

They are sectors bounded by planes, not anatomical lobes: a sector's edge cuts through gyri, so a
region mean mixes neighbouring cortex near the planes. What they give is what the study needs: eight
regions of a few thousand cortical voxels each (stable means), the same for every filler of a scan,
reproducible without any file, and a brain map that reads like the thesis's per-region figure.

A scan already registered to MNI152 (the example dataset, open_ms_data's MNI subset) gets its
sectors from its own world coordinates (``mode="mni"``). Any other scan gets them by an affine
registration of nilearn's MNI152 T1 template to the scan (``mode="register"``, antspyx).
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ldiff.io.images import Geometry

LOBES = ("frontal", "parietal", "temporal", "occipital")
REGION_NAMES = tuple(f"{side} {lobe}" for side in ("left", "right") for lobe in LOBES)
"""Region label ``k`` (1-based) is ``REGION_NAMES[k - 1]``; 0 is outside every region."""
REGION_MODES = ("mni", "register")

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def sector_of_mni(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Region label (1-8, see ``REGION_NAMES``) of MNI152 RAS coordinates in mm (arrays of one shape)."""
    x, y, z = (np.asarray(v, dtype=np.float64) for v in (x, y, z))
    lobe = np.zeros(x.shape, dtype=np.uint8)  # 0 frontal, 1 parietal, 2 temporal, 3 occipital
    lobe[(y < -20) & (y >= -70) & (z >= 0)] = 1
    lobe[(y < 10) & (y >= -70) & (z < 0)] = 2
    lobe[y < -70] = 3
    side = (x >= 0).astype(np.uint8)  # 0 left, 1 right
    return (side * len(LOBES) + lobe + 1).astype(np.uint8)


def world_ras_coordinates(geometry: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RAS world coordinates (mm) of every voxel of ``geometry``, each a (z, y, x) array."""
    size = geometry.size  # (x, y, z)
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in size[::-1]), indexing="ij")
    index = np.stack([i, j, k], axis=-1) * np.asarray(geometry.spacing)
    direction = np.asarray(geometry.direction, dtype=np.float64).reshape(3, 3)
    lps = index @ direction.T + np.asarray(geometry.origin)
    ras = lps @ _LPS_TO_RAS.T
    return ras[..., 0], ras[..., 1], ras[..., 2]


def sectors_from_world(geometry: Geometry) -> np.ndarray:
    """Region labels (z, y, x) uint8 of a scan whose world coordinates are MNI152 coordinates."""
    return sector_of_mni(*world_ras_coordinates(geometry))


def _to_ants(image: sitk.Image):
    import ants

    array = sitk.GetArrayFromImage(image).astype(np.float32).transpose(2, 1, 0).copy()
    return ants.from_numpy(array, origin=tuple(image.GetOrigin()), spacing=tuple(image.GetSpacing()),
                           direction=np.asarray(image.GetDirection()).reshape(3, 3))


def sectors_by_registration(t1: sitk.Image, brain_mask: np.ndarray) -> np.ndarray:
    """Region labels (z, y, x) uint8 of any T1w scan: nilearn's MNI152 template (skull-stripped) is
    registered to the skull-stripped scan (affine, mutual information) and its sectors resampled onto
    the scan by nearest neighbour."""
    import ants

    from ldiff.dataset.phantom_template import load_mni152_images

    template = load_mni152_images()["t1"]
    template_sectors = sectors_from_world(Geometry.of(template)).astype(np.float32)
    sector_image = sitk.GetImageFromArray(template_sectors)
    sector_image.CopyInformation(template)
    stripped = sitk.GetImageFromArray(np.where(brain_mask, sitk.GetArrayFromImage(t1), 0).astype(np.float32))
    stripped.CopyInformation(t1)
    fixed = _to_ants(stripped)
    registration = ants.registration(fixed=fixed, moving=_to_ants(template), type_of_transform="Affine")
    warped = ants.apply_transforms(fixed=fixed, moving=_to_ants(sector_image),
                                   transformlist=registration["fwdtransforms"], interpolator="nearestNeighbor")
    return np.rint(warped.numpy().transpose(2, 1, 0)).astype(np.uint8)


def region_means(thickness: np.ndarray, sectors: np.ndarray) -> dict[str, dict[str, float]]:
    """Mean cortical thickness (mm) and cortex voxel count, globally and per region.

    The cortex is where the thickness map is positive (DiReCT writes 0 elsewhere). A region without
    cortex gets ``nan``.
    """
    cortex = thickness > 0
    table = {"global": _mean_of(thickness[cortex])}
    for label, name in enumerate(REGION_NAMES, start=1):
        table[name] = _mean_of(thickness[cortex & (sectors == label)])
    return table


def _mean_of(values: np.ndarray) -> dict[str, float]:
    return {"mean_mm": float(values.mean()) if values.size else float("nan"), "voxels": int(values.size)}
