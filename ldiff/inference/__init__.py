"""Prediction: filling and synthesising lesions in NIfTI scans.

``from ldiff.inference import Predictor`` is the Python API (see :mod:`ldiff.inference.predictor`);
:func:`predict_files` is what ``ldiff_predict`` runs. The names are imported on first use, so that
importing one module does not import them all.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Predictor": "ldiff.inference.predictor",
    "PredictionResult": "ldiff.inference.predictor",
    "SamplingOptions": "ldiff.inference.predictor",
    "LoadedModel": "ldiff.inference.model_loading",
    "choose_model_folder": "ldiff.inference.model_loading",
    "load_model": "ldiff.inference.model_loading",
    "ModelChoice": "ldiff.inference.files",
    "predict_files": "ldiff.inference.files",
    "RoiPlan": "ldiff.inference.roi",
    "plan_rois": "ldiff.inference.roi",
    "write_preview": "ldiff.inference.preview",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ldiff.inference' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
