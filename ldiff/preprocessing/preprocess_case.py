"""One case from raw NIfTI files to network-ready arrays, and any such array back to the raw grid.

Forward, in this order: reorient to RAS+ -> brain/WM masks -> crop to the brain's bounding box ->
resample to the plan's spacing -> normalise each channel to [-1, 1]. Every step records what it did
in a JSON-serialisable ``properties`` dict, and :func:`restore_to_original` replays the steps
backwards so a filled image lands on the original file's grid.

Config keys read (from the plan's configuration): ``target_spacing`` ((x, y, z) mm in the canonical
RAS+ orientation), ``normalization`` (see :func:`ldiff.preprocessing.normalization.fit_normalizers`),
and optionally ``crop_margin`` (voxels, default 0) and ``image_interpolation`` (``"bspline"``
default, or ``"linear"``; masks always use nearest neighbour).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import SimpleITK as sitk

from ldiff.dataset.raw import RawCase
from ldiff.errors import LdiffError
from ldiff.io import Geometry, read_image
from ldiff.preprocessing.brain_masks import compute_masks
from ldiff.preprocessing.cropping import brain_bounding_box, crop_to_box, cropped_geometry, pad_from_box
from ldiff.preprocessing.normalization import PercentileNormalizer, fit_normalizers
from ldiff.preprocessing.orientation import Reorientation, restore_orientation
from ldiff.preprocessing.resampling import resample_array, resampled_geometry, spacing_matches

DEFAULT_IMAGE_INTERPOLATION = "bspline"


def preprocess_case(case: RawCase, config: dict, wm_channel: int | None) -> tuple[dict[str, np.ndarray], dict]:
    """Read a raw case's files and preprocess them; see :func:`preprocess_images` for the outputs.

    ``wm_channel`` is the index of a T1-weighted channel for WM clustering, or None (used only when
    the case has no tissue map). A missing ``label_file`` (unlabelled test case) gives an empty lesion mask.
    """
    images = [read_image(path) for path in case.image_files]
    lesion = read_image(case.label_file) if case.label_file is not None else None
    tissue = read_image(case.tissue_file) if case.tissue_file is not None else None
    return preprocess_images(images, lesion, tissue, config, wm_channel, case.identifier)


def preprocess_images(
    images: Sequence[sitk.Image],
    lesion: sitk.Image | None,
    tissue: sitk.Image | None,
    config: dict,
    wm_channel: int | None,
    identifier: str,
) -> tuple[dict[str, np.ndarray], dict]:
    """Preprocess in-memory images (channel order) that share one grid.

    Returns ``(arrays, properties)``: ``arrays`` holds ``"image"`` float32 (C, Z, Y, X) in [-1, 1]
    (-1 outside the brain), and uint8 (Z, Y, X) binary ``"lesion"``, ``"brain"`` and ``"wm"``, all
    in canonical RAS+ order (axis 0 inferior -> superior, so axial slices are ``array[..., k, :, :]``).
    ``properties`` is JSON-serialisable and is all :func:`restore_to_original` needs.
    """
    if not images:
        raise LdiffError(f"case {identifier}: has no image channels.")
    original = Geometry.of(images[0])
    reorientation = Reorientation.from_direction(original.direction)
    canonical = reorientation.apply_to_geometry(original)

    def canonical_array(image: sitk.Image, what: str) -> np.ndarray:
        if tuple(image.GetSize()) != original.size:
            raise LdiffError(f"case {identifier}: {what} has size {image.GetSize()}, channel 0 has {original.size}.")
        return reorientation.apply_to_array(sitk.GetArrayViewFromImage(image))

    channels = np.stack([canonical_array(image, f"channel {c}").astype(np.float32) for c, image in enumerate(images)])
    if lesion is not None:
        lesion_mask = canonical_array(lesion, "the lesion mask") > 0
    else:
        lesion_mask = np.zeros(channels.shape[1:], dtype=bool)
    tissue_map = np.rint(canonical_array(tissue, "the tissue map")).astype(np.uint8) if tissue is not None else None
    if wm_channel is not None and not 0 <= wm_channel < len(channels):
        raise LdiffError(f"case {identifier}: WM channel {wm_channel} does not exist ({len(channels)} channels).")

    brain, wm, mask_sources = compute_masks(channels, lesion_mask, tissue_map, wm_channel)
    background_values = [_background_value(channel, brain) for channel in channels]

    margin = int(config.get("crop_margin", 0))
    try:
        box = brain_bounding_box(brain, margin)
    except LdiffError as error:
        raise LdiffError(f"case {identifier}: {error}") from None
    channels = crop_to_box(channels, box)
    lesion_mask, brain, wm = (crop_to_box(mask, box).astype(np.uint8) for mask in (lesion_mask, brain, wm))
    crop_grid = cropped_geometry(canonical, box)

    target_spacing = [float(v) for v in config["target_spacing"]]
    interpolation = str(config.get("image_interpolation", DEFAULT_IMAGE_INTERPOLATION))
    resampled = not spacing_matches(crop_grid.spacing, target_spacing)
    final_grid = resampled_geometry(crop_grid, target_spacing) if resampled else crop_grid
    if resampled:
        channels = np.stack([resample_array(channel, crop_grid, final_grid, interpolation) for channel in channels])
        lesion_mask, brain, wm = (resample_array(mask, crop_grid, final_grid, "nearest") for mask in (lesion_mask, brain, wm))

    normalizers = fit_normalizers(channels, brain.astype(bool), config["normalization"])
    normalized = np.stack([normalizer.normalize(channel, brain.astype(bool)) for normalizer, channel in zip(normalizers, channels)])

    arrays = {"image": normalized, "lesion": lesion_mask, "brain": brain, "wm": wm}
    properties = {
        "identifier": identifier,
        "num_channels": len(images),
        "original_geometry": original.to_dict(),
        "orientation": reorientation.to_dict(),
        "canonical_geometry": canonical.to_dict(),
        "crop_margin": margin,
        "crop_bbox_zyx": box,
        "shape_after_crop_zyx": list(crop_grid.size[::-1]),
        "geometry_after_crop": crop_grid.to_dict(),
        "resampled": resampled,
        "image_interpolation": interpolation,
        "target_spacing": target_spacing,
        "spacing_after_resampling": list(final_grid.spacing),
        "shape_after_resampling_zyx": [int(v) for v in normalized.shape[1:]],
        "geometry_after_resampling": final_grid.to_dict(),
        "normalization": [normalizer.to_dict() for normalizer in normalizers],
        "background_values": background_values,
        **mask_sources,
    }
    return arrays, properties


def restore_to_original(
    array_zyx: np.ndarray,
    properties: dict,
    channel: int | None,
    is_mask: bool = False,
    fill_value: float | None = None,
) -> sitk.Image:
    """Map a preprocessed-space (Z, Y, X) array back onto the case's original grid.

    - ``channel`` given: ``array_zyx`` is that channel in [-1, 1]; the normalisation is undone.
    - ``is_mask``: ``array_zyx`` is a label map (bool or integers); it is resampled with nearest
      neighbour and returned as uint8, so binary masks stay binary.
    - neither: a float map in original intensity units, only resampled/uncropped/reoriented.

    Voxels outside the crop box get ``fill_value``, by default the channel's original background
    (median intensity outside the brain) for a channel and 0 otherwise. Returns float32 (uint8 for
    masks) with exactly the original file's size, spacing, origin and direction.
    """
    if is_mask and channel is not None:
        raise ValueError("pass either a channel (an image) or is_mask=True, not both")
    expected = tuple(properties["shape_after_resampling_zyx"])
    array = np.asarray(array_zyx)
    if array.shape != expected:
        raise ValueError(f"array shape {array.shape} differs from the preprocessed shape {expected}")

    if is_mask:
        array = array.astype(np.uint8) if array.dtype == bool else np.rint(array).astype(np.uint8)
    elif channel is not None:
        array = PercentileNormalizer.from_dict(properties["normalization"][channel]).denormalize(array)
    else:
        array = array.astype(np.float32)

    if properties["resampled"]:
        interpolation = "nearest" if is_mask else properties["image_interpolation"]
        array = resample_array(
            array,
            Geometry.from_dict(properties["geometry_after_resampling"]),
            Geometry.from_dict(properties["geometry_after_crop"]),
            interpolation,
        )

    if fill_value is None:
        fill_value = properties["background_values"][channel] if channel is not None else 0
    canonical_shape = tuple(Geometry.from_dict(properties["canonical_geometry"]).size[::-1])
    full = pad_from_box(array, properties["crop_bbox_zyx"], canonical_shape, fill_value)
    return restore_orientation(
        full, Reorientation.from_dict(properties["orientation"]), Geometry.from_dict(properties["original_geometry"])
    )


def _background_value(channel: np.ndarray, brain: np.ndarray) -> float:
    """Median intensity outside the brain (0 when the brain fills the volume): what un-cropping pads with."""
    outside = channel[~brain]
    return float(np.median(outside)) if outside.size else 0.0
