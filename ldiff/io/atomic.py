"""Atomic file writes: write to a temporary file beside the target, then rename it into place.

A run that is killed half-way therefore never leaves a half-written file under the final name, so a
later stage (or ``--continue``) can trust that any file it finds is complete.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``target`` if the block succeeds.

    ``suffix`` defaults to the target's full suffix (e.g. ``.nii.gz``) so that writers that infer the
    format from the file name keep working.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(target.suffixes)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(handle)
    temporary_path = Path(temporary)
    # mkstemp creates files readable by the owner only; outputs should get the usual umask-based mode.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary_path, 0o666 & ~umask)
    try:
        yield temporary_path
        os.replace(temporary_path, target)
    finally:
        if temporary_path.exists():
            temporary_path.unlink()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _finite_or_none(value: Any) -> Any:
    """Replace NaN/Inf floats by None recursively: JSON has no such numbers (null = undefined, e.g. PSNR of identical images)."""
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating):
        return _finite_or_none(value.tolist())
    return value


def save_json_atomic(data: Any, target: str | os.PathLike, indent: int = 2) -> None:
    """Write ``data`` as human-readable, strictly valid JSON (numpy values converted, NaN/Inf as null)."""
    text = json.dumps(_finite_or_none(data), indent=indent, default=_json_default, sort_keys=False, allow_nan=False)
    with atomic_path(target) as temporary:
        temporary.write_text(text + "\n", encoding="utf-8")


def load_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def save_npz_atomic(target: str | os.PathLike, compress: bool = True, **arrays: np.ndarray) -> None:
    """Save arrays to ``target`` (.npz) atomically."""
    with atomic_path(target, suffix=".npz") as temporary:
        with open(temporary, "wb") as handle:
            (np.savez_compressed if compress else np.savez)(handle, **arrays)
