"""The dataset fingerprint: what planning needs to know about a raw dataset, as JSON.

Per case (in the canonical orientation): spacing, shape, the original orientation, the brain bounding
box, intensity percentiles per channel inside the brain, inside lesions and in normal-appearing white
matter (NAWM), the lesion components, and each lesion's contrast to the NAWM ring around it. Over the
dataset: lesion statistics (count per case, volume distribution, per-axis extents), the typical lesion
boundary width that sets the mask dilation, and the lesions' contrast by lesion volume (what synthesis
matches its lesions to).
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ldiff.dataset.verify import LoadedCase
from ldiff.masks import boundary_width_from_intensity, lesion_components, lesion_statistics
from ldiff.masks.rings import ring_contrasts
from ldiff.preprocessing.brain_masks import compute_masks
from ldiff.preprocessing.orientation import CANONICAL_ORIENTATION, Reorientation

PERCENTILES = (0.5, 1, 5, 25, 50, 75, 95, 99, 99.5)
# Lesion volume bins (mm^3) of ``lesion_contrast_by_volume``. Real lesions' contrast grows with their
# size (partial volume, and small lesions damage less tissue): on the two real 3T patients of Lesjak et
# al. 2017 lesions under 30 mm^3 are about half as dark on T1w as those of 100-300 mm^3.
CONTRAST_VOLUME_BINS_MM3 = (0.0, 30.0, 100.0, 300.0, 1000.0, float("inf"))


def _percentiles(values: np.ndarray) -> dict[str, float] | None:
    if values.size == 0:
        return None
    return {f"{q:g}": float(v) for q, v in zip(PERCENTILES, np.percentile(values, PERCENTILES))}


def case_fingerprint(loaded: LoadedCase, channel_names: list[str], wm_channel: int | None) -> dict:
    """Fingerprint of one verified case (a JSON-able dict)."""
    reorientation = Reorientation.from_direction(loaded.geometry.direction)
    images = np.stack([reorientation.apply_to_array(image) for image in loaded.images])
    lesion = reorientation.apply_to_array(loaded.label) if loaded.label is not None else np.zeros(images.shape[1:], np.uint8)
    tissue = reorientation.apply_to_array(loaded.tissue) if loaded.tissue is not None else None
    spacing = reorientation.apply_to_geometry(loaded.geometry).spacing  # (x, y, z) of the canonical grid
    brain, wm, mask_sources = compute_masks(images, lesion, tissue, wm_channel)
    nawm = wm & ~lesion.astype(bool)
    coordinates = np.argwhere(brain)
    low, high = coordinates.min(axis=0), coordinates.max(axis=0) + 1  # (z, y, x)
    extent_zyx = (high - low) * np.array(spacing[::-1])
    intensities = {}
    lesion_bool = lesion.astype(bool)
    for name, image in zip(channel_names, images):
        intensities[name] = {
            "brain": _percentiles(image[brain]),
            "lesion": _percentiles(image[lesion_bool]),
            "nawm": _percentiles(image[nawm]),
        }
    components = lesion_components(lesion, spacing)
    # The boundary is measured where lesions show most: FLAIR if present, else the first channel.
    contrast_channel = next((i for i, name in enumerate(channel_names) if "flair" in name.lower()), 0)
    boundary = boundary_width_from_intensity(images[contrast_channel], lesion, spacing, wm_mask=wm) if components else None
    voxel_mm3 = float(np.prod(spacing))
    ring_rows = ring_contrasts(images, lesion_bool, nawm, spacing) if components else []
    return {
        "identifier": loaded.case.identifier,
        "original_orientation": sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(loaded.geometry.direction),
        "reorientation": reorientation.to_dict(),
        "mask_sources": mask_sources,
        "original_size": list(loaded.geometry.size),
        "original_spacing": list(loaded.geometry.spacing),
        "spacing": [float(v) for v in spacing],
        "shape_zyx": list(images[0].shape),
        "brain_bbox_zyx": [low.tolist(), high.tolist()],
        "brain_bbox_extent_mm": [float(v) for v in extent_zyx[::-1]],
        "brain_volume_ml": float(brain.sum() * np.prod(spacing) / 1000.0),
        "wm_fraction_of_brain": float(wm.sum() / max(brain.sum(), 1)),
        "intensity": intensities,
        "lesion_count": len(components),
        "lesion_volume_ml": float(lesion_bool.sum() * np.prod(spacing) / 1000.0),
        "boundary_width_mm": boundary,
        # [volume mm^3, contrast per channel as a fraction of the NAWM ring 2-5 mm around the lesion]
        "lesion_ring_contrasts": [[round(voxels * voxel_mm3, 3)] + [round(float(v), 5) for v in fractions]
                                  for voxels, fractions in ring_rows],
        "_lesion_mask": lesion,  # dropped before writing; used for the dataset-level statistics
    }


def dataset_fingerprint(dataset_name: str, channel_names: list[str], wm_channel: int | None,
                        case_fingerprints: list[dict], has_tissue_maps: bool) -> dict:
    """Combine per-case fingerprints into the dataset fingerprint."""
    lesion_masks = [case.pop("_lesion_mask") for case in case_fingerprints]
    spacings = [case["spacing"] for case in case_fingerprints]
    statistics = lesion_statistics(lesion_masks, spacings)
    widths = [case["boundary_width_mm"] for case in case_fingerprints if case["boundary_width_mm"] is not None]
    statistics["boundary_width_mm"] = float(np.median(widths)) if widths else None
    intensity_summary = {}
    for name in channel_names:
        summary = {}
        for region in ("brain", "lesion", "nawm"):
            values = [case["intensity"][name][region] for case in case_fingerprints if case["intensity"][name][region]]
            summary[region] = {q: float(np.median([v[q] for v in values])) for q in values[0]} if values else None
        intensity_summary[name] = summary
    return {
        "dataset_name": dataset_name,
        "channel_names": channel_names,
        "wm_channel": wm_channel,
        "canonical_orientation": CANONICAL_ORIENTATION,
        "has_tissue_maps": has_tissue_maps,
        "num_cases": len(case_fingerprints),
        "median_spacing": np.median(np.array(spacings), axis=0).tolist(),
        "intensity_median_of_cases": intensity_summary,
        "lesion_contrast_by_volume": contrast_by_volume(case_fingerprints, channel_names),
        "lesions": statistics,
        "cases": case_fingerprints,
    }


def contrast_by_volume(case_fingerprints: list[dict], channel_names: list[str]) -> dict:
    """The lesions' contrast to their NAWM ring by lesion volume, pooled over the cases' lesions.

    Returns ``{"bin_edges_mm3": [...], "bins": [{"lesions", "geometric_mean_volume_mm3", "mean_contrast":
    {channel: fraction}}, ...]}``, one entry per bin of :data:`CONTRAST_VOLUME_BINS_MM3` (``lesions`` 0
    and nothing else for an empty bin). The mean, not the median, of the lesions' contrasts: realism is
    scored as an average over lesions, and within a bin small lesions are skewed towards no contrast at
    all (on the two real patients the median lesion under 30 mm^3 is -5 % / -6 % on T1w, the mean -9 % /
    -10 %; benchmarks/lesion_contrast_by_size.py). A case listed twice counts twice, as training
    draws it twice.
    """
    rows = np.array([row for case in case_fingerprints for row in case.get("lesion_ring_contrasts", [])],
                    dtype=np.float64).reshape(-1, 1 + len(channel_names))
    edges = CONTRAST_VOLUME_BINS_MM3
    bins = []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = rows[(rows[:, 0] >= low) & (rows[:, 0] < high)]
        entry: dict = {"lesions": int(len(inside))}
        if len(inside):
            entry["geometric_mean_volume_mm3"] = float(np.exp(np.mean(np.log(inside[:, 0]))))
            entry["mean_contrast"] = {name: float(np.mean(inside[:, 1 + c])) for c, name in enumerate(channel_names)}
        bins.append(entry)
    return {"bin_edges_mm3": [float(v) if np.isfinite(v) else None for v in edges], "bins": bins}
