"""The fillers a benchmark compares: ldiff models with sampling settings, and the classic fillers.

A method is named by a spec string:

* a classic filler's name (``nawm``, ``rim``, ``patch``, ``biharmonic``, ``ringmedian``, ``slf``);
* ``ldiff``: the model and sampling ``ldiff_predict -i t1 --mask m -o out`` would use (the shipped
  defaults); ``ldiff:MODEL_FOLDER`` another model; either followed by ``@key=value,...`` to change
  the sampling (keys of :class:`ldiff.inference.predictor.SamplingOptions`, e.g.
  ``ldiff@sampler=dpm_solver,steps=10,num_samples=4``).

Every method replaces the same region: the mask dilated by the benchmark's dilation. Classic
fillers get that dilated mask; ldiff gets the drawn mask and dilates it by its own plan, which the
benchmark checks is the same radius. Classic fillers also get the scan's WM from a three-class split
(as FSL's lesion_filling asks the user for one), which only helps them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import SimpleITK as sitk

from ldiff.errors import LdiffError
from ldiff.evaluation.classic import CLASSIC_METHODS, classic_fill
from ldiff.io import Geometry, array_to_image
from ldiff.io.cases import case_seed
from ldiff.io.model_files import checkpoint_file

LDIFF = "ldiff"


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method spec: ``label`` names it in tables; ``classic`` or ``model`` (None = the default
    model) with ``sampling`` overrides says what runs."""

    label: str
    classic: str | None = None
    model: str | None = None
    sampling: tuple[tuple[str, Any], ...] = ()

    @property
    def is_ldiff(self) -> bool:
        return self.classic is None


def _parse_value(text: str) -> Any:
    if text.lower() in ("true", "false"):  # e.g. standardise=false, match_contrast=true
        return text.lower() == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_method(spec: str) -> MethodSpec:
    """One spec string (module docstring) to a :class:`MethodSpec`; LdiffError naming a bad one."""
    text = spec.strip()
    if text in CLASSIC_METHODS:
        return MethodSpec(text, classic=text)
    head, _, settings = text.partition("@")
    name, _, model = head.partition(":")
    if name != LDIFF:
        raise LdiffError(f"unknown method {spec!r}: choose ldiff[:MODEL_FOLDER][@key=value,...] or one of "
                         f"{', '.join(CLASSIC_METHODS)}.")
    fields = {f.name for f in dataclasses.fields(_sampling_options_class())}
    pairs = []
    for item in filter(None, settings.split(",")):
        key, equals, value = item.partition("=")
        if not equals or key.strip() not in fields:
            raise LdiffError(f"method {spec!r}: {item!r} is not key=value with a key of {', '.join(sorted(fields))}.")
        pairs.append((key.strip(), _parse_value(value.strip())))
    return MethodSpec(text, model=model or None, sampling=tuple(pairs))


def _sampling_options_class() -> Any:
    from ldiff.inference.predictor import SamplingOptions

    return SamplingOptions


class MethodRunner:
    """Fills one case with one method; ldiff models are loaded once, on first use."""

    def __init__(self, spec: MethodSpec, device: str = "auto") -> None:
        self.spec = spec
        self.device = device
        self._predictor: Any = None

    def predictor(self, num_channels: int) -> Any:
        """The loaded :class:`~ldiff.inference.predictor.Predictor` (ldiff methods only)."""
        if self._predictor is None:
            from ldiff.inference.model_loading import choose_model_folder
            from ldiff.inference.predictor import Predictor, SamplingOptions

            # Without a folder, the model ldiff_predict -i/-o would pick (a filling model; one trained model
            # found, else the demo model for the number of channels).
            folder = choose_model_folder(self.spec.model, num_input_channels=num_channels)
            options = SamplingOptions(**dict(self.spec.sampling))
            self._predictor = Predictor.from_folder(folder, device=self.device, options=options)
        return self._predictor

    def channels(self, case_channels: Sequence[str]) -> list[int]:
        """Indices of the case's channels this method fills: all for classic fillers; for a model, its
        channels by name (case-insensitive), or all of them when the counts agree and names do not."""
        if not self.spec.is_ldiff:
            return list(range(len(case_channels)))
        wanted = self.predictor(len(case_channels)).model.channel_names
        lower = [name.lower() for name in case_channels]
        if all(name.lower() in lower for name in wanted):
            return [lower.index(name.lower()) for name in wanted]
        if len(wanted) == len(case_channels):
            return list(range(len(case_channels)))
        raise LdiffError(f"method {self.spec.label}: the model needs channels {', '.join(wanted)}, the cases have "
                         f"{', '.join(case_channels)}.")

    def describe(self) -> dict[str, Any]:
        """What the result files record about the method: for ldiff, the model folder, the SHA-256 of its
        checkpoint (which weights produced the numbers) and the sampling actually used."""
        if not self.spec.is_ldiff or self._predictor is None:
            return {"method": self.spec.label}
        model = self._predictor.model
        checkpoint = model.folder / checkpoint_file(model.checkpoint)
        digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
        return {"method": self.spec.label, "model_folder": str(model.folder), "checkpoint": checkpoint.name,
                "checkpoint_sha256": digest, "sampling": self._predictor.describe_sampling()}

    def dilation_mm(self) -> float | None:
        """The model's planned dilation radius in mm (ldiff methods, once loaded), None for classic fillers."""
        if not self.spec.is_ldiff or self._predictor is None:
            return None
        return float(self._predictor.model.mask_dilation["radius_mm"])

    def fill(self, images: np.ndarray, mask: np.ndarray, region: np.ndarray, wm: np.ndarray, geometry: Geometry,
             channels: Sequence[int], seed: int, case: str) -> tuple[dict[int, np.ndarray], float]:
        """Fill ``channels`` of ``images`` (C, Z, Y, X); returns ({channel: filled (Z, Y, X)}, seconds).

        ``mask``: the drawn lesions (ldiff dilates them itself); ``region``: the dilated mask the
        classic fillers replace; ``wm``: the WM mask given to the classic fillers.
        """
        start = time.perf_counter()
        if self.spec.is_ldiff:
            predictor = self.predictor(len(channels))
            sitk_images = [array_to_image(np.ascontiguousarray(images[c], dtype=np.float32), geometry)
                           for c in channels]
            seed_value = case_seed(seed, case)
            result = predictor.predict(sitk_images, mask, seed=seed_value)
            filled = {c: sitk.GetArrayFromImage(image).astype(np.float64) for c, image in zip(channels, result.images)}
        else:
            filled = {c: classic_fill(images[c], region, self.spec.classic, geometry.spacing,
                                      case_seed(seed, case, c), wm) for c in channels}
        return filled, time.perf_counter() - start
