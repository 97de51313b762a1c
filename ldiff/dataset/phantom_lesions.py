"""Simulated MS lesions drawn in template space: how many, how large, where, and what shape.

A lesion is a union of randomly oriented ellipsoids (one main body, a few satellites) whose boundary
is roughened by smooth noise and softened into a partial-volume ramp. Lesions are confined to white
matter by multiplying with the WM probability, and their centres prefer the ventricles' surroundings.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ldiff.dataset.phantom_parameters import PhantomParameters
from ldiff.dataset.phantom_template import PhantomTemplate

_WM_CHANNEL = 2  # index of WM in PhantomTemplate.tissue_probabilities


@dataclass(frozen=True)
class LesionMaps:
    """Lesions of one case in template space, each (z, y, x) float32 in [0, 1].

    ``partial_volume``: the fraction of each voxel covered by lesion (labels are ``>= 0.5``).
    ``severity``: partial volume times the lesion's strength; drives the intensity change.
    """

    partial_volume: np.ndarray
    severity: np.ndarray


def sample_lesion_count(rng: np.random.Generator, params: PhantomParameters) -> int:
    """Lesions in one case: a minimum plus a negative-binomial excess (most cases few, some many)."""
    shape = params.lesion_count_dispersion
    success = shape / (shape + params.lesion_count_extra_mean)
    extra = int(rng.negative_binomial(shape, success))
    return min(params.lesion_count_minimum + extra, params.lesion_count_maximum)


def sample_lesion_volumes(rng: np.random.Generator, count: int, params: PhantomParameters) -> np.ndarray:
    """Log-normal lesion volumes in mm^3, clipped to ``lesion_volume_range_mm3``; shape (count,)."""
    volumes = rng.lognormal(np.log(params.lesion_volume_median_mm3), params.lesion_volume_log_sd, size=count)
    low, high = params.lesion_volume_range_mm3
    return np.clip(volumes, low, high)


def sample_lesion_centres(rng: np.random.Generator, count: int, template: PhantomTemplate) -> np.ndarray:
    """Lesion centres as continuous (z, y, x) voxel indices, shape (count, 3), drawn from the site map."""
    cdf = template.lesion_site_cdf
    flat = np.searchsorted(cdf, rng.random(count) * cdf[-1], side="right")
    flat = np.minimum(flat, cdf.size - 1)
    voxels = np.stack(np.unravel_index(flat, template.shape), axis=1).astype(np.float64)
    # Sub-voxel jitter so centres are not locked to the grid.
    return voxels + rng.uniform(-0.5, 0.5, size=voxels.shape)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix (QR of a Gaussian matrix with the sign ambiguity fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _ellipsoids(rng: np.random.Generator, volume_mm3: float, params: PhantomParameters) -> list[tuple]:
    """(offset_mm (3,), rotation (3, 3), semi-axes_mm (3,)) of the main body and its satellites.

    The satellites' volumes are taken out of the budget so the union stays close to ``volume_mm3``.
    """
    satellite_scales = rng.uniform(0.35, 0.7, size=rng.poisson(params.lesion_satellite_rate))
    main_volume = volume_mm3 / (1.0 + np.sum(satellite_scales**3))
    main_radius = (3.0 * main_volume / (4.0 * np.pi)) ** (1.0 / 3.0)
    shapes = []
    for index, scale in enumerate(np.concatenate([[1.0], satellite_scales])):
        stretch = np.exp(rng.normal(0.0, params.lesion_elongation_log_sd, size=3))
        stretch /= np.prod(stretch) ** (1.0 / 3.0)  # keep the volume, change the shape
        offset = np.zeros(3)
        if index > 0:
            direction = rng.standard_normal(3)
            offset = direction / np.linalg.norm(direction) * main_radius * rng.uniform(0.6, 1.0)
        shapes.append((offset, _random_rotation(rng), main_radius * scale * stretch))
    return shapes


def lesion_partial_volume(
    rng: np.random.Generator,
    volume_mm3: float,
    spacing_mm: float,
    params: PhantomParameters,
    subvoxel_offset: np.ndarray | None = None,
) -> np.ndarray:
    """One lesion's partial-volume patch, a cube (n, n, n) float32 in [0, 1] (n odd).

    The patch's middle voxel is the voxel nearest the lesion centre; ``subvoxel_offset`` ((3,), in
    voxels, within +-0.5) is where the true centre lies relative to that voxel.

    The signed distance to the union of ellipsoids is approximated per ellipsoid by
    (normalised radius - 1) x mean semi-axis; smooth noise roughens it and a linear ramp as wide as the
    voxel (plus ``lesion_edge_mm``) turns it into coverage.
    """
    shapes = _ellipsoids(rng, volume_mm3, params)
    reach_mm = max(np.linalg.norm(offset) + axes.max() for offset, _, axes in shapes)
    ramp_mm = float(np.hypot(spacing_mm, params.lesion_edge_mm))
    half_width = int(np.ceil((reach_mm * (1.0 + params.lesion_irregularity) + ramp_mm) / spacing_mm)) + 1
    axis = np.arange(-half_width, half_width + 1) * spacing_mm
    points = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)  # (n, n, n, 3) in mm
    if subvoxel_offset is not None:
        points = points - np.asarray(subvoxel_offset) * spacing_mm
    signed_distance = np.full(points.shape[:3], np.inf)
    for offset, rotation, axes in shapes:
        local = (points - offset) @ rotation / axes
        radius = np.sqrt(np.sum(local**2, axis=-1))
        signed_distance = np.minimum(signed_distance, (radius - 1.0) * axes.mean())
    mean_radius = (3.0 * volume_mm3 / (4.0 * np.pi)) ** (1.0 / 3.0)
    roughness = ndimage.gaussian_filter(
        rng.standard_normal(signed_distance.shape), sigma=max(1.0, 0.5 * mean_radius / spacing_mm)
    )
    roughness /= max(float(roughness.std()), 1e-6)
    signed_distance += params.lesion_irregularity * mean_radius * roughness
    return np.clip(0.5 - signed_distance / ramp_mm, 0.0, 1.0).astype(np.float32)


def _overlap_slices(target: np.ndarray, patch: np.ndarray, centre_voxel: np.ndarray) -> tuple[tuple, tuple]:
    """Slices of ``target`` and ``patch`` where a patch whose middle voxel sits on ``centre_voxel``
    ((3,) integer index) overlaps the target."""
    half = patch.shape[0] // 2
    start = centre_voxel - half
    target_slices, patch_slices = [], []
    for axis_start, size, patch_size in zip(start, target.shape, patch.shape):
        low, high = max(axis_start, 0), min(axis_start + patch_size, size)
        target_slices.append(slice(low, max(high, low)))
        patch_slices.append(slice(low - axis_start, max(high, low) - axis_start))
    return tuple(target_slices), tuple(patch_slices)


def draw_lesions(rng: np.random.Generator, template: PhantomTemplate, params: PhantomParameters) -> LesionMaps:
    """All lesions of one case, drawn in the template's (undeformed) space and confined to WM."""
    count = sample_lesion_count(rng, params)
    volumes = sample_lesion_volumes(rng, count, params)
    centres = sample_lesion_centres(rng, count, template)
    strengths = rng.uniform(*params.lesion_strength_range, size=count)
    white_matter = template.tissue_probabilities[_WM_CHANNEL]
    partial_volume = np.zeros(template.shape, dtype=np.float32)
    severity = np.zeros(template.shape, dtype=np.float32)
    for volume, centre, strength in zip(volumes, centres, strengths):
        centre_voxel = np.round(centre).astype(int)
        patch = lesion_partial_volume(rng, float(volume), template.spacing_mm, params, centre - centre_voxel)
        target, source = _overlap_slices(partial_volume, patch, centre_voxel)
        # Multiplying by the WM probability clips lesions at the cortex and the ventricle walls.
        confined = patch[source] * white_matter[target]
        np.maximum(partial_volume[target], confined, out=partial_volume[target])
        np.maximum(severity[target], confined * np.float32(strength), out=severity[target])
    return LesionMaps(partial_volume, severity)
