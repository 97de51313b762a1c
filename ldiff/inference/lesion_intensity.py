"""The lesion intensity a synthesis is asked for, per channel in the model's [-1, 1] space.

Tasks that take one (``Task.takes_lesion_intensity``: uncond_synth paints a coarse lesion of it,
cond_synth trained with the lesion-level cue is told it) get, in this order: the mean of the scan's
own lesions when a mask of them is given (synthesis that looks like that patient's lesions); the
user's values (a number in [-1, 1], or ``"pNN"``, the NN-th percentile of the case's brain); the
training fingerprint's median lesion intensity, placed within the fingerprint's median brain
percentiles that the normalisation uses (so it does not depend on a new scanner's raw units); or
:data:`DEFAULT_LESION_PERCENTILE` of the case's brain.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ldiff.errors import LdiffError
from ldiff.inference.model_loading import LoadedModel, load_fingerprint
from ldiff.inference.roi import coverage_in_preprocessed_space
from ldiff.preprocessing import PercentileNormalizer

# Brain percentile used when neither the user nor the training fingerprint gives a lesion intensity:
# lesions are dark on T1-weighted scans and bright on FLAIR-like ones.
DEFAULT_LESION_PERCENTILE = {"t1": 10.0, "other": 99.0}


def lesion_levels(model: LoadedModel, arrays: dict[str, np.ndarray], properties: dict,
                  requested: Sequence[float | str] | None, own_lesions: np.ndarray | None,
                  mask_name: str = "the mask") -> np.ndarray:
    """The lesion intensity per channel, (C,) float32 in [-1, 1] (module docstring).

    Args:
        arrays: the preprocessed case (``image`` (C, Z, Y, X) normalised, ``brain``).
        properties: its preprocessing properties (to carry ``own_lesions`` onto its grid).
        requested: the user's values, or None.
        own_lesions: bool (Z, Y, X) on the input grid, the scan's own lesions, or None.
    """
    if own_lesions is None:
        normalizers = [PercentileNormalizer.from_dict(entry) for entry in properties["normalization"]]
        return lesion_intensities(model, arrays["image"], arrays["brain"].astype(bool), normalizers, requested)
    if requested is not None:
        raise LdiffError("Give the lesion intensity as numbers or as the scan's own lesions, not both.")
    inside = (coverage_in_preprocessed_space(own_lesions.astype(bool), properties) >= 0.5) & arrays["brain"].astype(bool)
    if not inside.any():
        raise LdiffError(f"the scan's own lesions (given with {mask_name}) have no voxel inside the brain, so their "
                         f"intensity cannot be measured.")
    return np.clip(arrays["image"][:, inside].mean(axis=1), -1.0, 1.0).astype(np.float32)


def lesion_intensities(model: LoadedModel, image: np.ndarray, brain: np.ndarray,
                       normalizers: list[PercentileNormalizer], requested: Sequence[float | str] | None) -> np.ndarray:
    """Coarse-lesion intensity per channel in [-1, 1] (module docstring); ``image`` is (C, Z, Y, X) normalised."""
    names = model.channel_names or tuple(f"channel {c}" for c in range(image.shape[0]))
    if requested is not None and len(requested) not in (1, len(names)):
        raise LdiffError(f"--lesion-intensity takes 1 value or one per channel ({len(names)}), got {len(requested)}.")
    fingerprint = load_fingerprint(model) if requested is None else None
    normalization = model.description.get("normalization") or {}
    values = []
    for channel, name in enumerate(names):
        inside = image[channel][brain]
        if requested is not None:
            values.append(_requested_value(requested[channel % len(requested)], inside))
            continue
        summary = ((fingerprint or {}).get("intensity_median_of_cases") or {}).get(name) or {}
        lesion, brain_percentiles = (summary.get("lesion") or {}).get("50"), summary.get("brain") or {}
        low = brain_percentiles.get(f"{float(normalization.get('lower_percentile', -1)):g}")
        high = brain_percentiles.get(f"{float(normalization.get('upper_percentile', -1)):g}")
        if lesion is not None and low is not None and high is not None and high > low:
            values.append(2.0 * (lesion - low) / (high - low) - 1.0)
        elif lesion is not None:
            values.append(float(normalizers[channel].normalize(np.array([lesion]))[0]))
        else:
            kind = "t1" if "t1" in name.lower() else "other"
            values.append(float(np.percentile(inside, DEFAULT_LESION_PERCENTILE[kind])))
    return np.clip(np.asarray(values, dtype=np.float32), -1.0, 1.0)


def _requested_value(value: float | str, brain_values: np.ndarray) -> float:
    text = str(value).strip().lower()
    try:
        if text.startswith("p"):
            return float(np.percentile(brain_values, float(text[1:])))
        number = float(text)
    except ValueError:
        raise LdiffError(f"--lesion-intensity {value!r}: give a number in [-1, 1] or pNN (a brain percentile)."
                         ) from None
    if not -1.0 <= number <= 1.0:
        raise LdiffError(f"--lesion-intensity {value!r}: values are in the model's [-1, 1] space.")
    return number
