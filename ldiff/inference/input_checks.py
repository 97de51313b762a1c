"""Checks of a prediction's inputs: errors for inputs that cannot be filled, warnings for inputs unlike
what a model was trained on (they still fill, but less reliably).

:func:`check_prediction_inputs` refuses, in one sentence, images that do not fit the model (channel
count, non-finite voxels, channels or mask on different grids). :func:`input_warnings` gives two
warnings that need no model output:

* **Anisotropy**: voxels much longer along one axis (e.g. 1 x 1 x 5 mm clinical slices). Prediction
  resamples the image to the model's target spacing, so along the coarse axis the network sees
  interpolated tissue.
* **Skull left on**: the shipped models saw skull-stripped scans, whose background outside the brain is
  one constant value (0 after stripping). A head image with skull and scalp has little such background;
  its intensity normalisation (percentiles of the non-background voxels) then sees fat and bone.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import SimpleITK as sitk

from ldiff.errors import LdiffError
from ldiff.io import Geometry, geometry_mismatch

MAX_ANISOTROPY = 3.0
"""Warn when the longest voxel edge is more than this many times the shortest."""
MIN_BACKGROUND_FRACTION = 0.15
"""Warn when fewer voxels than this share the image's most common value (a skull-stripped scan has
30-80 % of such background even when cropped to the brain's bounding box)."""


def input_warnings(name: str, array: np.ndarray, spacing: Sequence[float], target_spacing: Sequence[float]
                   ) -> list[str]:
    """One sentence per reason to doubt that the model suits this image.

    Args:
        name: the file, for the message.
        array: the image's voxels, any shape and dtype.
        spacing: its voxel size in mm (any axis order).
        target_spacing: the model's training spacing in mm.
    """
    messages = []
    spacing = [float(value) for value in spacing]
    ratio = max(spacing) / min(spacing)
    if ratio > MAX_ANISOTROPY:
        messages.append(f"{name}: voxels of {' x '.join(f'{v:g}' for v in spacing)} mm (the longest edge {ratio:.1f} "
                        f"times the shortest); the model was trained at {' x '.join(f'{float(v):g}' for v in target_spacing)} "
                        "mm, so the image is resampled and detail along its coarse axis is interpolated: check the fill.")
    voxels = np.asarray(array).ravel()
    if voxels.size:
        # The most common value of a strided sample, then its share of every voxel: linear time, where
        # np.unique over the whole volume would sort millions of values on every prediction.
        values, counts = np.unique(voxels[:: max(voxels.size // 100_000, 1)], return_counts=True)
        background = np.count_nonzero(voxels == values[np.argmax(counts)]) / voxels.size
    else:
        background = 1.0
    if background < MIN_BACKGROUND_FRACTION:
        messages.append(f"{name}: only {100 * background:.0f} % of its voxels are background; is the skull still on? "
                        "The model saw skull-stripped scans: strip the skull first (for example with HD-BET or "
                        "SynthStrip) for a reliable intensity normalisation.")
    return messages


def check_prediction_inputs(model: Any, images: list[sitk.Image], mask: np.ndarray, mask_name: str) -> None:
    """Raise LdiffError (one sentence) unless ``images`` fit ``model`` (a
    :class:`~ldiff.inference.model_loading.LoadedModel`): one image per model channel, finite voxels, all
    on channel 0's grid, and ``mask`` (Z, Y, X) of that grid's shape."""
    names = model.channel_names
    if len(images) != model.num_channels:
        raise LdiffError(f"the model {model.folder} expects {model.num_channels} channel(s) "
                         f"({', '.join(names)}) but got {len(images)} image(s); give them in that order or "
                         f"choose a model trained on your channels.")
    for index, image in enumerate(images):
        values = sitk.GetArrayViewFromImage(image)
        if np.issubdtype(values.dtype, np.floating) and not np.all(np.isfinite(values)):
            raise LdiffError(f"channel {index}: contains NaN or Inf voxels; replace them before predicting.")
    reference = Geometry.of(images[0])
    for index, image in enumerate(images[1:], start=1):
        mismatch = geometry_mismatch(reference, Geometry.of(image))
        if mismatch is not None:
            raise LdiffError(f"channel {index} ({names[index] if index < len(names) else '?'}): its grid differs "
                             f"from channel 0's ({mismatch}).")
    if mask.shape != tuple(reversed(reference.size)):
        raise LdiffError(f"{mask_name}: has shape {mask.shape}, the image {tuple(reversed(reference.size))}.")
