"""The MNI152 anatomy that every phantom case is deformed from, on the working grid.

nilearn ships the ICBM152 2009 T1 template with its grey/white-matter probability maps and brain mask,
so the anatomy is real and nothing is downloaded. This module converts them to SimpleITK, resamples
them to the requested spacing on a grid cropped around the brain, derives CSF, hard tissue labels, the
ventricles and the map of where lesions are likely to start.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ldiff.dataset.phantom_parameters import PhantomParameters
from ldiff.errors import LdiffError
from ldiff.io import Geometry

CSF, GM, WM = 1, 2, 3  # tissue label values, as in ldiff.dataset.raw.TISSUE_LABELS
NATIVE_SPACING_MM = 1.0

# nibabel affines map to RAS+ world coordinates, ITK's to LPS+: the first two world axes flip sign.
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class PhantomTemplate:
    """Undeformed anatomy on the working grid; arrays are indexed (z, y, x) like SimpleITK arrays.

    ``tissue_probabilities``: (3, z, y, x) float32, CSF/GM/WM in [0, 1], summing to the soft brain mask.
    ``t1_template``: (z, y, x) float32, the real T1 template scaled so that mean WM = 1.
    ``tissue_labels``: (z, y, x) uint8, 0 background, 1 CSF, 2 GM, 3 WM (hard argmax).
    ``ventricles``: (z, y, x) bool. ``lesion_site_cdf``: (z*y*x,) float64, cumulative lesion-centre
    weights over the flattened grid (zero weight outside WM).
    """

    geometry: Geometry
    tissue_probabilities: np.ndarray
    t1_template: np.ndarray
    tissue_labels: np.ndarray
    ventricles: np.ndarray
    lesion_site_cdf: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.t1_template.shape)

    @property
    def spacing_mm(self) -> float:
        return float(self.geometry.spacing[0])


def nibabel_to_sitk(nibabel_image) -> sitk.Image:
    """Convert a 3D nibabel image to a float32 SimpleITK image at the same physical position.

    The voxel array (i, j, k) becomes SimpleITK's (z, y, x) array; the RAS affine becomes LPS
    spacing/origin/direction, so index-to-world mapping is unchanged.
    """
    array_ijk = np.asarray(nibabel_image.get_fdata(dtype=np.float32))
    if array_ijk.ndim != 3:
        raise LdiffError(f"Expected a 3D template image, got shape {array_ijk.shape}.")
    affine_lps = _RAS_TO_LPS @ np.asarray(nibabel_image.affine, dtype=np.float64)
    linear = affine_lps[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    direction = linear / spacing  # columns are the unit world directions of the index axes
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_ijk.transpose(2, 1, 0)))
    image.SetSpacing(tuple(float(v) for v in spacing))
    image.SetOrigin(tuple(float(v) for v in affine_lps[:3, 3]))
    image.SetDirection(tuple(float(v) for v in direction.flatten()))  # SimpleITK wants row-major
    return image


def load_mni152_images() -> dict[str, sitk.Image]:
    """The 1 mm MNI152 T1 template, GM and WM probabilities and brain mask shipped inside nilearn."""
    from nilearn import datasets  # imported lazily: nilearn is slow to import and only needed here

    loaders = {
        "t1": datasets.load_mni152_template,
        "gm": datasets.load_mni152_gm_template,
        "wm": datasets.load_mni152_wm_template,
        "brain_mask": datasets.load_mni152_brain_mask,
    }
    return {name: nibabel_to_sitk(loader(resolution=1)) for name, loader in loaders.items()}


def working_grid(brain_mask: sitk.Image, spacing_mm: float, margin_mm: float) -> Geometry:
    """An isotropic grid, oriented like ``brain_mask``, covering the brain's bounding box plus margin."""
    mask_zyx = sitk.GetArrayFromImage(brain_mask) > 0.5
    if not mask_zyx.any():
        raise LdiffError("The MNI152 brain mask shipped with nilearn is empty; reinstall nilearn.")
    low, high = np.zeros(3), np.zeros(3)
    for axis_xyz in range(3):
        # Projection onto one axis: which slices along it contain brain.
        other_axes = tuple(a for a in range(3) if a != 2 - axis_xyz)
        occupied = np.flatnonzero(mask_zyx.any(axis=other_axes))
        low[axis_xyz], high[axis_xyz] = occupied[0], occupied[-1]
    centre_index = (low + high) / 2.0
    centre = np.array(brain_mask.TransformContinuousIndexToPhysicalPoint(centre_index.tolist()))
    extent_mm = (high - low) * np.array(brain_mask.GetSpacing()) + 2.0 * margin_mm
    size = np.ceil(extent_mm / spacing_mm).astype(int) + 1
    direction = np.array(brain_mask.GetDirection()).reshape(3, 3)
    origin = centre - direction @ ((size - 1) / 2.0 * spacing_mm)
    return Geometry(
        tuple(int(v) for v in size),
        (float(spacing_mm),) * 3,
        tuple(float(v) for v in origin),
        tuple(float(v) for v in direction.flatten()),
    )


def resample_to_grid(image: sitk.Image, grid: Geometry) -> np.ndarray:
    """Linear resampling onto ``grid`` as a (z, y, x) float32 array; zero outside the template.

    When the grid is coarser than the image, the image is first blurred so that the coarse voxels hold
    local averages (partial volume) instead of aliased point samples.
    """
    coarsening = grid.spacing[0] ** 2 - max(image.GetSpacing()) ** 2
    if coarsening > 1e-6:
        # Gaussian whose FWHM makes up the difference between the two voxel sizes (scipy's filter is
        # several times faster than SimpleITK's recursive one here).
        sigma_voxels = np.sqrt(coarsening) / 2.355 / np.asarray(image.GetSpacing())[::-1]
        smoothed = sitk.GetImageFromArray(ndimage.gaussian_filter(sitk.GetArrayFromImage(image), sigma_voxels))
        smoothed.CopyInformation(image)
        image = smoothed
    reference = sitk.Image([int(v) for v in grid.size], sitk.sitkFloat32)
    grid.apply_to(reference)
    resampled = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(resampled)


def hard_tissue_labels(tissue_probabilities: np.ndarray) -> np.ndarray:
    """Argmax tissue labels from (3, z, y, x) CSF/GM/WM probabilities; 0 where the brain mask < 0.5.

    Returns (z, y, x) uint8 with values 0-3.
    """
    brain = tissue_probabilities.sum(axis=0) >= 0.5
    labels = (np.argmax(tissue_probabilities, axis=0) + 1).astype(np.uint8)
    labels[~brain] = 0
    return labels


def find_ventricles(tissue_labels: np.ndarray, spacing_mm: float, params: PhantomParameters) -> np.ndarray:
    """CSF lying deep inside the brain, in components large enough to be ventricles, as (z, y, x) bool.

    Sulcal CSF hugs the brain surface; the lateral and third ventricles sit 2-4 cm deep, so depth below
    the brain-mask surface separates them without an atlas.
    """
    depth_mm = ndimage.distance_transform_edt(tissue_labels > 0, sampling=spacing_mm)
    deep_csf = (tissue_labels == CSF) & (depth_mm >= params.ventricle_min_depth_mm)
    components, count = ndimage.label(deep_csf)
    if count == 0:
        return deep_csf
    sizes_mm3 = np.bincount(components.ravel())[1:] * spacing_mm**3
    keep = np.flatnonzero(sizes_mm3 >= params.ventricle_min_volume_mm3) + 1
    return np.isin(components, keep)


def lesion_site_weights(
    tissue_labels: np.ndarray, ventricles: np.ndarray, spacing_mm: float, params: PhantomParameters
) -> np.ndarray:
    """Probability of each voxel to host a lesion centre, (z, y, x) float64 summing to 1, zero outside WM.

    A ``periventricular_fraction`` of the mass decays exponentially with the distance to the ventricles;
    the rest is spread evenly over WM (deep, juxtacortical and infratentorial lesions).
    """
    white_matter = tissue_labels == WM
    if not white_matter.any():
        raise LdiffError("The template has no white matter at this spacing; choose a finer --spacing.")
    uniform = white_matter / white_matter.sum()
    if not ventricles.any():
        return uniform
    distance_mm = ndimage.distance_transform_edt(~ventricles, sampling=spacing_mm)
    near = np.where(white_matter, np.exp(-distance_mm / params.periventricular_decay_mm), 0.0)
    near /= near.sum()
    fraction = params.periventricular_fraction
    return fraction * near + (1.0 - fraction) * uniform


def build_phantom_template(spacing_mm: float, params: PhantomParameters) -> PhantomTemplate:
    """Load, resample and analyse the MNI152 anatomy for isotropic voxels of ``spacing_mm``."""
    images = load_mni152_images()
    grid = working_grid(images["brain_mask"], spacing_mm, params.grid_margin_mm)
    t1, grey, white, brain = (resample_to_grid(images[name], grid) for name in ("t1", "gm", "wm", "brain_mask"))
    # GM and WM never exceed the mask in the template, but interpolation can overshoot by rounding.
    grey = np.clip(grey, 0.0, 1.0)
    white = np.clip(white, 0.0, 1.0)
    csf = np.clip(brain - grey - white, 0.0, 1.0)
    tissue_probabilities = np.stack([csf, grey, white]).astype(np.float32)
    tissue_labels = hard_tissue_labels(tissue_probabilities)
    white_matter_t1 = t1[tissue_labels == WM]
    t1_scaled = (t1 / float(white_matter_t1.mean())).astype(np.float32)
    ventricles = find_ventricles(tissue_labels, spacing_mm, params)
    weights = lesion_site_weights(tissue_labels, ventricles, spacing_mm, params)
    return PhantomTemplate(
        geometry=grid,
        tissue_probabilities=tissue_probabilities,
        t1_template=t1_scaled,
        tissue_labels=tissue_labels,
        ventricles=ventricles,
        lesion_site_cdf=np.cumsum(weights.ravel()),
    )
