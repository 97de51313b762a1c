"""The knobs of the MS phantom generator, gathered in one frozen record saved into dataset.json.

Intensities are relative to normal white matter (WM = 1) before the per-case gain is applied. The
defaults aim for images that look like skull-stripped 3T T1w and 3D-FLAIR scans of an MS patient.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PhantomParameters:
    """Every number that shapes a phantom case; ``asdict`` of it goes into dataset.json."""

    # Grid: the brain mask's bounding box plus this margin, so the random deformation rarely pushes
    # brain out of the field of view.
    grid_margin_mm: float = 10.0

    # Anatomy: small random affine plus a smooth random displacement.
    rotation_max_degrees: float = 3.0
    scale_max_fraction: float = 0.03
    translation_max_mm: float = 2.0
    displacement_sd_mm: float = 2.5  # per component
    displacement_correlation_mm: float = 12.0

    # Contrast. T1w: CSF < GM < WM; FLAIR: CSF < WM < GM. The T1w channel mixes the tissue model with
    # the real template so deep grey matter and fine anatomy keep their true T1 appearance.
    t1_tissue_means: tuple[float, float, float] = (0.25, 0.72, 1.0)  # CSF, GM, WM
    flair_tissue_means: tuple[float, float, float] = (0.12, 1.35, 1.0)  # CSF, GM, WM
    t1_template_weight: float = 0.5
    contrast_jitter_fraction: float = 0.05  # per tissue, uniform in +-this, kept small so orders hold
    gain_range: tuple[float, float] = (700.0, 1300.0)  # arbitrary scanner units of WM

    # Acquisition: multiplicative bias field and Rician noise (magnitude of complex Gaussian noise).
    bias_amplitude_range: tuple[float, float] = (0.05, 0.15)  # standard deviation of the log field
    bias_correlation_mm: float = 40.0
    noise_fraction_range: tuple[float, float] = (0.01, 0.03)  # noise sigma relative to WM

    # Lesion load: count = minimum + negative binomial (heavy right tail, like real MS cohorts).
    lesion_count_minimum: int = 3
    lesion_count_extra_mean: float = 12.0
    lesion_count_dispersion: float = 1.2  # negative-binomial shape; smaller means heavier tail
    lesion_count_maximum: int = 80

    # Lesion size: log-normal volumes from a few voxels up to a few cm^3.
    lesion_volume_median_mm3: float = 50.0
    lesion_volume_log_sd: float = 1.5
    lesion_volume_range_mm3: tuple[float, float] = (3.0, 5000.0)

    # Lesion shape: a main ellipsoid, a few satellite ellipsoids and a noisy, soft boundary.
    lesion_elongation_log_sd: float = 0.3
    lesion_satellite_rate: float = 1.0  # Poisson mean of satellites per lesion
    lesion_irregularity: float = 0.2  # boundary noise amplitude relative to the lesion radius
    lesion_edge_mm: float = 1.0  # partial-volume ramp on top of the voxel size

    # Lesion location: a share of lesions drawn near the ventricles, the rest anywhere in WM.
    periventricular_fraction: float = 0.6
    periventricular_decay_mm: float = 5.0
    ventricle_min_depth_mm: float = 20.0  # CSF at least this deep inside the brain counts as ventricle
    ventricle_min_volume_mm3: float = 1000.0

    # Lesion contrast: T1w darkens by up to ``depth``, FLAIR brightens by up to ``gain`` (both times the
    # lesion's severity in [0, 1]). The FLAIR range was (0.6, 1.0) until 2026-12-06: its lesions came out
    # +59 % brighter than the white matter 2-5 mm around them, while real 3T 3D-FLAIR lesions measured the
    # same way are +35 % and +40 % (the two patients of Lesjak et al. 2017), and the phantoms' healthy
    # FLAIR tissue already matches theirs (documentation/results/synthesis_contrast_matching/). The range
    # keeps its spread so that models see faint and bright lesions; its mean now gives about +39 %.
    lesion_strength_range: tuple[float, float] = (0.75, 1.0)
    t1_lesion_depth_range: tuple[float, float] = (0.2, 0.45)
    flair_lesion_gain_range: tuple[float, float] = (0.3, 0.75)

    def to_dict(self) -> dict:
        return asdict(self)
