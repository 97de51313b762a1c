"""Real lesion masks as the lesions of phantom cases: real shapes, sizes, counts and sites.

Simulated lesions (``phantom_lesions``) follow simple distributions. Real MS lesion loads span about
0.1 to 50 ml, with confluent periventricular lesions that no ellipsoid model draws. Given a folder of
real lesion masks in MNI space (for example the 30 consensus masks of the Ljubljana MS dataset,
Lesjak et al. 2017, doi:10.1007/s12021-017-9348-7), a share of the phantom cases takes all the
lesions of one real patient instead of simulated ones:

- Each mask is carried onto the template grid by its world coordinates (linear interpolation of the
  0/1 mask, so the result is a partial-volume map in [0, 1]), once, and kept sparse. Its left-right
  mirror image (about the MNI midline, world x = 0) doubles the variety.
- In a case, the chosen map is softened like the simulated lesions' edges, multiplied by the
  template's WM probability (lesions stop at the cortex and the ventricle walls, as the simulated
  ones do) and given a strength per connected lesion, drawn from the same range as simulated lesions.
  It is then deformed with the anatomy, so the sites follow the case's deformed white matter.

Masks must be in MNI152 space (any MNI grid: FSL's 182x218x182 or the ICBM 2009 grid of nilearn).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ldiff.dataset.phantom_parameters import PhantomParameters
from ldiff.errors import LdiffError
from ldiff.io import array_to_image

MASK_PATTERNS = ("*.nii.gz", "*.nii")
# Interpolated coverage below this is dropped from the sparse map (it would never reach a label).
MIN_COVERAGE = 0.02


@dataclass(frozen=True)
class RealLesionMap:
    """One real mask on the template grid, sparse: ``values`` at the flat (z, y, x) ``indices``.

    ``source``: the file name, with `` (mirrored)`` for the left-right mirror image.
    ``volume_ml``: the lesion volume of the original mask in ml (before restriction to WM).
    """

    source: str
    indices: np.ndarray
    values: np.ndarray
    volume_ml: float

    def dense(self, shape: tuple[int, int, int]) -> np.ndarray:
        array = np.zeros(int(np.prod(shape)), dtype=np.float32)
        array[self.indices] = self.values
        return array.reshape(shape)


@dataclass(frozen=True)
class RealLesionLibrary:
    """The real masks of a folder on one template grid (each as given and mirrored)."""

    folder: str
    maps: tuple[RealLesionMap, ...]

    @property
    def files(self) -> list[str]:
        return sorted({item.source.removesuffix(" (mirrored)") for item in self.maps})


def mask_files(folder: Path) -> list[Path]:
    """The lesion masks in ``folder`` (``*.nii.gz``, ``*.nii``), sorted by name."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise LdiffError(f"--real-lesion-masks {folder}: folder not found.")
    files = sorted({path for pattern in MASK_PATTERNS for path in folder.glob(pattern)})
    if not files:
        raise LdiffError(f"--real-lesion-masks {folder}: holds no .nii.gz or .nii lesion mask.")
    return files


def _read_mask(path: Path) -> sitk.Image:
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError:
        raise LdiffError(f"{path}: cannot be read as a NIfTI image.") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise LdiffError(f"{path}: is not a 3D single-channel mask.")
    array = sitk.GetArrayViewFromImage(image)
    if not np.isin(np.unique(array), (0, 1)).all():
        raise LdiffError(f"{path}: is not a 0/1 lesion mask (it holds other values).")
    return sitk.Cast(image, sitk.sitkFloat32)


def _on_template(mask: sitk.Image, reference: sitk.Image, mirrored: bool) -> np.ndarray:
    """(z, y, x) float32 coverage of ``mask`` on ``reference``'s grid (optionally mirrored in x)."""
    transform = sitk.ScaleTransform(3, (-1.0, 1.0, 1.0)) if mirrored else sitk.Transform()
    resampled = sitk.Resample(mask, reference, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return np.clip(sitk.GetArrayFromImage(resampled), 0.0, 1.0)


def load_real_lesion_library(folder: Path, template_geometry, brain: np.ndarray) -> RealLesionLibrary:
    """Carry every mask of ``folder`` onto the template grid, as given and mirrored.

    Args:
        folder: real lesion masks in MNI space.
        template_geometry: the template's :class:`ldiff.io.Geometry`.
        brain: (z, y, x) bool, the template's brain; a mask with no voxel inside it is an error
            (it is not in MNI space).
    """
    reference = array_to_image(np.zeros(brain.shape, dtype=np.float32), template_geometry)
    maps = []
    for path in mask_files(folder):
        mask = _read_mask(path)
        volume_ml = float(sitk.GetArrayViewFromImage(mask).sum() * np.prod(mask.GetSpacing()) / 1000.0)
        if volume_ml == 0:
            continue  # a patient without lesions has nothing to lend
        for mirrored in (False, True):
            coverage = _on_template(mask, reference, mirrored)
            coverage[~brain] = 0.0
            indices = np.flatnonzero(coverage >= MIN_COVERAGE).astype(np.int64)
            if indices.size == 0:
                raise LdiffError(f"{path}: no lesion voxel falls inside the MNI152 brain; is the mask in MNI space?")
            maps.append(RealLesionMap(path.name + (" (mirrored)" if mirrored else ""), indices,
                                      coverage.ravel()[indices].astype(np.float32), volume_ml))
    if not maps:
        raise LdiffError(f"--real-lesion-masks {folder}: every mask is empty.")
    return RealLesionLibrary(str(Path(folder).expanduser().resolve()), tuple(maps))


def choose_real_map(rng: np.random.Generator, library: RealLesionLibrary | None, share: float) -> RealLesionMap | None:
    """The real lesions a case takes (probability ``share``), or None for simulated lesions.

    ``rng`` is the case's own stream for real lesions, so a case that keeps simulated lesions is the
    same case, bit for bit, with or without a library.
    """
    if library is None:
        return None
    use, pick = rng.random(), rng.integers(len(library.maps))
    return library.maps[int(pick)] if use < share else None


def real_lesion_maps(rng: np.random.Generator, real: RealLesionMap, white_matter: np.ndarray, spacing_mm: float,
                     params: PhantomParameters) -> tuple[np.ndarray, np.ndarray]:
    """(partial volume, severity) of one case's real lesions on the template grid, float32 in [0, 1].

    The coverage is softened by a Gaussian of the simulated lesions' edge width, confined by the WM
    probability, and each connected lesion (coverage >= 0.5) gets its own strength; the soft edge
    around a lesion takes the strength of the nearest lesion.
    """
    coverage = real.dense(white_matter.shape)
    partial_volume = np.zeros(white_matter.shape, dtype=np.float32)
    severity = np.zeros(white_matter.shape, dtype=np.float32)
    sigma = params.lesion_edge_mm / (2.0 * spacing_mm)
    # Work inside the lesions' bounding box (plus the blur's reach): masks are sparse.
    margin = int(np.ceil(3 * sigma)) + 1
    box = tuple(slice(max(int(axis.min()) - margin, 0), int(axis.max()) + margin + 1)
                for axis in np.nonzero(coverage))
    local = ndimage.gaussian_filter(coverage[box], sigma) if sigma > 0 else coverage[box]
    local = np.clip(local, 0.0, 1.0) * white_matter[box]
    partial_volume[box] = local
    labels, count = ndimage.label(local >= 0.5)
    if count == 0:
        return partial_volume, severity
    strengths = np.concatenate([[0.0], rng.uniform(*params.lesion_strength_range, size=count)]).astype(np.float32)
    nearest = ndimage.distance_transform_edt(labels == 0, return_distances=False, return_indices=True)
    severity[box] = local * strengths[labels[tuple(nearest)]]
    return partial_volume, severity
