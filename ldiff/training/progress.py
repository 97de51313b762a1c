"""The training log (``training_log.json``) and its picture (``progress.png``).

Training entries are written every ``log_every`` steps and average that window: ``loss`` is the mean
of the per-step losses (already averaged over all ranks), ``step_time_s`` and ``data_wait_s`` the mean
wall time per step and the part of it spent waiting for the data loader. ``step`` is the last step
of the window (0-based). Validation entries carry ``"kind": "validation"`` and the metrics.

The log travels inside ``checkpoint_latest.pth`` (together with the unfinished window), so a
resumed run continues it from the checkpoint's step and never repeats the entries a killed run
wrote after its last checkpoint.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ldiff.io import atomic_path, save_json_atomic


class TrainingLog:
    """Accumulates per-step numbers into windowed entries.

    Args:
        log_every: steps per training entry (1 logs every step).
    """

    def __init__(self, log_every: int = 10) -> None:
        if log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {log_every}.")
        self.log_every = int(log_every)
        self.entries: list[dict[str, Any]] = []
        self._window: dict[str, float] = self._empty_window()

    @staticmethod
    def _empty_window() -> dict[str, float]:
        return {"count": 0, "loss": 0.0, "step_time_s": 0.0, "data_wait_s": 0.0}

    def record_step(self, step: int, loss: float, lr: float, step_time_s: float, data_wait_s: float) -> dict | None:
        """Add one step; returns the new entry when ``step`` closes a window, else None."""
        window = self._window
        window["count"] += 1
        window["loss"] += float(loss)
        window["step_time_s"] += float(step_time_s)
        window["data_wait_s"] += float(data_wait_s)
        if (step + 1) % self.log_every:
            return None
        count = window["count"]
        entry = {"kind": "train", "step": int(step), "loss": window["loss"] / count, "lr": float(lr),
                 "step_time_s": window["step_time_s"] / count, "data_wait_s": window["data_wait_s"] / count}
        self.entries.append(entry)
        self._window = self._empty_window()
        return entry

    def record_validation(self, step: int, metrics: dict[str, float | None]) -> dict:
        """Add a validation entry for the weights after update ``step``."""
        entry = {"kind": "validation", "step": int(step), **metrics}
        self.entries.append(entry)
        return entry

    def training_entries(self) -> list[dict[str, Any]]:
        return [entry for entry in self.entries if entry["kind"] == "train"]

    def validation_entries(self) -> list[dict[str, Any]]:
        return [entry for entry in self.entries if entry["kind"] == "validation"]

    def data_wait_fraction(self) -> float:
        """Fraction of all logged step time spent waiting for data (NaN before the first entry)."""
        entries = self.training_entries()
        total = sum(entry["step_time_s"] for entry in entries)
        return sum(entry["data_wait_s"] for entry in entries) / total if total > 0 else math.nan

    # ---- persistence ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain values only, for the checkpoint (``weights_only`` loading)."""
        return {"log_every": self.log_every, "entries": [dict(entry) for entry in self.entries],
                "window": dict(self._window)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.log_every = int(state["log_every"])
        self.entries = [dict(entry) for entry in state["entries"]]
        self._window = dict(state["window"])

    def save(self, path: Path) -> None:
        save_json_atomic({"log_every": self.log_every, "entries": self.entries}, path)


def smooth(values: np.ndarray, fraction: float = 0.05) -> np.ndarray:
    """Exponential smoothing with a time constant of ``fraction`` of the series (at least 1 point).

    Args:
        values: (N,) floats. Returns (N,) floats; the first value is kept as is.
    """
    if values.size == 0:
        return values
    alpha = 1.0 / max(1.0, fraction * values.size)
    smoothed = np.empty_like(values, dtype=np.float64)
    smoothed[0] = values[0]
    for index in range(1, values.size):
        smoothed[index] = (1 - alpha) * smoothed[index - 1] + alpha * values[index]
    return smoothed


def plot_progress(log: TrainingLog, path: Path, title: str = "") -> None:
    """Write ``progress.png``: loss (raw and smoothed), validation SSIM/PSNR, learning rate, step time."""
    import matplotlib

    matplotlib.use("Agg")  # no display on clusters; must happen before pyplot is imported
    import matplotlib.pyplot as plt

    train = log.training_entries()
    validation = [entry for entry in log.validation_entries() if entry.get("ssim") is not None]
    steps = np.array([entry["step"] for entry in train], dtype=np.float64)
    figure, axes = plt.subplots(4, 1, figsize=(9, 12), sharex=True)
    loss_axis, metric_axis, lr_axis, time_axis = axes

    if train:
        losses = np.array([entry["loss"] for entry in train], dtype=np.float64)
        loss_axis.plot(steps, losses, color="tab:blue", alpha=0.3, linewidth=0.8, label="loss")
        loss_axis.plot(steps, smooth(losses), color="tab:blue", linewidth=1.8, label="smoothed")
        if np.all(losses > 0):
            loss_axis.set_yscale("log")
        lr_axis.plot(steps, [entry["lr"] for entry in train], color="tab:green")
        time_axis.plot(steps, [entry["step_time_s"] for entry in train], color="tab:purple", label="step")
        time_axis.plot(steps, [entry["data_wait_s"] for entry in train], color="tab:orange", label="data wait")
        time_axis.legend(loc="upper right")
    loss_axis.set_ylabel("masked, weighted MSE")
    loss_axis.legend(loc="upper right")
    if validation:
        validation_steps = [entry["step"] for entry in validation]
        metric_axis.plot(validation_steps, [entry["ssim"] for entry in validation], "o-", color="tab:red", label="SSIM")
        psnr_axis = metric_axis.twinx()
        psnr_axis.plot(validation_steps, [entry["psnr"] for entry in validation], "s--", color="tab:gray", label="PSNR")
        psnr_axis.set_ylabel("PSNR in mask (dB)")
        handles = metric_axis.get_legend_handles_labels()[0] + psnr_axis.get_legend_handles_labels()[0]
        metric_axis.legend(handles=handles, loc="lower right")
    metric_axis.set_ylabel("SSIM in mask (EMA)")
    lr_axis.set_ylabel("learning rate")
    time_axis.set_ylabel("seconds per step")
    time_axis.set_xlabel("step")
    figure.suptitle(title)
    # Fixed margins: tight_layout costs more than drawing the curves.
    figure.subplots_adjust(left=0.1, right=0.9, top=0.95, bottom=0.05, hspace=0.15)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=80, format="png")
    plt.close(figure)
