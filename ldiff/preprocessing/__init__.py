"""Per-case preprocessing (reorient, mask, crop, resample, normalise) and its exact inverse."""
from ldiff.preprocessing.brain_masks import (
    brain_mask_from_tissue,
    compute_masks,
    derive_brain_mask,
    derive_wm_mask,
    kmeans_1d,
    wm_mask_from_tissue,
)
from ldiff.preprocessing.cropping import brain_bounding_box, crop_to_box, cropped_geometry, pad_from_box
from ldiff.preprocessing.normalization import PercentileNormalizer, fit_normalizers
from ldiff.preprocessing.orientation import (
    CANONICAL_ORIENTATION,
    Reorientation,
    reorient_to_canonical,
    restore_orientation,
)
from ldiff.preprocessing.preprocess_case import preprocess_case, preprocess_images, restore_to_original
from ldiff.preprocessing.resampling import resample_array, resample_to_geometry, resampled_geometry, spacing_matches

__all__ = [
    "CANONICAL_ORIENTATION",
    "PercentileNormalizer",
    "Reorientation",
    "brain_bounding_box",
    "brain_mask_from_tissue",
    "compute_masks",
    "crop_to_box",
    "cropped_geometry",
    "derive_brain_mask",
    "derive_wm_mask",
    "fit_normalizers",
    "kmeans_1d",
    "pad_from_box",
    "preprocess_case",
    "preprocess_images",
    "resample_array",
    "resample_to_geometry",
    "resampled_geometry",
    "reorient_to_canonical",
    "restore_orientation",
    "restore_to_original",
    "spacing_matches",
    "wm_mask_from_tissue",
]
