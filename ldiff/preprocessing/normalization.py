"""Per-case, per-channel intensity normalisation to [-1, 1] and its inverse.

The one scheme, ``percentile_clip``: compute the ``lower_percentile`` and ``upper_percentile`` of the
channel's intensities inside the brain, clip to that range, map it linearly onto [-1, 1], and set
everything outside the brain to -1. Percentiles (unlike the thesis's divide-by-maximum) are not
thrown off by a few hot voxels. The two intensities are recorded, so ``denormalize`` undoes the map
exactly (up to float32 rounding) for every voxel that was inside the clipping range.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ldiff.errors import LdiffError

PERCENTILE_CLIP = "percentile_clip"
SCHEMES = (PERCENTILE_CLIP,)


@dataclass(frozen=True)
class PercentileNormalizer:
    """Maps intensities ``low`` -> -1 and ``high`` -> +1 linearly, clipping outside that range.

    ``low``/``high`` are the channel's intensities at ``lower_percentile``/``upper_percentile``
    (in percent, e.g. 0.5 and 99.5) inside the brain.
    """

    low: float
    high: float
    lower_percentile: float
    upper_percentile: float

    @classmethod
    def fit(cls, image: np.ndarray, brain: np.ndarray, lower_percentile: float, upper_percentile: float) -> "PercentileNormalizer":
        """Measure the percentiles of ``image`` (Z, Y, X) over the boolean ``brain`` mask.

        A brain of one constant intensity gets a 1-wide range centred on it (so it maps to 0 and the
        inverse still holds) rather than a division by zero.
        """
        if not 0 <= lower_percentile < upper_percentile <= 100:
            raise LdiffError(
                f"normalisation percentiles must satisfy 0 <= lower < upper <= 100, got {lower_percentile} and {upper_percentile}."
            )
        values = np.asarray(image)[np.asarray(brain, dtype=bool)]
        if values.size == 0:
            raise LdiffError("the brain mask is empty, so the intensity percentiles cannot be measured.")
        low, high = (float(v) for v in np.percentile(values.astype(np.float64), [lower_percentile, upper_percentile]))
        if high <= low:
            low, high = low - 0.5, low + 0.5
        return cls(low, high, float(lower_percentile), float(upper_percentile))

    def normalize(self, image: np.ndarray, brain: np.ndarray | None = None) -> np.ndarray:
        """float32 array of ``image``'s shape in [-1, 1]; voxels outside ``brain`` (if given) are -1."""
        clipped = np.clip(np.asarray(image, dtype=np.float64), self.low, self.high)
        normalized = ((clipped - self.low) / (self.high - self.low)) * 2.0 - 1.0
        if brain is not None:
            normalized[~np.asarray(brain, dtype=bool)] = -1.0
        return normalized.astype(np.float32)

    def denormalize(self, normalized: np.ndarray) -> np.ndarray:
        """Inverse map of a [-1, 1] array back to intensities (float32); values beyond [-1, 1] extrapolate linearly."""
        values = np.asarray(normalized, dtype=np.float64)
        return ((values + 1.0) / 2.0 * (self.high - self.low) + self.low).astype(np.float32)

    def to_dict(self) -> dict:
        return {"scheme": PERCENTILE_CLIP, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "PercentileNormalizer":
        return cls(float(data["low"]), float(data["high"]), float(data["lower_percentile"]), float(data["upper_percentile"]))


def fit_normalizers(images: np.ndarray, brain: np.ndarray, settings: dict) -> list[PercentileNormalizer]:
    """One normaliser per channel of ``images`` (C, Z, Y, X), following the plan's ``normalization`` settings.

    ``settings`` is e.g. ``{"scheme": "percentile_clip", "lower_percentile": 0.5, "upper_percentile": 99.5}``.
    """
    scheme = settings.get("scheme", PERCENTILE_CLIP)
    if scheme not in SCHEMES:
        raise LdiffError(f"unknown normalisation scheme {scheme!r}; ldiff knows {', '.join(SCHEMES)}.")
    try:
        lower, upper = float(settings["lower_percentile"]), float(settings["upper_percentile"])
    except KeyError as missing:
        raise LdiffError(f"the normalisation settings lack {missing.args[0]!r}.") from None
    return [PercentileNormalizer.fit(channel, brain, lower, upper) for channel in images]
