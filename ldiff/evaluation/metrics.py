"""Image-quality metrics for filled volumes, under two documented protocols.

All volumes are 3D numpy arrays in (z, y, x) order (SimpleITK's array order; z is the axial axis), with
a binary ``mask`` of the same shape (any non-zero voxel counts as inside) marking the filled region.
An empty mask raises ``ValueError``: the in-mask numbers are the point of these metrics.

Thesis protocol (:func:`thesis_metrics`), as the reference thesis computed it:
    both volumes scaled to [-1, 1] with one shared linear map (from ``intensity_range`` or, by default,
    the *reference* volume's min and max, so a global intensity error of the prediction stays visible),
    then clipped to [-1, 1]; SSIM maps from ``skimage.metrics.structural_similarity`` per axial slice
    (7x7 uniform window, ``data_range=2``, skimage's sample covariance), averaged over the mask voxels
    ("in"), the other voxels ("out") and all voxels ("full"); MSE in/out/full; PSNR = 10 log10(4 / MSE).
    The thesis averaged per-batch means over random slice subsets; here every voxel of the volume
    weighs the same, which is reproducible and does not depend on a batch size.

BraTS 2023 healthy-tissue-inpainting protocol (:func:`brats_metrics`), after the challenge's
published metric code: both volumes are multiplied by the mask, then clipped to the 0.5th and 99.5th
percentiles of a normalisation volume (by default the reference with the mask voided to 0, i.e.
the image an inpainting model sees; percentiles over all its voxels, background included; the lower
bound raised to 0 if negative) and mapped to [0, 1]. MSE and PSNR (data range 1) over the mask
voxels; SSIM as the mean over mask voxels of a Gaussian-window SSIM map (sigma 1.5, 11x11, population
covariance, ``data_range=1``). The challenge ran torchmetrics on (1, X, Y, Z) NIfTI arrays, i.e. 2D
SSIM on sagittal planes; we therefore take 2D maps per x-slice of our (z, y, x) arrays. Remaining
differences from the challenge code (scipy's edge-repeating ``reflect`` border against torch's
mirror padding; data range fixed at 1 rather than taken from the data) only touch pixels within 5 of
the image border or images that never reach 1, so they are negligible for masks inside the brain.
The "full" values repeat the computation on the unmasked normalised volumes.

Non-finite values: PSNR of identical images (MSE 0) is reported as ``float('inf')``; metrics over an
empty region (e.g. "out" when the mask covers the whole volume) are ``nan``. Strict JSON has neither,
so :func:`json_ready` turns them into ``None`` (JSON ``null``) before a report is written.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from skimage.metrics import structural_similarity

# Smallest crop LPIPS-AlexNet accepts (ldiff.evaluation.lpips.MIN_IMAGE_SIZE); the LPIPS module is
# imported only when a distance is computed, so that metrics without LPIPS do not pay torch's import.
LPIPS_MIN_IMAGE_SIZE = 31

BRATS_PERCENTILES = (0.5, 99.5)
_AXIAL_AXIS = 0
_SAGITTAL_AXIS = 2  # x in (z, y, x): the axis the BraTS 2023 code sliced its 2D SSIM along


def _checked_inputs(
    prediction: np.ndarray, reference: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return float64 copies of the volumes and a boolean mask, after checking shapes and content."""
    prediction = np.asarray(prediction, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    mask = np.asarray(mask) != 0
    if prediction.ndim != 3 or prediction.shape != reference.shape or mask.shape != reference.shape:
        raise ValueError(
            "prediction, reference and mask must be 3D (z, y, x) arrays of one shape, got "
            f"{prediction.shape}, {reference.shape} and {mask.shape}"
        )
    if not mask.any():
        raise ValueError("the mask is empty: in-mask metrics are undefined")
    if not (np.isfinite(prediction).all() and np.isfinite(reference).all()):
        raise ValueError("prediction and reference must not contain NaN or infinite values")
    return prediction, reference, mask


def scale_to_symmetric_unit_range(
    volume: np.ndarray, intensity_range: tuple[float, float]
) -> np.ndarray:
    """Map ``intensity_range`` = (low, high) linearly onto [-1, 1] and clip; any shape, float64 out."""
    low, high = (float(value) for value in intensity_range)
    if not high > low:
        raise ValueError(f"intensity range must have high > low, got ({low}, {high})")
    return np.clip(2.0 * (np.asarray(volume, dtype=np.float64) - low) / (high - low) - 1.0, -1.0, 1.0)


def percentile_normalise(
    volume: np.ndarray, normalisation_volume: np.ndarray, percentiles: tuple[float, float] = BRATS_PERCENTILES
) -> tuple[np.ndarray, float, float]:
    """Clip ``volume`` to percentiles of ``normalisation_volume`` and map them onto [0, 1] (BraTS 2023).

    The lower bound is raised to 0 when the percentile is negative (the challenge's
    ``strictly_positive``). Returns the normalised float64 volume and the (low, high) bounds used.
    """
    low, high = (float(value) for value in np.percentile(normalisation_volume, percentiles))
    low = max(low, 0.0)
    if not high > low:
        raise ValueError(f"normalisation volume has no intensity spread between its percentiles ({low}, {high})")
    clipped = np.clip(np.asarray(volume, dtype=np.float64), low, high)
    return (clipped - low) / (high - low), low, high


def ssim_map_per_slice(
    volume_a: np.ndarray, volume_b: np.ndarray, axis: int, **ssim_options: Any
) -> np.ndarray:
    """Full SSIM map of two 3D volumes, built from 2D skimage SSIM maps of each slice along ``axis``.

    ``ssim_options`` go to ``skimage.metrics.structural_similarity`` (``full=True`` is added). Returns
    an array of the volumes' shape with values in [-1, 1].
    """
    planes_a = np.moveaxis(volume_a, axis, 0)
    planes_b = np.moveaxis(volume_b, axis, 0)
    # skimage's own message for this case talks about colour channels, which would mislead here.
    if ssim_options.get("gaussian_weights"):
        window = 2 * int(3.5 * ssim_options.get("sigma", 1.5) + 0.5) + 1
    else:
        window = ssim_options.get("win_size") or 7
    if min(planes_a.shape[1:]) < window:
        raise ValueError(
            f"slices along axis {axis} are {planes_a.shape[1:]}, smaller than the {window}x{window} SSIM window"
        )
    maps = [structural_similarity(a, b, full=True, **ssim_options)[1] for a, b in zip(planes_a, planes_b)]
    return np.moveaxis(np.stack(maps), 0, axis)


def _mean_or_nan(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def _psnr(mse: float, peak_to_peak: float) -> float:
    """10 log10(peak^2 / MSE); ``inf`` for MSE 0, ``nan`` for an undefined MSE."""
    if math.isnan(mse):
        return math.nan
    return math.inf if mse == 0.0 else 10.0 * math.log10(peak_to_peak**2 / mse)


def thesis_metrics(
    prediction: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray,
    intensity_range: tuple[float, float] | None = None,
    include_lpips: bool = False,
) -> dict[str, Any]:
    """SSIM, MSE and PSNR in, out of and over the whole mask, as the reference thesis computed them.

    Inputs are (z, y, x) volumes in any intensity unit; ``intensity_range`` (low, high) is mapped to
    [-1, 1] for both volumes, defaulting to the reference's (min, max). With ``include_lpips`` the dict
    also holds ``lpips_crops`` from :func:`lpips_around_mask` (slow on CPU: one AlexNet pass per
    masked slice). Keys: protocol, voxels_in, ssim_in/out/full, mse_in/out/full, psnr_in/out/full.
    """
    prediction, reference, mask = _checked_inputs(prediction, reference, mask)
    if intensity_range is None:
        intensity_range = (float(reference.min()), float(reference.max()))
    scaled_prediction = scale_to_symmetric_unit_range(prediction, intensity_range)
    scaled_reference = scale_to_symmetric_unit_range(reference, intensity_range)

    ssim_map = ssim_map_per_slice(
        scaled_reference, scaled_prediction, axis=_AXIAL_AXIS, data_range=2.0, win_size=7, gaussian_weights=False
    )
    squared_error = (scaled_prediction - scaled_reference) ** 2
    results: dict[str, Any] = {"protocol": "thesis", "voxels_in": int(mask.sum())}
    for region, selection in (("in", mask), ("out", ~mask), ("full", np.ones_like(mask))):
        mse = _mean_or_nan(squared_error[selection])
        results[f"ssim_{region}"] = _mean_or_nan(ssim_map[selection])
        results[f"mse_{region}"] = mse
        results[f"psnr_{region}"] = _psnr(mse, peak_to_peak=2.0)
    if include_lpips:
        results["lpips_crops"] = lpips_around_mask(prediction, reference, mask, intensity_range=intensity_range)
    return results


def brats_metrics(
    prediction: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray,
    normalisation_volume: np.ndarray | None = None,
) -> dict[str, Any]:
    """MSE, PSNR and SSIM inside the mask after BraTS 2023 percentile normalisation (module docstring).

    ``normalisation_volume`` supplies the percentiles; by default the reference with the mask set to 0.
    Keys: protocol, voxels_in, intensity_low/high (the percentile bounds), mse_in, psnr_in, ssim_in and
    the whole-volume mse_full, psnr_full, ssim_full. MSE is in [0, 1], PSNR in dB with data range 1.
    """
    prediction, reference, mask = _checked_inputs(prediction, reference, mask)
    if normalisation_volume is None:
        normalisation_volume = np.where(mask, 0.0, reference)
    ssim_options = dict(data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    results: dict[str, Any] = {"protocol": "brats2023", "voxels_in": int(mask.sum())}

    # The challenge masks before normalising, so the SSIM windows at the mask border see zeros outside.
    masked_prediction, low, high = percentile_normalise(prediction * mask, normalisation_volume)
    masked_reference, _, _ = percentile_normalise(reference * mask, normalisation_volume)
    results["intensity_low"], results["intensity_high"] = low, high
    mse_in = float(np.mean((masked_prediction[mask] - masked_reference[mask]) ** 2))
    ssim_masked = ssim_map_per_slice(masked_reference, masked_prediction, axis=_SAGITTAL_AXIS, **ssim_options)
    results.update(mse_in=mse_in, psnr_in=_psnr(mse_in, peak_to_peak=1.0), ssim_in=float(ssim_masked[mask].mean()))

    full_prediction, _, _ = percentile_normalise(prediction, normalisation_volume)
    full_reference, _, _ = percentile_normalise(reference, normalisation_volume)
    mse_full = float(np.mean((full_prediction - full_reference) ** 2))
    ssim_full = ssim_map_per_slice(full_reference, full_prediction, axis=_SAGITTAL_AXIS, **ssim_options)
    results.update(mse_full=mse_full, psnr_full=_psnr(mse_full, peak_to_peak=1.0), ssim_full=float(ssim_full.mean()))
    return results


def crop_window(low: int, high: int, margin: int, min_size: int, extent: int) -> tuple[int, int]:
    """Half-open [start, stop) covering [low, high] plus ``margin``, at least ``min_size`` long, inside [0, extent).

    A window that would cross the image edge is shifted inward rather than shrunk, so every crop
    keeps at least ``min_size`` pixels (``extent >= min_size`` is required).
    """
    start, stop = low - margin, high + 1 + margin
    shortfall = min_size - (stop - start)
    if shortfall > 0:
        start -= shortfall // 2
        stop += shortfall - shortfall // 2
    if start < 0:
        start, stop = 0, stop - start
    if stop > extent:
        start, stop = max(0, start - (stop - extent)), extent
    return start, stop


def lpips_around_mask(
    prediction: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray,
    intensity_range: tuple[float, float] | None = None,
    margin: int = 8,
    min_size: int = 32,
    crop: bool = True,
    device: str = "cpu",
) -> float:
    """Mean LPIPS (AlexNet, v0.1) over the axial slices that hold mask voxels.

    Each such slice is scaled to [-1, 1] as in :func:`thesis_metrics` and, with ``crop``, cut to the
    bounding box of that slice's mask plus ``margin`` pixels, grown to at least ``min_size`` x
    ``min_size`` (LPIPS-AlexNet needs >= 31). Cropping keeps the small filled region from being
    diluted by the unchanged rest of the slice; ``crop=False`` uses whole slices, as the thesis did.
    Returns the unweighted mean over slices (a distance >= 0; 0 for identical volumes).
    """
    prediction, reference, mask = _checked_inputs(prediction, reference, mask)
    if min_size < LPIPS_MIN_IMAGE_SIZE:
        raise ValueError(f"min_size must be at least {LPIPS_MIN_IMAGE_SIZE} for LPIPS-AlexNet, got {min_size}")
    from ldiff.evaluation.lpips import lpips_distance

    _, height, width = reference.shape
    if min(height, width) < min_size:
        raise ValueError(f"axial slices of {height}x{width} are smaller than min_size {min_size}")
    if intensity_range is None:
        intensity_range = (float(reference.min()), float(reference.max()))
    scaled_prediction = scale_to_symmetric_unit_range(prediction, intensity_range)
    scaled_reference = scale_to_symmetric_unit_range(reference, intensity_range)

    distances = []
    for z in np.flatnonzero(mask.any(axis=(1, 2))):
        rows, columns = np.nonzero(mask[z])
        y0, y1 = crop_window(rows.min(), rows.max(), margin, min_size, height) if crop else (0, height)
        x0, x1 = crop_window(columns.min(), columns.max(), margin, min_size, width) if crop else (0, width)
        distances.append(
            lpips_distance(scaled_prediction[z, y0:y1, x0:x1], scaled_reference[z, y0:y1, x0:x1], device=device)
        )
    return float(np.mean(distances))


def json_ready(metrics: dict[str, Any]) -> dict[str, Any]:
    """Copy of a metrics dict with non-finite floats (inf PSNR, nan of empty regions) as ``None``.

    Strict JSON has no Infinity or NaN; ``null`` keeps the report loadable by any JSON reader.
    """
    return {
        key: None if isinstance(value, float) and not math.isfinite(value) else value
        for key, value in metrics.items()
    }
