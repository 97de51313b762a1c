"""The lesion intensity a synthesis is asked for, per channel in the model's [-1, 1] space.

uncond_synth paints one coarse lesion level: the mean of the scan's own lesions when a mask of them
is given; else the user's values (a number in [-1, 1], or ``"pNN"``, the NN-th percentile of the
case's brain); else the training fingerprint's median lesion intensity, placed within the
fingerprint's median brain percentiles that the normalisation uses (so it does not depend on a new
scanner's raw units); else :data:`DEFAULT_LESION_PERCENTILE` of the case's brain.

cond_synth trained with the lesion-level cue takes a contrast instead (``Task.lesion_intensity_is_contrast``):
how much a lesion's mean lies above or below the mean of the tissue around it, which prediction adds
to each crop's own surroundings. From the scan's own lesions (their mean minus the median of the
tissue 2-5 mm around them, :func:`own_lesion_shell`), the user's numbers, or the training fingerprint's median
lesion minus median normal-appearing WM. A contrast carries over to a lesion placed elsewhere; an
absolute level would not (deep white matter is brighter on T1w than the periventricular tissue where
many lesions sit).
"""
from __future__ import annotations

from typing import Callable, Sequence

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
                  mask_name: str = "the mask", as_contrast: bool | None = None) -> np.ndarray:
    """The lesion intensity per channel, (C,) float32 (module docstring): an absolute level in [-1, 1],
    or with ``as_contrast`` (default: ``Task.lesion_intensity_is_contrast``; also used for the contrast
    that :mod:`ldiff.inference.contrast_matching` sets) the lesion's mean minus its surroundings' in that space.

    Args:
        arrays: the preprocessed case (``image`` (C, Z, Y, X) normalised, ``brain``).
        properties: its preprocessing properties (to carry ``own_lesions`` onto its grid).
        requested: the user's values, or None.
        own_lesions: bool (Z, Y, X) on the input grid, the scan's own lesions, or None.
    """
    as_contrast = model.task.lesion_intensity_is_contrast if as_contrast is None else as_contrast
    brain = arrays["brain"].astype(bool)
    if own_lesions is not None:
        if requested is not None:
            raise LdiffError("Give the lesion intensity as numbers or as the scan's own lesions, not both.")
        inside = (coverage_in_preprocessed_space(own_lesions.astype(bool), properties) >= 0.5) & brain
        if not inside.any():
            raise LdiffError(f"the scan's own lesions (given with {mask_name}) have no voxel inside the brain, so "
                             f"their intensity cannot be measured.")
        mean = arrays["image"][:, inside].mean(axis=1)
        if not as_contrast:
            return np.clip(mean, -1.0, 1.0).astype(np.float32)
        shell = own_lesion_shell(inside, properties) & brain
        if not shell.any():
            raise LdiffError(f"the scan's own lesions (given with {mask_name}) fill the brain; their contrast to "
                             f"the tissue around them cannot be measured.")
        return (mean - np.median(arrays["image"][:, shell], axis=1)).astype(np.float32)
    if as_contrast:
        return lesion_contrasts(model, requested, len(arrays["image"]))
    normalizers = [PercentileNormalizer.from_dict(entry) for entry in properties["normalization"]]
    return lesion_intensities(model, arrays["image"], brain, normalizers, requested)


# Real lesions: their contrast is taken against the tissue 2-5 mm out (the median of that shell), beyond
# the partial-volume and oedema halo that surrounds them (the definition of ldiff_benchmark and
# benchmarks/synthesis_comparison.py). A synthetic lesion's site has no halo, so a crop's own near ring
# (ldiff.tasks.task.surrounding_level) is its surroundings.
OWN_LESION_SHELL_MM = (2.0, 5.0)


def own_lesion_shell(lesions: np.ndarray, properties: dict) -> np.ndarray:
    """The voxels between ``OWN_LESION_SHELL_MM`` of ``lesions`` (preprocessed grid), without lesions."""
    from ldiff.masks import dilate_mask

    spacing = properties.get("target_spacing") or properties.get("spacing") or (1.0, 1.0, 1.0)
    spacing = tuple(float(v) for v in spacing)
    inner = dilate_mask(lesions, spacing=spacing, shape="ball", radius_mm=OWN_LESION_SHELL_MM[0])
    outer = dilate_mask(lesions, spacing=spacing, shape="ball", radius_mm=OWN_LESION_SHELL_MM[1])
    return outer & ~inner & ~lesions


def lesion_contrasts(model: LoadedModel, requested: Sequence[float | str] | None, num_channels: int) -> np.ndarray:
    """Lesion contrast per channel (C,) in the model's space: the user's numbers, else the training
    fingerprint's median lesion intensity minus its median normal-appearing WM intensity, scaled as
    the normalisation scales intensities."""
    names = model.channel_names or tuple(f"channel {c}" for c in range(num_channels))
    if requested is not None:
        if len(requested) not in (1, len(names)):
            raise LdiffError(f"--lesion-intensity takes 1 value or one per channel ({len(names)}), got {len(requested)}.")
        values = []
        for value in requested:
            try:
                number = float(str(value))
            except ValueError:
                raise LdiffError(f"--lesion-intensity {value!r}: this model takes the lesion's contrast to its "
                                 f"surroundings, a number in [-1, 1] of its intensity space (no pNN).") from None
            if not -1.0 <= number <= 1.0:
                raise LdiffError(f"--lesion-intensity {value!r}: contrasts are in [-1, 1] of the model's space.")
            values.append(number)
        return np.asarray([values[c % len(values)] for c in range(len(names))], dtype=np.float32)
    normalization = model.description.get("normalization") or {}
    lower = f"{float(normalization.get('lower_percentile', -1)):g}"
    upper = f"{float(normalization.get('upper_percentile', -1)):g}"
    contrasts = []
    for name, (lesion, normal, brain) in zip(names, _training_medians(model, names)):
        low, high = brain.get(lower), brain.get(upper)
        if low is None or high is None or not high > low:
            raise _no_fingerprint(model, name)
        contrasts.append(2.0 * (lesion - normal) / (high - low))
    return np.asarray(contrasts, dtype=np.float32)


def _no_fingerprint(model: LoadedModel, name: str) -> LdiffError:
    return LdiffError(f"{model.folder}: no training fingerprint with lesion and white-matter intensities for "
                      f"{name}; give --lesion-intensity or --lesion-intensity-from.")


def _training_medians(model: LoadedModel, names: Sequence[str]) -> list[tuple[float, float, dict]]:
    """Per channel, the training fingerprint's median lesion and median normal-appearing WM intensity
    (the medians over cases of each case's median) and its brain percentiles; LdiffError where missing."""
    summaries = (load_fingerprint(model) or {}).get("intensity_median_of_cases") or {}
    medians = []
    for name in names:
        summary = summaries.get(name) or {}
        lesion = (summary.get("lesion") or {}).get("50")
        normal = (summary.get("nawm") or {}).get("50")
        if lesion is None or normal is None:
            raise _no_fingerprint(model, name)
        medians.append((float(lesion), float(normal), summary.get("brain") or {}))
    return medians


def relative_lesion_contrasts(model: LoadedModel, num_channels: int) -> np.ndarray:
    """The training lesions' contrast as a fraction of their white matter's level, per channel (C,):
    ``(median lesion - median NAWM) / median NAWM`` of the training fingerprint, in the training scans'
    own units (e.g. -0.24 = 24 % darker). Unlike :func:`lesion_contrasts` (a share of the normaliser's
    percentile range) it does not depend on how wide a new scan's range is: 50 ml of bright FLAIR
    lesion raise a scan's upper percentile, and the same share of that range would be a brighter lesion.
    Raises LdiffError where the fingerprint lacks those intensities."""
    names = model.channel_names or tuple(f"channel {c}" for c in range(num_channels))
    ratios = []
    for name, (lesion, normal, _) in zip(names, _training_medians(model, names)):
        if not normal > 0:
            raise _no_fingerprint(model, name)
        ratios.append((lesion - normal) / normal)
    return np.asarray(ratios, dtype=np.float64)


# A volume bin of the fingerprint's lesion_contrast_by_volume sets a contrast only with at least this
# many training lesions in it: fewer give no stable mean.
MIN_LESIONS_PER_VOLUME_BIN = 5


def contrast_for_volume(model: LoadedModel, num_channels: int) -> Callable[[float], np.ndarray] | None:
    """The training lesions' contrast to the white matter around them as a function of lesion volume,
    or None where the training fingerprint does not give it (an older fingerprint, too few lesions).

    The function maps a lesion's volume (mm^3) to (C,) fractions of the reference level (-0.2 = 20 %
    darker): the fingerprint's mean per volume bin (``lesion_contrast_by_volume``) at the bin's
    geometric mean volume, interpolated linearly in log volume between bins and held constant beyond
    the outer ones.
    """
    names = model.channel_names or tuple(f"channel {c}" for c in range(num_channels))
    table = (load_fingerprint(model) or {}).get("lesion_contrast_by_volume") or {}
    points = [(float(entry["geometric_mean_volume_mm3"]), [float(entry["mean_contrast"][name]) for name in names])
              for entry in table.get("bins", [])
              if entry.get("lesions", 0) >= MIN_LESIONS_PER_VOLUME_BIN
              and all(name in (entry.get("mean_contrast") or {}) for name in names)]
    if not points:
        return None
    log_volumes = np.log([volume for volume, _ in points])
    fractions = np.array([values for _, values in points], dtype=np.float64)  # (bins, C)

    def fraction(volume_mm3: float) -> np.ndarray:
        where = np.log(max(float(volume_mm3), 1e-6))
        return np.array([np.interp(where, log_volumes, fractions[:, c]) for c in range(fractions.shape[1])])

    return fraction


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
