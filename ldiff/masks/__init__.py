"""Lesion masks: components and statistics, boundary width, dilation, shapes, placement, sampling.

Arrays are (z, y, x) (axial slices (y, x)); spacings are (x, y, z) mm as in SimpleITK. Randomness
always comes from a caller's ``numpy.random.Generator`` so every draw is reproducible.

Modules, one job each: ``components`` (connected lesions, dataset statistics), ``boundary`` (rim
width from intensities, dilation radius rule), ``morphology`` (dilation), ``shapes`` (synthetic
ellipsoids/ellipses), ``library`` (real lesion shapes, .npz), ``placement`` (putting a shape in WM),
``sampler`` (training masks from a JSON-able config).
"""
from ldiff.masks.boundary import (
    boundary_profile,
    boundary_width_from_intensity,
    dilation_radius_voxels,
    signed_border_distance_mm,
)
from ldiff.masks.components import LesionComponent, label_components, lesion_components, lesion_statistics
from ldiff.masks.library import LesionLibrary, axial_cross_section
from ldiff.masks.morphology import dilate_mask
from ldiff.masks.placement import Placement, ShapePlacer, periventricular_weights
from ldiff.masks.sampler import DEFAULT_MASK_CONFIG, MaskSampler, mask_config_from_statistics, resolve_mask_config
from ldiff.masks.shapes import random_ellipse, random_ellipsoid, random_rotation

__all__ = [
    "DEFAULT_MASK_CONFIG",
    "LesionComponent",
    "LesionLibrary",
    "MaskSampler",
    "Placement",
    "ShapePlacer",
    "axial_cross_section",
    "boundary_profile",
    "boundary_width_from_intensity",
    "dilate_mask",
    "dilation_radius_voxels",
    "label_components",
    "lesion_components",
    "lesion_statistics",
    "mask_config_from_statistics",
    "periventricular_weights",
    "random_ellipse",
    "random_ellipsoid",
    "random_rotation",
    "resolve_mask_config",
    "signed_border_distance_mm",
]
