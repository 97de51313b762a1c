"""The lesions a reader study can show, and the crop of one lesion that becomes an item.

A group of scans is a folder of cases in nnU-Net naming (``{case}_0000.nii.gz``, ``{case}_0001.nii.gz``
... one file per channel) and a folder of lesion masks ``{case}.nii.gz``. Its lesions are the
26-connected components of the masks with at least ``min_voxels`` voxels. An item is a cube of
``crop_mm`` around one lesion's centre voxel, cut from every channel with its world geometry kept:
same spacing and direction, origin moved to the cube's first voxel, zeros where the cube leaves the
volume.

Indices written to files are in SimpleITK's (x, y, z) order (as image viewers show them); arrays are
(z, y, x).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from ldiff.errors import LdiffError
from ldiff.io.cases import find_case_channels, read_binary_mask, read_channels
from ldiff.io.images import Geometry, read_geometry
from ldiff.masks.components import label_components, lesion_components


@dataclass(frozen=True)
class CaseFiles:
    """One case of a group: its channel files in channel order and its lesion mask."""

    case: str
    image_files: tuple[Path, ...]
    mask_file: Path


@dataclass(frozen=True)
class LesionCandidate:
    """One lesion that may become an item.

    ``group``: 0 for the reference group (e.g. real), 1 for the generated group (e.g. synthetic).
    ``label``: the component's label in :func:`label_components` of the case's mask (stable, so the
    lesion can be found again). ``centre_xyz``: the lesion voxel nearest the component's centroid (so
    the centre lies inside the lesion even when it is curved), (x, y, z) index.
    """

    group: int
    case: CaseFiles
    label: int
    centre_xyz: tuple[int, int, int]
    voxels: int
    volume_mm3: float


def find_cases(images_dir: Path, masks_dir: Path | None, group_label: str) -> list[CaseFiles]:
    """The cases of a group folder; a case without its mask or with a gap in its channels is refused.

    ``masks_dir`` None: the masks lie beside the images (``{case}.nii.gz`` in ``images_dir``).
    """
    if not images_dir.is_dir():
        raise LdiffError(f"{images_dir}: the {group_label} images folder does not exist.")
    if masks_dir is not None and not masks_dir.is_dir():
        raise LdiffError(f"{masks_dir}: the {group_label} masks folder does not exist.")
    cases = []
    for found in find_case_channels(images_dir):
        channels = [channel for channel, _ in found.files]
        if channels != [f"{index:04d}" for index in range(len(channels))]:
            raise LdiffError(f"{images_dir}: case {found.case} has the channels {', '.join(channels)}; "
                             "they must run _0000, _0001, ... without gaps.")
        mask_file = (masks_dir or images_dir) / f"{found.case}{found.ending}"
        if not mask_file.is_file():
            raise LdiffError(f"{mask_file}: lesion mask of {group_label} case {found.case} not found.")
        cases.append(CaseFiles(found.case, tuple(path for _, path in found.files), mask_file))
    if not cases:
        raise LdiffError(f"{images_dir}: contains no {{case}}_0000.nii.gz images ({group_label} group).")
    return cases


def lesion_centre_voxel(component_mask: np.ndarray, box_start_zyx: Sequence[int], centroid_zyx: Sequence[float],
                        spacing_xyz: Sequence[float]) -> tuple[int, int, int]:
    """(x, y, z) index of the component voxel nearest its centroid in mm.

    ``component_mask``: bool, the component's bounding box; ``box_start_zyx``: where that box starts.
    """
    voxels = np.argwhere(component_mask) + np.asarray(box_start_zyx)
    scale = np.asarray(spacing_xyz, dtype=float)[::-1]
    distances = (((voxels - np.asarray(centroid_zyx)) * scale) ** 2).sum(axis=1)
    z, y, x = (int(v) for v in voxels[int(np.argmin(distances))])
    return x, y, z


def case_lesions(case: CaseFiles, group: int, min_voxels: int) -> list[LesionCandidate]:
    """The lesions of one case with at least ``min_voxels`` voxels (reads the mask and one image header)."""
    geometry = read_geometry(case.image_files[0])
    mask = read_binary_mask(case.mask_file, geometry, case.image_files[0], "lesion mask")
    candidates = []
    for component in lesion_components(mask, geometry.spacing, min_voxels):
        start = [start for start, _ in component.bbox_zyx]
        centre = lesion_centre_voxel(component.mask, start, component.centroid_zyx, geometry.spacing)
        candidates.append(LesionCandidate(group, case, component.label, centre, component.voxel_count,
                                          component.volume_mm3))
    return candidates


def load_case_images(case: CaseFiles) -> tuple[list[sitk.Image], np.ndarray]:
    """Every channel of ``case`` (checked to share one grid) and its mask's component labels (int32 (Z, Y, X))."""
    images = read_channels(case.image_files)
    reference = Geometry.of(images[0])
    mask = read_binary_mask(case.mask_file, reference, case.image_files[0], "lesion mask")
    labels, _ = label_components(mask)
    return images, labels


def crop_half_sizes(crop_mm: float, spacing_xyz: Sequence[float]) -> tuple[int, int, int]:
    """Voxels on each side of the centre per (x, y, z) axis: the cube is ``2 * half + 1`` voxels wide,
    an odd number so the lesion's centre voxel is the cube's middle voxel."""
    return tuple(max(1, int(round(crop_mm / 2.0 / float(step)))) for step in spacing_xyz)  # type: ignore[return-value]


def crop_array(array_zyx: np.ndarray, centre_xyz: Sequence[int], half_xyz: Sequence[int],
               dtype: np.dtype | type = np.float32) -> np.ndarray:
    """The (2*half+1)-voxel box of ``array_zyx`` around ``centre_xyz``, zeros where it leaves the array."""
    size_zyx = [2 * half + 1 for half in reversed(half_xyz)]
    start_zyx = [int(centre) - int(half) for centre, half in zip(reversed(centre_xyz), reversed(half_xyz))]
    crop = np.zeros(size_zyx, dtype=dtype)
    source, target = [], []
    for start, size, extent in zip(start_zyx, size_zyx, array_zyx.shape):
        low, high = max(start, 0), min(start + size, extent)
        if high <= low:
            return crop
        source.append(slice(low, high))
        target.append(slice(low - start, high - start))
    crop[tuple(target)] = array_zyx[tuple(source)]
    return crop


def crop_image(image: sitk.Image, array_zyx: np.ndarray, centre_xyz: Sequence[int], half_xyz: Sequence[int],
               dtype: np.dtype | type = np.float32) -> sitk.Image:
    """:func:`crop_array` as an image in ``image``'s world: same spacing and direction, and the origin of
    the box's first voxel (outside the volume when the box is, so world points keep their values)."""
    crop = sitk.GetImageFromArray(crop_array(array_zyx, centre_xyz, half_xyz, dtype))
    start_xyz = [float(int(centre) - int(half)) for centre, half in zip(centre_xyz, half_xyz)]
    crop.SetSpacing(image.GetSpacing())
    crop.SetDirection(image.GetDirection())
    crop.SetOrigin(image.TransformContinuousIndexToPhysicalPoint(start_xyz))
    return crop
