"""How much synthetic lesions look like a patient's own: contrast, intensity distribution, coverage.

A real scan says what its lesions look like; synthetic lesions painted into the same scan's
normal-appearing white matter (NAWM) should look the same. Per channel:

* **contrast**: the volume-weighted mean contrast (%) of each lesion against the median of its NAWM
  ring (:func:`ldiff.evaluation.benchmark.lesion_context.residual_contrast`; T1w lesions are darker,
  negative; FLAIR lesions brighter, positive), for the synthetic lesions in the synthesised scan and for
  the real lesions in the original scan, and their ratio (1 is ideal; issue 12 asks for 0.8 to 1.2).
* **distribution**: every lesion voxel divided by its own lesion's ring median (a scale-free intensity),
  for synthetic and for real lesions, and the 1-Wasserstein distance between the two distributions (in
  units of the ring median: 0.05 means the distributions are 5 % of the NAWM level apart on average).
* **source contrast**: the same contrast for only those real lesions whose shapes were moved to the sites
  (:func:`source_lesions`), and the synthetic / source ratio. A patient's volume-weighted contrast is
  dominated by its largest lesions (patient19's one confluent 47 ml lesion is 94 % of its lesion volume),
  which are darker than small ones and too large to move into NAWM, so the all-lesion ratio compares
  small synthetic lesions with a large real one; the source ratio compares like with like.
* **coverage**: the fraction of the synthesis mask whose voxels changed by more than
  ``noise_factor`` times the scan's noise level (a robust standard deviation of the NAWM after a
  3x3x3 median filter is subtracted): 1 when the whole mask was painted, low when only part was.

Where synthetic lesions go: :func:`synthesis_sites` moves the patient's own lesion shapes into its
NAWM, away from cortex, CSF and the real lesions (the transplant of ``ldiff_benchmark``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage, stats

from ldiff.evaluation.benchmark.lesion_context import lesion_rings, normal_appearing_wm, residual_contrast
from ldiff.evaluation.benchmark.transplant import TransplantSettings, allowed_region, place_shapes, shapes_of
from ldiff.masks import lesion_components
from ldiff.masks.geometry import Spacing

DEFAULT_NOISE_FACTOR = 2.0


@dataclass(frozen=True)
class ChannelRealism:
    """The realism measures of one channel; see the module docstring. Contrasts in %, NaN when unusable."""

    channel: str
    synthetic_contrast: float
    real_contrast: float
    contrast_ratio: float
    wasserstein: float
    coverage: float
    noise_level: float
    synthetic_voxels: int
    real_voxels: int
    source_contrast: float = float("nan")
    source_ratio: float = float("nan")

    def as_dict(self) -> dict:
        return asdict(self)


def synthesis_sites(t1: np.ndarray, lesion: np.ndarray, classes: np.ndarray, spacing: Spacing | None,
                    rng: np.random.Generator, settings: TransplantSettings = TransplantSettings()) -> np.ndarray:
    """bool (Z, Y, X): the patient's own lesion shapes (``lesion``) placed whole in its NAWM.

    ``classes`` from :func:`~ldiff.evaluation.benchmark.lesion_context.tissue_classes` of ``t1``. Shapes
    keep ``settings.tissue_margin_mm`` from other tissue and ``settings.lesion_margin_mm`` from real lesions.
    """
    shapes = shapes_of(lesion, spacing, settings.min_voxels)
    if not shapes:
        raise ValueError(f"no lesion of at least {settings.min_voxels} voxels to take a shape from")
    return place_shapes(shapes, allowed_region(classes, lesion, spacing, settings), spacing, rng, settings) > 0


def source_lesions(sites: np.ndarray, lesion: np.ndarray) -> np.ndarray:
    """bool (Z, Y, X): the real lesions of ``lesion`` whose shapes :func:`synthesis_sites` moved to ``sites``.

    Each connected site (26-connected, as the shapes were taken) is matched to an unused real lesion of
    exactly the same shape (a moved shape is the same voxels translated); sites with no such lesion are
    not matched. Equal shapes are interchangeable, so ties take the first unused one.
    """
    lesion = np.asarray(lesion, dtype=bool)
    unused: dict[tuple, list] = {}
    for component in lesion_components(lesion):
        unused.setdefault((component.mask.shape, component.mask.tobytes()), []).append(component)
    sources = np.zeros(lesion.shape, bool)
    for site in lesion_components(np.asarray(sites, dtype=bool)):
        candidates = unused.get((site.mask.shape, site.mask.tobytes()))
        if candidates:
            source = candidates.pop(0)
            sources[source.slices] |= source.mask
    return sources


def _contrast_ratio(synthetic: float, real: float) -> float:
    """Synthetic over real lesion contrast (1 is ideal); NaN where the real lesions show no contrast."""
    return synthetic / real if real != 0 else float("nan")


def ring_ratios(channel: np.ndarray, lesion: np.ndarray, nawm: np.ndarray, spacing: Spacing | None,
                avoid: np.ndarray | None = None) -> np.ndarray:
    """Every lesion voxel of ``channel`` divided by the median of its lesion's NAWM ring (float64, 1D).

    Lesions whose ring is too small or whose ring median is not positive are left out, as in
    :func:`residual_contrast`.
    """
    channel = np.asarray(channel, dtype=np.float64)
    ratios = []
    for found in lesion_rings(lesion, nawm, spacing, avoid=avoid):
        ring_values = channel[found.box][found.ring]
        if ring_values.size < 10:
            continue
        level = float(np.median(ring_values))
        if level > 0:
            ratios.append(channel[found.box][found.inside] / level)
    return np.concatenate(ratios) if ratios else np.zeros(0)


def noise_level(channel: np.ndarray, region: np.ndarray) -> float:
    """A robust noise standard deviation in ``region``: 1.4826 x the MAD of the image minus its 3x3x3 median."""
    channel = np.asarray(channel, dtype=np.float64)
    residual = (channel - ndimage.median_filter(channel, size=3))[np.asarray(region, dtype=bool)]
    if residual.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(residual - np.median(residual))))


def coverage(healthy: np.ndarray, synthetic: np.ndarray, mask: np.ndarray, threshold: float) -> float:
    """Fraction of ``mask`` voxels where ``|synthetic - healthy| > threshold`` (NaN for an empty mask)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return float("nan")
    change = np.abs(np.asarray(synthetic, dtype=np.float64) - np.asarray(healthy, dtype=np.float64))[mask]
    return float(np.mean(change > threshold))


def channel_realism(name: str, original: np.ndarray, synthetic: np.ndarray, sites: np.ndarray,
                    real_lesion: np.ndarray, classes: np.ndarray, spacing: Spacing | None,
                    noise_factor: float = DEFAULT_NOISE_FACTOR, sources: np.ndarray | None = None) -> ChannelRealism:
    """Compare the synthetic lesions of ``synthetic`` (at ``sites``) with the real ones of ``original``.

    Args:
        name: the channel's name, for the record.
        original, synthetic: (Z, Y, X) intensities of the scan before and after synthesis (one channel).
        sites: bool (Z, Y, X), where lesions were synthesised (in NAWM, apart from ``real_lesion``).
        real_lesion: bool (Z, Y, X), the scan's real lesions.
        classes: the tissue classes of the original scan's T1w channel (NAWM = class WM).
        spacing: (x, y, z) mm.
        noise_factor: a voxel counts as painted when it changed by more than this many noise levels.
        sources: bool (Z, Y, X), the real lesions the sites' shapes came from (:func:`source_lesions`);
            None leaves the source contrast and ratio NaN.
    """
    sites, real_lesion = np.asarray(sites, dtype=bool), np.asarray(real_lesion, dtype=bool)
    everything = sites | real_lesion
    nawm = normal_appearing_wm(classes, everything, spacing)
    synthetic_summary = residual_contrast(synthetic, sites, nawm, spacing)
    real_summary = residual_contrast(original, real_lesion, nawm, spacing)
    synthetic_ratios = ring_ratios(synthetic, sites, nawm, spacing, avoid=real_lesion)
    real_ratios = ring_ratios(original, real_lesion, nawm, spacing, avoid=sites)
    distance = (float(stats.wasserstein_distance(synthetic_ratios, real_ratios))
                if synthetic_ratios.size and real_ratios.size else float("nan"))
    noise = noise_level(original, normal_appearing_wm(classes, everything, spacing, lesion_margin_mm=3.0))
    real_contrast = real_summary.weighted_signed
    ratio = _contrast_ratio(synthetic_summary.weighted_signed, real_contrast)
    source_contrast = source_ratio = float("nan")
    if sources is not None and np.any(sources):
        source_contrast = residual_contrast(original, np.asarray(sources, dtype=bool), nawm, spacing).weighted_signed
        source_ratio = _contrast_ratio(synthetic_summary.weighted_signed, source_contrast)
    return ChannelRealism(name, synthetic_summary.weighted_signed, real_contrast, float(ratio), distance,
                          coverage(original, synthetic, sites, noise_factor * noise), noise,
                          int(sites.sum()), int(real_lesion.sum()), float(source_contrast), float(source_ratio))


def realism_table(rows: Sequence[ChannelRealism]) -> str:
    """A markdown table of :class:`ChannelRealism` rows."""
    lines = ["| channel | synthetic contrast % | real contrast % | ratio | source lesions' contrast % | source ratio | "
             "W1 (ring units) | coverage | noise | synthetic / real voxels |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.channel} | {row.synthetic_contrast:+.1f} | {row.real_contrast:+.1f} | "
                     f"{row.contrast_ratio:.2f} | {row.source_contrast:+.1f} | {row.source_ratio:.2f} | "
                     f"{row.wasserstein:.3f} | {row.coverage:.2f} | {row.noise_level:.3g} | "
                     f"{row.synthetic_voxels} / {row.real_voxels} |")
    return "\n".join(lines)
