"""Histogram standardisation: a scan's brain intensities mapped onto the training data's, and back.

Percentile normalisation (:mod:`ldiff.preprocessing.normalization`) fixes only two points of a scan's
intensity scale, its brain's 0.5th and 99.5th percentiles. Between them, scanners and sequences differ:
after normalisation a real patient's brain median sat at 0.45 in the model's [-1, 1] space where the
training phantoms' sat at 0.26, so the model saw white matter at a level it had learnt as something
else. Nyúl-Udupa standardisation (Nyúl & Udupa 1999, *Magn Reson Med* 42:1072; Nyúl et al. 2000,
*IEEE TMI* 19:143) maps a scan's intensity landmarks piecewise-linearly onto the mean landmarks of the
training set.

Here the landmarks are the brain's percentiles :data:`LANDMARK_PERCENTILES` of each channel after
normalisation. Training records their mean over its training cases in ``model.json``
(``intensity_landmarks``, :func:`training_landmarks`); prediction maps the normalised input onto them
(:meth:`IntensityStandardisation.apply`) and the model's output back (:meth:`~IntensityStandardisation.invert`),
so a fill comes back in the scan's own units. Both ends of the normalised range, -1 and 1, stay fixed
(the background stays -1), and the knots of both sides are strictly increasing, so the mapping is
monotone and its inverse exact (up to float rounding).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ldiff.errors import LdiffError

LANDMARK_PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)
# Knots closer than this (in the [-1, 1] space) on either side are dropped: a scan whose percentiles tie
# (e.g. an integer image with few grey levels) would otherwise give a mapping without an inverse.
MIN_KNOT_GAP = 1e-4


def brain_landmarks(image: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """float64 (C, P): each channel's percentiles :data:`LANDMARK_PERCENTILES` inside ``brain``.

    Args:
        image: (C, Z, Y, X), normalised to [-1, 1].
        brain: bool (Z, Y, X), not empty.
    """
    brain = np.asarray(brain, dtype=bool)
    if not brain.any():
        raise LdiffError("the brain mask is empty, so the intensity landmarks cannot be measured.")
    return np.stack([np.percentile(np.asarray(channel, dtype=np.float64)[brain], LANDMARK_PERCENTILES)
                     for channel in image])


def landmarks_record(per_case: Sequence[np.ndarray], source: str) -> dict[str, Any]:
    """The ``model.json`` entry: the mean of ``per_case`` landmarks (each (C, P)), their percentiles,
    the number of cases and where they came from."""
    if not per_case:
        raise LdiffError(f"{source}: no case to measure intensity landmarks on.")
    mean = np.mean(np.stack(per_case), axis=0)
    return {"percentiles": list(LANDMARK_PERCENTILES), "mean": [[round(float(v), 6) for v in row] for row in mean],
            "cases": len(per_case), "source": source}


def training_landmarks(data_folder: Path, case_ids: Sequence[str]) -> dict[str, Any]:
    """:func:`landmarks_record` of the preprocessed cases ``{case}.npz`` (``image`` and ``brain``) in
    ``data_folder``: what ``ldiff_train`` writes into ``model.json`` for its training cases."""
    per_case = []
    for case_id in case_ids:
        with np.load(Path(data_folder) / f"{case_id}.npz") as arrays:
            per_case.append(brain_landmarks(arrays["image"], arrays["brain"]))
    return landmarks_record(per_case, f"{len(per_case)} training cases of {Path(data_folder).parent.name}")


def target_landmarks(description: dict[str, Any], num_channels: int) -> np.ndarray | None:
    """float64 (C, P) from a model description's ``intensity_landmarks``, or None where it has none;
    one sentence for an entry that does not fit the model's channels or percentiles."""
    record = description.get("intensity_landmarks")
    if not record:
        return None
    mean = np.asarray(record.get("mean"), dtype=np.float64)
    if mean.shape != (num_channels, len(LANDMARK_PERCENTILES)) or \
            tuple(record.get("percentiles", ())) != LANDMARK_PERCENTILES:
        raise LdiffError(f"the model's intensity_landmarks have shape {mean.shape} at percentiles "
                         f"{record.get('percentiles')}; expected ({num_channels}, {len(LANDMARK_PERCENTILES)}) at "
                         f"{list(LANDMARK_PERCENTILES)}: rewrite them or predict without standardisation.")
    return mean


def _increasing_knots(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots (-1, landmarks..., 1) of both sides, keeping a landmark pair only where both sides rise by at
    least :data:`MIN_KNOT_GAP` over the last kept pair and stay that far below 1."""
    kept_source, kept_target = [-1.0], [-1.0]
    for s, t in zip(source, target):
        if (s - kept_source[-1] >= MIN_KNOT_GAP and t - kept_target[-1] >= MIN_KNOT_GAP
                and 1.0 - s >= MIN_KNOT_GAP and 1.0 - t >= MIN_KNOT_GAP):
            kept_source.append(float(s))
            kept_target.append(float(t))
    return np.array(kept_source + [1.0]), np.array(kept_target + [1.0])


@dataclass(frozen=True)
class IntensityStandardisation:
    """Per channel, the piecewise-linear map from a scan's knots ``source[c]`` to the training knots
    ``target[c]`` (both strictly increasing from -1 to 1); see the module docstring."""

    source: tuple[np.ndarray, ...]
    target: tuple[np.ndarray, ...]

    @classmethod
    def fit(cls, image: np.ndarray, brain: np.ndarray, target_landmarks: np.ndarray) -> "IntensityStandardisation":
        """The map of ``image`` (C, Z, Y, X), normalised, onto ``target_landmarks`` (C, P), measuring the
        image's landmarks inside ``brain`` (Z, Y, X) bool."""
        measured = brain_landmarks(image, brain)
        if measured.shape != np.shape(target_landmarks):
            raise LdiffError(f"the image has {measured.shape[0]} channel(s), the intensity landmarks "
                             f"{np.shape(target_landmarks)[0]}.")
        knots = [_increasing_knots(s, t) for s, t in zip(measured, np.asarray(target_landmarks, dtype=np.float64))]
        return cls(tuple(k[0] for k in knots), tuple(k[1] for k in knots))

    def apply(self, image: np.ndarray) -> np.ndarray:
        """``image`` (C, Z, Y, X) in [-1, 1] mapped onto the training landmarks, same dtype."""
        return np.stack([np.interp(channel, s, t) for channel, s, t in zip(image, self.source, self.target)]
                        ).astype(image.dtype)

    def invert(self, values: np.ndarray, channel: int) -> np.ndarray:
        """Channel ``channel``'s values (any shape) in the training landmarks' scale mapped back to the
        scan's, same dtype: ``invert(apply(x)[c], c) == x[c]`` up to float rounding."""
        return np.interp(values, self.target[channel], self.source[channel]).astype(np.asarray(values).dtype)

    def as_dict(self) -> dict[str, list[list[float]]]:
        """The knots, for logs."""
        return {"source": [[round(float(v), 4) for v in s] for s in self.source],
                "target": [[round(float(v), 4) for v in t] for t in self.target]}
