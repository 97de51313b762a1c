"""A tiny preprocessed dataset and a tiny network plan for the training tests (built in milliseconds)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DATA_IDENTIFIER = "ldiffPlans_1x1x1mm"
SHAPE_ZYX = (12, 32, 32)
TINY_NETWORK = {
    "channels": [8, 16],
    "num_res_blocks": 1,
    "attention_levels": [False, False],
    "mid_attention": False,
    "norm_groups": 8,
    "dropout": 0.0,
    "time_embedding_dim": None,
}


def phantom_arrays(seed: int, with_lesions: bool) -> dict[str, np.ndarray]:
    """A 2-channel (T1-like, FLAIR-like) ellipsoidal brain in [-1, 1] with a WM core and maybe 2 lesions."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(SHAPE_ZYX, dtype=np.float64)
    distance = np.sqrt(((z - 5.5) / 7.0) ** 2 + ((y - 15.5) / 13.0) ** 2 + ((x - 15.5) / 12.0) ** 2)
    brain = distance < 1.0
    wm = distance < 0.7
    lesion = np.zeros(SHAPE_ZYX, bool)
    if with_lesions:
        for centre in ((5, 13 + seed % 3, 12), (6, 18, 19 - seed % 2)):
            lesion |= ((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) <= 2.5**2
        lesion &= wm
    t1 = np.where(wm, 0.6, np.where(brain, 0.1, -1.0))
    flair = np.where(wm, 0.0, np.where(brain, 0.3, -1.0))
    t1[lesion], flair[lesion] = -0.3, 0.8
    noise = rng.normal(0.0, 0.03, (2, *SHAPE_ZYX)) * brain
    image = np.clip(np.stack([t1, flair]) + noise, -1, 1).astype(np.float32)
    return {"image": image, "lesion": lesion.astype(np.uint8), "wm": wm.astype(np.uint8),
            "brain": brain.astype(np.uint8)}


def configuration(architecture: str, stack_depth: int) -> dict:
    return {
        "slice_axis": 0,
        "slice_size": [32, 32],
        "stack_depth": stack_depth,
        "network": {"architecture": architecture, "in_channels": 5, "out_channels": 2, **TINY_NETWORK},
        "batch_size": 2,
        "num_training_steps": 4,
        "learning_rate": 1e-3,
        "warmup_steps": 2,
    }


def make_preprocessed_dataset(preprocessed_root: Path, name: str = "Dataset901_Tiny", num_cases: int = 4,
                              with_lesions: bool = True) -> Path:
    """Write ``plans.json``, ``dataset.json`` and ``<data_identifier>/{case}.npz|.json`` as preprocessing does."""
    folder = preprocessed_root / name
    data = folder / DATA_IDENTIFIER
    data.mkdir(parents=True)
    for index in range(num_cases):
        case = f"case_{index:03d}"
        np.savez_compressed(data / f"{case}.npz", **phantom_arrays(index, with_lesions))
        (data / f"{case}.json").write_text(json.dumps({"spacing_after_resampling": [1.0, 1.0, 1.0]}))
    plans = {
        "plans_version": 1,
        "dataset_name": name,
        "channel_names": ["T1w", "FLAIR"],
        "orientation": "RAS",
        "data_identifier": DATA_IDENTIFIER,
        "target_spacing": [1.0, 1.0, 1.0],
        "normalization": {"scheme": "percentile_clip", "lower_percentile": 0.5, "upper_percentile": 99.5},
        "wm_channel": 0,
        "mask_dilation": {"radius_voxels": 1, "radius_mm": 1.0, "shape": "ball", "reason": "test"},
        "training_masks": {"ellipsoid_radius_mm": [1.5, 3.0], "lesions_per_mask": [1, 2], "dilation_radius_voxels": 1},
        "diffusion": {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02,
                      "prediction_type": "epsilon", "min_snr_gamma": 5.0, "clip_sample": True},
        "configurations": {"2d": configuration("unet2d", 1), "p3d": configuration("unet_p3d", 3)},
        "overrides": {},
    }
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    dataset_json = {"channel_names": {"0": "T1w", "1": "FLAIR"}, "labels": {"background": 0, "lesion": 1},
                    "numTraining": num_cases, "file_ending": ".nii.gz"}
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    return folder
