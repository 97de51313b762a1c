"""One phantom case: deform the template, paint lesions, synthesise T1w and FLAIR, add bias and noise.

The healthy and the lesioned images of a case share every random draw except the lesions, and the
lesion change is multiplicative and exactly zero outside a small halo around the labelled lesions, so
the two differ only in and right around lesions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ldiff.dataset.phantom_lesions import LesionMaps, draw_lesions
from ldiff.dataset.phantom_parameters import PhantomParameters
from ldiff.dataset.phantom_real_lesions import RealLesionLibrary, choose_real_map, real_lesion_maps
from ldiff.dataset.phantom_template import WM, PhantomTemplate, hard_tissue_labels

# Voxels (chessboard distance) around the labelled lesions where partial-volume lesion signal may remain.
LESION_HALO_VOXELS = 2
CHANNEL_NAMES = ("T1w", "FLAIR")


@dataclass(frozen=True)
class PhantomCase:
    """The arrays of one case, all (z, y, x) on the template grid.

    ``images`` / ``healthy_images``: (2, z, y, x) float32, T1w then FLAIR, >= 0, exactly 0 outside the
    brain mask. ``lesion_label``: uint8 0/1. ``tissue_labels``: uint8 0 background, 1 CSF, 2 GM, 3 WM.
    ``lesion_source``: ``"simulated"`` or the real mask the lesions came from.
    """

    images: np.ndarray
    healthy_images: np.ndarray
    lesion_label: np.ndarray
    tissue_labels: np.ndarray
    lesion_source: str = "simulated"


@dataclass(frozen=True)
class CaseContrast:
    """Per-case intensity settings; tissue means are (CSF, GM, WM) relative to WM before the gain."""

    t1_means: np.ndarray
    flair_means: np.ndarray
    gains: np.ndarray  # (2,) WM level of T1w and FLAIR in output units
    bias_amplitudes: np.ndarray  # (2,) standard deviation of the log bias field
    noise_fractions: np.ndarray  # (2,) Rician sigma relative to the gain
    t1_lesion_depth: float
    flair_lesion_gain: float


def case_generators(seed: int, case_index: int) -> dict[str, np.random.Generator]:
    """Independent random streams of one case, derived from (seed, case index) only.

    Separate streams keep, e.g., the anatomy of a case unchanged when a lesion parameter changes, and
    make the result independent of which worker runs which case.
    """
    # New streams go at the end: spawned children do not depend on how many follow them, so adding
    # one leaves every existing dataset bit for bit as it was.
    names = ("anatomy", "lesions", "contrast", "acquisition", "real_lesions")
    children = np.random.SeedSequence([seed, case_index]).spawn(len(names))
    return {name: np.random.default_rng(child) for name, child in zip(names, children)}


def sample_contrast(rng: np.random.Generator, params: PhantomParameters) -> CaseContrast:
    jitter = params.contrast_jitter_fraction
    return CaseContrast(
        t1_means=np.asarray(params.t1_tissue_means) * rng.uniform(1 - jitter, 1 + jitter, 3),
        flair_means=np.asarray(params.flair_tissue_means) * rng.uniform(1 - jitter, 1 + jitter, 3),
        gains=rng.uniform(*params.gain_range, size=2),
        bias_amplitudes=rng.uniform(*params.bias_amplitude_range, size=2),
        noise_fractions=rng.uniform(*params.noise_fraction_range, size=2),
        t1_lesion_depth=float(rng.uniform(*params.t1_lesion_depth_range)),
        flair_lesion_gain=float(rng.uniform(*params.flair_lesion_gain_range)),
    )


def smooth_random_field(
    rng: np.random.Generator, shape: tuple[int, int, int], spacing_mm: float, correlation_mm: float, count: int
) -> torch.Tensor:
    """``count`` smooth Gaussian random fields on the (z, y, x) grid, each with mean 0 and std 1.

    The noise is drawn and smoothed on a coarse grid (a third of the correlation length per voxel,
    independent of ``spacing_mm``), then upsampled trilinearly: cheap, and the same physical field
    whatever the output spacing. Returns a float32 tensor (count, z, y, x).
    """
    coarse_step_mm = correlation_mm / 3.0
    extent_mm = (np.asarray(shape) - 1) * spacing_mm
    coarse_shape = tuple(int(v) for v in np.ceil(extent_mm / coarse_step_mm).astype(int) + 1)
    noise = rng.standard_normal((count, *coarse_shape))
    smooth = ndimage.gaussian_filter(noise, sigma=(0, 3.0, 3.0, 3.0), mode="reflect")
    smooth -= smooth.mean(axis=(1, 2, 3), keepdims=True)
    smooth /= smooth.std(axis=(1, 2, 3), keepdims=True)
    coarse = torch.from_numpy(smooth.astype(np.float32))[None]
    return F.interpolate(coarse, size=tuple(shape), mode="trilinear", align_corners=True)[0]


def _rotation(angles: np.ndarray) -> np.ndarray:
    """Rotation matrix from three angles (radians) about the three axes."""
    a, b, c = angles
    around_0 = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    around_1 = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    around_2 = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return around_2 @ around_1 @ around_0


def sampling_grid(
    rng: np.random.Generator, shape: tuple[int, int, int], spacing_mm: float, params: PhantomParameters
) -> torch.Tensor:
    """Where each output voxel samples the template: a small random affine plus a smooth displacement.

    Returns grid_sample's (1, z, y, x, 3) float32 grid of normalised (x, y, z) positions in [-1, 1]
    (outside means outside the template, which reads as background).
    """
    matrix = _rotation(np.deg2rad(rng.uniform(-1, 1, 3) * params.rotation_max_degrees))
    matrix = matrix @ np.diag(1.0 + rng.uniform(-1, 1, 3) * params.scale_max_fraction)
    translation = rng.uniform(-1, 1, 3) * params.translation_max_mm / spacing_mm
    displacement = smooth_random_field(rng, shape, spacing_mm, params.displacement_correlation_mm, 3)
    displacement *= params.displacement_sd_mm / spacing_mm
    centre = (np.asarray(shape) - 1) / 2.0
    offsets = [torch.arange(n, dtype=torch.float32) - float(c) for n, c in zip(shape, centre)]
    broadcast = [offsets[0][:, None, None], offsets[1][None, :, None], offsets[2][None, None, :]]
    normalised = []
    for k in range(3):
        position = displacement[k] + float(centre[k] + translation[k])
        for j in range(3):
            position = position + float(matrix[k, j]) * broadcast[j]
        normalised.append(position * (2.0 / max(shape[k] - 1, 1)) - 1.0)
    return torch.stack(normalised[::-1], dim=-1)[None]  # grid_sample wants (x, y, z) order


def warp(channels: np.ndarray, grid: torch.Tensor) -> np.ndarray:
    """Trilinear resampling of (c, z, y, x) float32 ``channels`` at ``grid``; zero outside."""
    warped = F.grid_sample(
        torch.from_numpy(np.ascontiguousarray(channels))[None], grid,
        mode="bilinear", padding_mode="zeros", align_corners=True,
    )
    return warped[0].numpy()


def _acquire(
    signal: np.ndarray, bias: np.ndarray, sigma: float, noise: np.ndarray, brain: np.ndarray, out: np.ndarray
) -> None:
    """Write into ``out`` the magnitude image of ``signal`` x ``bias`` plus complex Gaussian noise.

    ``bias`` and ``noise`` ((2, n) standard normal real/imaginary draws) hold values for the n brain
    voxels only, and are shared by the healthy and the lesioned image so that the two differ only
    where the signal differs. ``out`` stays 0 outside ``brain`` (skull stripping).
    """
    clean = signal[brain] * bias
    out[brain] = np.sqrt((clean + sigma * noise[0]) ** 2 + (sigma * noise[1]) ** 2)


def simulate_case(
    template: PhantomTemplate, seed: int, case_index: int, params: PhantomParameters,
    real_lesions: RealLesionLibrary | None = None, real_lesion_share: float = 0.0,
) -> PhantomCase:
    """Generate case ``case_index`` of the dataset with ``seed``; deterministic in (seed, case_index).

    With ``real_lesions``, the case takes one real patient's lesions (see ``phantom_real_lesions``)
    with probability ``real_lesion_share``, simulated lesions otherwise.
    """
    rngs = case_generators(seed, case_index)
    real = choose_real_map(rngs["real_lesions"], real_lesions, real_lesion_share)
    if real is None:
        lesions = draw_lesions(rngs["lesions"], template, params)
    else:
        lesions = LesionMaps(*real_lesion_maps(rngs["real_lesions"], real, template.tissue_probabilities[WM - 1],
                                               template.spacing_mm, params))
    grid = sampling_grid(rngs["anatomy"], template.shape, template.spacing_mm, params)
    # One resampling for everything, so anatomy and lesions move together.
    channels = np.concatenate([
        template.tissue_probabilities,
        template.t1_template[None],
        lesions.partial_volume[None],
        lesions.severity[None],
    ])
    warped = warp(channels, grid)
    probabilities, t1_anatomy, partial_volume, severity = warped[:3], warped[3], warped[4], warped[5]
    del channels, grid  # the largest temporaries; a worker's peak memory matters at 1 mm

    tissue_labels = hard_tissue_labels(probabilities)
    brain = tissue_labels > 0
    lesion_label = (partial_volume >= 0.5) & brain
    tissue_labels[lesion_label] = WM
    # A lesion too faint to be labelled anywhere would be an unlabelled lesion: drop its signal.
    halo = ndimage.binary_dilation(lesion_label, np.ones((3, 3, 3), bool), iterations=LESION_HALO_VOXELS)
    severity = np.where(halo, severity, np.float32(0.0))

    contrast = sample_contrast(rngs["contrast"], params)
    weight = np.float32(params.t1_template_weight)
    t1_model = np.einsum("c,czyx->zyx", contrast.t1_means.astype(np.float32), probabilities)
    healthy_t1 = (1 - weight) * t1_model + weight * t1_anatomy * np.float32(contrast.t1_means[2])
    healthy_flair = np.einsum("c,czyx->zyx", contrast.flair_means.astype(np.float32), probabilities)
    healthy_signals = [np.maximum(healthy_t1, 0.0), np.maximum(healthy_flair, 0.0)]
    lesion_signals = [
        healthy_signals[0] * (1 - np.float32(contrast.t1_lesion_depth) * severity),
        healthy_signals[1] * (1 + np.float32(contrast.flair_lesion_gain) * severity),
    ]

    acquisition = rngs["acquisition"]
    log_bias = smooth_random_field(
        acquisition, template.shape, template.spacing_mm, params.bias_correlation_mm, count=2
    )
    images = np.zeros((2, *template.shape), dtype=np.float32)
    healthy_images = np.zeros_like(images)
    for channel in range(2):
        gain = np.float32(contrast.gains[channel])
        log_bias_in_brain = log_bias[channel].numpy()[brain]
        bias = gain * np.exp(np.float32(contrast.bias_amplitudes[channel]) * log_bias_in_brain)
        sigma = float(contrast.noise_fractions[channel] * contrast.gains[channel])
        noise = acquisition.standard_normal((2, bias.size), dtype=np.float32)
        _acquire(lesion_signals[channel], bias, sigma, noise, brain, out=images[channel])
        _acquire(healthy_signals[channel], bias, sigma, noise, brain, out=healthy_images[channel])
    return PhantomCase(
        images=images,
        healthy_images=healthy_images,
        lesion_label=lesion_label.astype(np.uint8),
        tissue_labels=tissue_labels,
        lesion_source="simulated" if real is None else real.source,
    )
