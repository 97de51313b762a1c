"""Geometry of one training sample (window, rotation, scaling, mirroring) and intensity augmentation.

Everything here is a pure function of its arguments and a caller's ``numpy.random.Generator``, so a
sample can be recomputed bit for bit in any process. batchgenerators' transforms draw from numpy's
global RNG, which would make a sample depend on what ran before it in the same process; the few
transforms ldiff needs are therefore written here (spatial ones with ``scipy.ndimage``).

Arrays: images are (C, D, Y, X) float32 in [-1, 1] (background -1) and label maps (D, Y, X) uint8.
Rotation and scaling act in the axial (Y, X) plane only, identically on every slice of a stack, so a
pseudo-3D stack stays a stack of consecutive axial slices.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

BACKGROUND_VALUE = -1.0


@dataclass(frozen=True)
class AugmentationParameters:
    """Probabilities and ranges of every augmentation (the defaults are ldiff's training settings).

    Spatial draws are per sample (all channels and slices alike); intensity draws are per channel,
    since channels are different modalities. Ranges are inclusive and drawn uniformly, except gamma,
    which is drawn log-uniformly so that brightening and darkening are equally likely.
    """

    rotation_probability: float = 0.3
    rotation_degrees: float = 15.0  # +- this angle in the axial plane
    scaling_probability: float = 0.3
    scaling_range: tuple[float, float] = (0.85, 1.15)  # > 1 zooms in
    mirror_probability: float = 0.5  # left-right (X axis)
    # Where the padded slice sits in the window: random (a translation augmentation) or centred.
    random_window_offset: bool = True
    brightness_probability: float = 0.3
    brightness_range: tuple[float, float] = (0.85, 1.15)  # multiplies (x + 1) / 2
    contrast_probability: float = 0.3
    contrast_range: tuple[float, float] = (0.8, 1.2)  # around the channel's brain mean
    gamma_probability: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)  # exponent on (x + 1) / 2
    # A smooth multiplicative field exp(b), b a random quadratic polynomial of the in-plane position
    # (coefficients ~ N(0, strength)): scanner bias fields that preprocessing did not remove.
    bias_field_probability: float = 0.15
    bias_field_strength: float = 0.15
    # Gaussian noise added to (x + 1) / 2 with a standard deviation drawn from this range: other
    # scanners and protocols are noisier or smoother than the training data.
    noise_probability: float = 0.15
    noise_std_range: tuple[float, float] = (0.0, 0.03)
    # A lesion's partial-volume rim in the context of a filling mask (paint_context_rim): real lesion
    # signal reaches beyond the drawn, dilated mask, synthetic training masks have none. 0 = never
    # (the presets below), so that their samples stay as they were.
    rim_probability: float = 0.0
    rim_fraction: float = 0.05  # the rim's largest relative change, drawn in +- this per channel
    rim_width: int = 2  # voxels outside the mask over which it fades to 0
    # Gaussian smoothing in-plane inside the brain (blur_in_plane): scans resampled onto another grid, e.g.
    # registered to a template, are smoother than the training data (noise alone only makes them
    # noisier). 0 = never (the presets above), so that their samples stay as they were.
    blur_probability: float = 0.0
    blur_sigma_range: tuple[float, float] = (0.5, 1.5)  # voxels, the same for every channel of a sample


DEFAULT_AUGMENTATION = AugmentationParameters()
# For models that must generalise beyond their training data (the shipped demo models): every
# intensity augmentation twice as often and wider.
STRONG_AUGMENTATION = AugmentationParameters(
    rotation_probability=0.5, scaling_probability=0.5,
    brightness_probability=0.5, brightness_range=(0.7, 1.3),
    contrast_probability=0.5, contrast_range=(0.65, 1.5),
    gamma_probability=0.5, gamma_range=(0.5, 2.0),
    bias_field_probability=0.4, bias_field_strength=0.25,
    noise_probability=0.4, noise_std_range=(0.0, 0.06),
)
# Strong, and filling masks get a lesion rim in their context half of the time (issue 9's experiment).
STRONG_RIM_AUGMENTATION = replace(STRONG_AUGMENTATION, rim_probability=0.5)
# Strong, and a third of the samples smoothed as a resampled scan is (issue 9's experiment).
STRONG_BLUR_AUGMENTATION = replace(STRONG_AUGMENTATION, blur_probability=0.3)
AUGMENTATION_PRESETS = {"default": DEFAULT_AUGMENTATION, "strong": STRONG_AUGMENTATION,
                        "strong_rim": STRONG_RIM_AUGMENTATION, "strong_blur": STRONG_BLUR_AUGMENTATION}


@dataclass(frozen=True)
class SpatialDraw:
    """One sample's in-plane geometry: ``rotation`` (radians), ``scale`` (> 1 zooms in), ``mirror``."""

    rotation: float = 0.0
    scale: float = 1.0
    mirror: bool = False

    @property
    def is_shift_only(self) -> bool:
        """True when no interpolation is needed (the window is an integer shift of the input)."""
        return self.rotation == 0.0 and self.scale == 1.0


NO_SPATIAL_CHANGE = SpatialDraw()


def draw_spatial(rng: np.random.Generator, parameters: AugmentationParameters = DEFAULT_AUGMENTATION) -> SpatialDraw:
    """Draw rotation, scaling and mirroring; the rng is consumed identically whatever is drawn."""
    # Always draw every number so the stream position (and thus later draws) is independent of
    # which augmentations happen to be applied.
    rotate, angle = rng.random(), rng.uniform(-1.0, 1.0)
    zoom, scale = rng.random(), rng.uniform(*parameters.scaling_range)
    mirror = rng.random()
    return SpatialDraw(
        rotation=math.radians(parameters.rotation_degrees) * angle if rotate < parameters.rotation_probability else 0.0,
        scale=float(scale) if zoom < parameters.scaling_probability else 1.0,
        mirror=bool(mirror < parameters.mirror_probability),
    )


def window_start(input_size: int, output_size: int, rng: np.random.Generator | None, focus: int | None = None) -> int:
    """Input index of the output window's first pixel along one axis (negative = padding before).

    Smaller inputs are padded: centred without ``rng``, at a random offset with it. Larger inputs are
    cropped: centred (or a random window with ``rng``), always keeping input index ``focus`` (e.g. a
    lesion voxel) inside the window when one is given.
    """
    if input_size <= output_size:
        spare = output_size - input_size
        return -(int(rng.integers(spare + 1)) if rng is not None else spare // 2)
    low, high = 0, input_size - output_size
    if focus is not None:
        low, high = max(low, focus - output_size + 1), min(high, focus)
    if rng is not None:
        return int(rng.integers(low, high + 1))
    return int(np.clip((input_size - output_size) // 2, low, high))


def _shift(array: np.ndarray, start: tuple[int, int], size: tuple[int, int], fill: float) -> np.ndarray:
    """``out[..., i, j] = array[..., i + start[0], j + start[1]]``, ``fill`` where that is outside."""
    out = np.full(array.shape[:-2] + tuple(size), fill, dtype=array.dtype)
    source, target = [], []
    for begin, length, limit in zip(start, size, array.shape[-2:]):
        low, high = max(begin, 0), min(begin + length, limit)
        if low >= high:
            return out
        source.append(slice(low, high))
        target.append(slice(low - begin, high - begin))
    out[(..., *target)] = array[(..., *source)]
    return out


def _sampling_coordinates(start: tuple[int, int], size: tuple[int, int], input_shape: tuple[int, int],
                          draw: SpatialDraw) -> np.ndarray:
    """Input (y, x) coordinates of every output pixel, shape (2, H, W), float64.

    The rotation/scaling centre is the middle of the input's visible part, so a padded brain turns
    about its own centre and does not swing out of the window.
    """
    centre = np.array([
        (max(0, -begin) + min(length, limit - begin) - 1) / 2.0
        for begin, length, limit in zip(start, size, input_shape)
    ])
    cos, sin = math.cos(draw.rotation) / draw.scale, math.sin(draw.rotation) / draw.scale
    matrix = np.array([[cos, -sin], [sin, cos]])  # output offsets -> input offsets
    grid = np.stack(np.meshgrid(np.arange(size[0], dtype=np.float64), np.arange(size[1], dtype=np.float64), indexing="ij"))
    offsets = grid - centre[:, None, None]
    mapped = np.einsum("ij,jhw->ihw", matrix, offsets)
    return mapped + (centre + np.asarray(start, dtype=np.float64))[:, None, None]


def warp_stack(image: np.ndarray, labels: np.ndarray, start: tuple[int, int], size: tuple[int, int],
               draw: SpatialDraw = NO_SPATIAL_CHANGE) -> tuple[np.ndarray, np.ndarray]:
    """Cut the (H, W) = ``size`` window at ``start`` out of every slice, rotated/scaled/mirrored by ``draw``.

    Args:
        image: (C, D, Y, X) float32; interpolated linearly, -1 outside the input.
        labels: (D, Y, X) uint8 label map (bit flags are fine); nearest neighbour, 0 outside, so
            every output value is one of the input's values and masks stay binary.
        start: input (y, x) index of the window's first pixel; may be negative (padding).
        size: (H, W) of the output.

    Returns:
        ((C, D, H, W) float32, (D, H, W) uint8), new arrays.
    """
    size = (int(size[0]), int(size[1]))
    if draw.is_shift_only:
        # The common case is exact and much faster as plain copying.
        warped_image = _shift(image, start, size, BACKGROUND_VALUE)
        warped_labels = _shift(labels, start, size, 0)
    else:
        coordinates = _sampling_coordinates(start, size, image.shape[-2:], draw)
        warped_image = np.empty(image.shape[:2] + size, dtype=np.float32)
        warped_labels = np.empty(labels.shape[:1] + size, dtype=labels.dtype)
        for channel in range(image.shape[0]):
            for depth in range(image.shape[1]):
                ndimage.map_coordinates(image[channel, depth], coordinates, output=warped_image[channel, depth],
                                        order=1, mode="constant", cval=BACKGROUND_VALUE)
        for depth in range(labels.shape[0]):
            ndimage.map_coordinates(labels[depth], coordinates, output=warped_labels[depth], order=0,
                                    mode="constant", cval=0)
        # Linear interpolation cannot leave the input's range, but float rounding can by an ulp.
        np.clip(warped_image, -1.0, 1.0, out=warped_image)
    if draw.mirror:
        warped_image = np.ascontiguousarray(warped_image[..., ::-1])
        warped_labels = np.ascontiguousarray(warped_labels[..., ::-1])
    return warped_image, warped_labels


def augment_intensity(image: np.ndarray, brain: np.ndarray, rng: np.random.Generator,
                      parameters: AugmentationParameters = DEFAULT_AUGMENTATION) -> np.ndarray:
    """Brightness, contrast and gamma per channel, inside the brain only; a new array in [-1, 1].

    Args:
        image: (C, ...) float32 in [-1, 1].
        brain: (...) bool/0-1, the voxels that may change; everything else is returned unchanged.
        rng: the sample's generator; consumed identically whatever is applied.

    The operations act on u = (x + 1) / 2 in [0, 1] (so background -1 is u = 0): u * b
    (brightness), mean + (u - mean) * c (contrast, mean over the channel's brain voxels), u ** g
    (gamma), u * exp(bias field) and u + noise, then u is clipped to [0, 1].
    """
    inside = np.asarray(brain, dtype=bool)
    result = np.array(image, dtype=np.float32, copy=True)
    if not inside.any():
        # Still consume the same numbers, so later draws do not depend on the brain's presence.
        rng.random((image.shape[0], 6 + 4 + 6))
        return result
    log_gamma = np.log(parameters.gamma_range)
    for channel in range(image.shape[0]):
        apply_brightness, brightness = rng.random(), rng.uniform(*parameters.brightness_range)
        apply_contrast, contrast = rng.random(), rng.uniform(*parameters.contrast_range)
        apply_gamma, gamma = rng.random(), math.exp(rng.uniform(*log_gamma))
        apply_noise, noise_std = rng.random(), rng.uniform(*parameters.noise_std_range)
        noise_seed = int(rng.integers(0, 2**31))
        apply_bias = rng.random()
        bias_coefficients = rng.normal(0.0, parameters.bias_field_strength, 6)
        values = (result[channel][inside].astype(np.float64) + 1.0) / 2.0
        if apply_brightness < parameters.brightness_probability:
            values *= brightness
        if apply_contrast < parameters.contrast_probability:
            mean = values.mean()
            values = mean + (values - mean) * contrast
        if apply_gamma < parameters.gamma_probability:
            values = np.clip(values, 0.0, 1.0) ** gamma
        if apply_bias < parameters.bias_field_probability:
            values *= np.exp(_quadratic_field(bias_coefficients, inside))
        if apply_noise < parameters.noise_probability:
            values += np.random.default_rng(noise_seed).normal(0.0, noise_std, values.shape)
        result[channel][inside] = (np.clip(values, 0.0, 1.0) * 2.0 - 1.0).astype(np.float32)
    return result


def _quadratic_field(coefficients: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """c0 + c1 y + c2 x + c3 y^2 + c4 x^2 + c5 x y at the ``inside`` voxels, y and x scaled to [-1, 1] in-plane."""
    y_size, x_size = inside.shape[-2:]
    y, x = np.meshgrid(np.linspace(-1.0, 1.0, y_size), np.linspace(-1.0, 1.0, x_size), indexing="ij")
    field = (coefficients[0] + coefficients[1] * y + coefficients[2] * x + coefficients[3] * y * y
             + coefficients[4] * x * x + coefficients[5] * x * y)
    return np.broadcast_to(field, inside.shape)[inside]


def paint_context_rim(image: np.ndarray, paint: np.ndarray, known: np.ndarray, brain: np.ndarray,
                      rng: np.random.Generator, parameters: AugmentationParameters) -> np.ndarray:
    """A lesion's partial-volume rim just outside the painted region around ``known``; a new array.

    At prediction a filling model reads context that a real lesion's signal still reaches beyond its
    drawn and dilated mask (a T1 lesion darkens it, a FLAIR lesion brightens it), while the synthetic
    masks it was trained on sit in clean tissue; a model that continues whatever borders the mask then
    carries the rim inside. With probability ``rim_probability`` each channel's u = (x + 1) / 2 is
    multiplied by 1 + a * w outside ``paint`` and inside ``brain``, a ~ U(-rim_fraction, rim_fraction)
    per channel and w = 1 at one voxel from ``known``, falling linearly to 0 at ``rim_width`` + 1
    voxels. The target inside ``paint`` is untouched, so the model learns to fill behind a rim.

    Args:
        image: (C, ...) float32 in [-1, 1]; ``paint``, ``known``, ``brain``: (...) 0/1, where ``known``
            marks the painted voxels the loss scores (synthetic masks; real lesions have their own rim).
        rng: the sample's generator (drawn from only when ``rim_probability`` > 0).
    """
    if parameters.rim_probability <= 0:
        return image
    apply = rng.random() < parameters.rim_probability
    fractions = rng.uniform(-parameters.rim_fraction, parameters.rim_fraction, image.shape[0])
    known = np.asarray(known, dtype=bool)
    if not apply or not known.any():
        return image
    distance = ndimage.distance_transform_edt(~known)
    weight = np.clip(1.0 - (distance - 1.0) / parameters.rim_width, 0.0, 1.0)
    weight[np.asarray(paint, dtype=bool) | ~np.asarray(brain, dtype=bool)] = 0.0
    result = np.array(image, dtype=np.float32, copy=True)
    for channel, fraction in enumerate(fractions):
        u = (result[channel].astype(np.float64) + 1.0) / 2.0 * (1.0 + fraction * weight)
        result[channel] = (np.clip(u, 0.0, 1.0) * 2.0 - 1.0).astype(np.float32)
    return result


def blur_in_plane(image: np.ndarray, brain: np.ndarray, rng: np.random.Generator,
                  parameters: AugmentationParameters) -> np.ndarray:
    """With probability ``blur_probability``, every channel smoothed in-plane by one Gaussian of sigma ~
    U(``blur_sigma_range``) voxels inside ``brain``; a new array (the input itself when nothing applies).

    The smoothing is normalised by the brain's own smoothed indicator, so the background (-1) does not
    bleed into the brain's edge and a constant brain stays constant; voxels outside ``brain`` are
    returned unchanged.

    Args:
        image: (C, ..., Y, X) float32 in [-1, 1]; the last two axes are the slice plane.
        brain: (..., Y, X) bool/0-1.
        rng: the sample's generator (drawn from only when ``blur_probability`` > 0).
    """
    if parameters.blur_probability <= 0:
        return image
    apply = rng.random() < parameters.blur_probability
    sigma = rng.uniform(*parameters.blur_sigma_range)
    inside = np.asarray(brain, dtype=bool)
    if not apply or not inside.any():
        return image
    sigmas = (0.0,) * (inside.ndim - 2) + (sigma, sigma)
    weight = ndimage.gaussian_filter(inside.astype(np.float64), sigmas)
    result = np.array(image, dtype=np.float32, copy=True)
    for channel in range(image.shape[0]):
        smoothed = ndimage.gaussian_filter(np.where(inside, image[channel], 0.0).astype(np.float64), sigmas)
        result[channel][inside] = (smoothed[inside] / weight[inside]).astype(np.float32)
    return result
