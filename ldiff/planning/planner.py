"""The planner: turns a dataset fingerprint into plans for the ``2d`` and ``p3d`` configurations.

Every decision is a plain value in the returned JSON-able dict, with the reason where one is not
obvious. Any value can be overridden by a dotted key (``target_spacing``, ``2d.batch_size``,
``p3d.network.channels``, ``mask_dilation.radius_voxels`` ...); overrides are applied before the
values that depend on them are derived, and each is recorded with the value it replaced.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ldiff.diffusion.schedule import DEFAULT_SCHEDULE_CONFIG
from ldiff.masks import dilation_radius_voxels, mask_config_from_statistics
from ldiff.networks import downsampling_factor
from ldiff.tasks import TASKS
from ldiff.planning.batch_size import estimate_batch_size, measure_batch_size_cuda

PLANS_VERSION = 1
CONFIGURATIONS = ("2d", "p3d")
AXIAL_AXIS = 0  # in the canonical (z, y, x) array, axial slices are array[k]
DEFAULT_NORMALIZATION = {"scheme": "percentile_clip", "lower_percentile": 0.5, "upper_percentile": 99.5}
# The thesis's effective batch was 32 slices; more slices per step only costs time on a CPU.
MAX_SLICES_PER_BATCH = {"cuda": 32, "cpu": 16}
BASE_CHANNELS = {"cuda": 64, "cpu": 32}
MAX_CHANNELS = {"cuda": 512, "cpu": 256}
TRAINING_STEPS = {"cuda": 50_000, "cpu": 5_000}
SMALLEST_FEATURE_MAP = 8  # pixels along the shorter side at the bottom of the UNet
ATTENTION_MAX_RESOLUTION = 16  # self-attention where the feature map is at most 16 px (as the thesis)
DEFAULT_STACK_DEPTH = 8
# Training samples are in-plane patches of at most 128 px (12.8 cm at 1 mm): lesions are millimetres to
# a few centimetres across, training cost grows with the pixels, and prediction crops around each mask,
# so training and prediction see the same kind of input. Smaller brains train on whole slices.
MAX_PATCH_SIZE = 128


class _Decisions:
    """Looks up overrides by dotted key before a planned value is used, and records both."""

    def __init__(self, overrides: dict[str, Any]):
        self.overrides = dict(overrides)
        self.used: dict[str, dict[str, Any]] = {}

    def decide(self, key: str, planned: Any) -> Any:
        if key in self.overrides:
            self.used[key] = {"value": self.overrides[key], "planned": planned}
            return self.overrides[key]
        return planned

    def unused(self) -> list[str]:
        return sorted(set(self.overrides) - set(self.used))


def _percentile_of(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def plan_network(slice_size: tuple[int, int], in_channels: int, out_channels: int, device_type: str,
                 architecture: str, decisions: _Decisions, prefix: str) -> dict:
    """UNet topology for slices of ``slice_size`` (before padding to the downsampling factor)."""
    shorter = min(slice_size)
    levels = int(np.clip(math.floor(math.log2(max(shorter, 1) / SMALLEST_FEATURE_MAP)) + 1, 2, 6))
    levels = int(decisions.decide(f"{prefix}.network.num_levels", levels))
    base = BASE_CHANNELS[device_type]
    channels = [min(base * 2 ** min(level, 3), MAX_CHANNELS[device_type]) for level in range(levels)]
    channels = [int(c) for c in decisions.decide(f"{prefix}.network.channels", channels)]
    resolutions = [shorter / 2 ** level for level in range(len(channels))]
    attention = [bool(r <= ATTENTION_MAX_RESOLUTION) for r in resolutions]
    attention = decisions.decide(f"{prefix}.network.attention_levels", attention)
    return {
        "architecture": architecture,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "channels": channels,
        "num_res_blocks": int(decisions.decide(f"{prefix}.network.num_res_blocks", 2)),
        "attention_levels": [bool(a) for a in attention],
        "norm_groups": 32,
        "dropout": 0.0,
        "time_embedding_dim": None,
    }


def _pad_to_multiple(size: int, factor: int) -> int:
    return int(math.ceil(size / factor) * factor)


def plan_experiment(fingerprint: dict, overrides: dict[str, Any] | None = None, device_type: str = "cpu",
                    memory_target_gb: float | None = None) -> dict:
    """Plans for both configurations from a fingerprint.

    Args:
        fingerprint: the dict written by ``ldiff.planning.fingerprint``.
        overrides: dotted key -> value; see the module docstring.
        device_type: ``"cuda"`` (batch size measured on the GPU) or ``"cpu"`` (estimated).
        memory_target_gb: GPU memory (cuda, default 8) or RAM (cpu, default 4) the batch must fit in.
    """
    decisions = _Decisions(overrides or {})
    num_channels = len(fingerprint["channel_names"])
    cases = fingerprint["cases"]

    spacings = np.array([case["spacing"] for case in cases], dtype=np.float64)  # (n, 3) in (x, y, z) mm
    target_spacing = [float(v) for v in decisions.decide("target_spacing", np.median(spacings, axis=0).round(4).tolist())]

    # The crop must hold the largest brain: a slice size that cuts brains would lose anatomy.
    extents_mm = np.array([case["brain_bbox_extent_mm"] for case in cases], dtype=np.float64)  # (x, y, z)
    largest = extents_mm.max(axis=0)
    in_plane = (int(math.ceil(largest[1] / target_spacing[1])), int(math.ceil(largest[0] / target_spacing[0])))

    lesion_stats = fingerprint["lesions"]
    boundary_mm = lesion_stats.get("boundary_width_mm")
    radius_voxels = int(decisions.decide("mask_dilation.radius_voxels", dilation_radius_voxels(boundary_mm, target_spacing)))
    reason = ("no lesion boundary could be measured: the reference thesis's 1 voxel" if boundary_mm is None else
              f"typical lesion boundary width {boundary_mm:.2f} mm measured in the fingerprint, rounded up, at least 1 voxel")
    mask_dilation = {
        "radius_voxels": radius_voxels,
        "radius_mm": radius_voxels * min(target_spacing),
        "shape": decisions.decide("mask_dilation.shape", "ball"),
        "reason": reason,
    }

    # Synthetic ellipsoids span the dataset's in-plane lesion sizes (see mask_config_from_statistics).
    counts = lesion_stats["lesions_per_case"] or [0]
    planned_masks = mask_config_from_statistics(lesion_stats, target_spacing, {
        "lesions_per_mask": [1, int(max(1, min(8, _percentile_of(counts, 75))))],
        "dilation_shape": mask_dilation["shape"],
    })
    planned_masks["dilation_radius_voxels"] = radius_voxels
    training_masks = {key: decisions.decide(f"training_masks.{key}", value) for key, value in planned_masks.items()}

    diffusion = dict(DEFAULT_SCHEDULE_CONFIG)
    for key in list(diffusion):
        diffusion[key] = decisions.decide(f"diffusion.{key}", diffusion[key])

    memory_gb = memory_target_gb if memory_target_gb is not None else (8.0 if device_type == "cuda" else 4.0)
    configurations = {}
    for name in CONFIGURATIONS:
        architecture = "unet2d" if name == "2d" else "unet_p3d"
        # Planned for the widest input of the four tasks; the trainer sets in_channels from its task,
        # which changes memory only in the first layer.
        in_channels = max(task.in_channels(num_channels) for task in TASKS.values())
        patch_extent = [min(s, MAX_PATCH_SIZE) for s in in_plane]
        network = plan_network(patch_extent, in_channels, num_channels, device_type, architecture, decisions, name)
        factor = downsampling_factor(network)
        slice_size = [_pad_to_multiple(s, factor) for s in in_plane]
        slice_size = [int(s) for s in decisions.decide(f"{name}.slice_size", slice_size)]
        patch_size = [min(_pad_to_multiple(p, factor), s) for p, s in zip(patch_extent, slice_size)]
        patch_size = [int(s) for s in decisions.decide(f"{name}.patch_size", patch_size)]
        for key, size in (("slice_size", slice_size), ("patch_size", patch_size)):
            if any(s % factor for s in size):
                raise ValueError(f"{name}.{key} {size} must be a multiple of the downsampling factor {factor}")
        stack_depth = 1 if name == "2d" else int(decisions.decide("p3d.stack_depth", DEFAULT_STACK_DEPTH))
        sample_shape = (network["in_channels"], *patch_size) if name == "2d" else (network["in_channels"], stack_depth, *patch_size)
        max_batch = max(1, MAX_SLICES_PER_BATCH[device_type] // stack_depth)
        if f"{name}.batch_size" in decisions.overrides:
            batch_size, memory_bytes, method = int(decisions.decide(f"{name}.batch_size", None)), None, "override"
        elif device_type == "cuda":
            batch_size, memory_bytes = measure_batch_size_cuda(network, sample_shape, int(memory_gb * 2**30), max_batch)
            method = "measured: forward+backward on the GPU, binary search against the memory target"
        else:
            batch_size, memory_bytes = estimate_batch_size(network, sample_shape, int(memory_gb * 2**30), max_batch)
            method = "estimated: activations traced on the meta device + weights, gradients, AdamW, EMA, against the RAM target"
        configurations[name] = {
            "slice_axis": AXIAL_AXIS,
            "slice_size": slice_size,
            "patch_size": patch_size,
            "stack_depth": stack_depth,
            "network": network,
            "batch_size": batch_size,
            "batch_size_method": method,
            "memory_target_gb": memory_gb,
            "memory_at_batch_size_gb": None if memory_bytes is None else round(memory_bytes / 2**30, 3),
            "device_type": device_type,
            "num_training_steps": int(decisions.decide(f"{name}.num_training_steps", TRAINING_STEPS[device_type])),
            "learning_rate": float(decisions.decide(f"{name}.learning_rate", 1e-4)),
            "warmup_steps": int(decisions.decide(f"{name}.warmup_steps", 500)),
        }

    unused = decisions.unused()
    if unused:
        raise ValueError(f"unknown override key(s): {', '.join(unused)}")
    spacing_tag = "x".join(f"{v:g}" for v in target_spacing)
    return {
        "plans_version": PLANS_VERSION,
        "dataset_name": fingerprint["dataset_name"],
        "channel_names": fingerprint["channel_names"],
        "orientation": fingerprint["canonical_orientation"],
        "data_identifier": f"ldiffPlans_{spacing_tag}mm",
        "target_spacing": target_spacing,
        "normalization": decisions.decide("normalization", dict(DEFAULT_NORMALIZATION)),
        "wm_channel": fingerprint.get("wm_channel"),
        "mask_dilation": mask_dilation,
        "training_masks": training_masks,
        "diffusion": diffusion,
        "configurations": configurations,
        "overrides": decisions.used,
    }
