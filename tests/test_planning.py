"""Planner decisions on fingerprints whose statistics are known by construction, and the full stage."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ldiff.io import load_json
from ldiff.networks import downsampling_factor
from ldiff.planning.planner import plan_experiment


SMALL_BRAINS = ((50.0, 60.0, 40.0), (40.0, 56.0, 50.0))


def toy_fingerprint(extents_mm=SMALL_BRAINS, spacings=((1.0, 1.0, 1.0), (1.0, 1.0, 3.0), (1.0, 1.0, 1.0)),
                    n_lesions=5, boundary_width_mm=1.6):
    cases = [{"spacing": list(spacings[i % len(spacings)]), "brain_bbox_extent_mm": list(extents_mm[i % len(extents_mm)])} for i in range(3)]
    summary = {"p5": 2.0, "p25": 3.0, "p50": 4.0, "p75": 6.0, "p95": 12.0, "min": 1.0, "max": 20.0, "mean": 5.0}
    return {
        "dataset_name": "Dataset900_Toy",
        "channel_names": ["T1w", "FLAIR"],
        "canonical_orientation": "RAS",
        "wm_channel": 0,
        "lesions": {
            "n_lesions": n_lesions,
            "lesions_per_case": [1, 2, 2] if n_lesions else [0, 0, 0],
            "extent_mm": {axis: dict(summary) if n_lesions else None for axis in "xyz"},
            "boundary_width_mm": boundary_width_mm if n_lesions else None,
        },
        "cases": cases,
    }


def test_target_spacing_is_median_and_slice_size_holds_largest_brain():
    plans = plan_experiment(toy_fingerprint(extents_mm=((150.0, 180.0, 140.0), (140.0, 170.0, 150.0))))
    assert plans["target_spacing"] == [1.0, 1.0, 1.0]
    for name in ("2d", "p3d"):
        config = plans["configurations"][name]
        factor = downsampling_factor(config["network"])
        height, width = config["slice_size"]
        assert height % factor == 0 and width % factor == 0
        # largest brain: 180 mm in y, 150 mm in x at 1 mm; padding adds less than one factor
        assert 180 <= height < 180 + factor and 150 <= width < 150 + factor
        # training patches: at most 128 px, a multiple of the downsampling, never larger than the slice
        assert config["patch_size"] == [128, 128]


def test_slice_size_follows_target_spacing_override():
    plans = plan_experiment(toy_fingerprint(), {"target_spacing": [2.0, 2.0, 2.0]})
    height, width = plans["configurations"]["2d"]["slice_size"]
    factor = downsampling_factor(plans["configurations"]["2d"]["network"])
    assert 30 <= height < 30 + factor and 25 <= width < 25 + factor
    assert plans["configurations"]["2d"]["patch_size"] == [height, width]  # small slices train whole
    assert plans["overrides"]["target_spacing"] == {"value": [2.0, 2.0, 2.0], "planned": [1.0, 1.0, 1.0]}
    assert plans["data_identifier"] == "ldiffPlans_2x2x2mm"


def test_overrides_are_recorded_and_unknown_keys_refused():
    plans = plan_experiment(toy_fingerprint(), {"2d.batch_size": 3, "p3d.stack_depth": 5, "mask_dilation.radius_voxels": 4})
    assert plans["configurations"]["2d"]["batch_size"] == 3
    assert plans["configurations"]["2d"]["batch_size_method"] == "override"
    assert plans["configurations"]["p3d"]["stack_depth"] == 5
    assert plans["mask_dilation"]["radius_voxels"] == 4 and plans["training_masks"]["dilation_radius_voxels"] == 4
    assert set(plans["overrides"]) == {"2d.batch_size", "p3d.stack_depth", "mask_dilation.radius_voxels"}
    with pytest.raises(ValueError, match="unknown override key"):
        plan_experiment(toy_fingerprint(), {"2d.batchsize": 3})


def test_dilation_radius_from_boundary_width():
    assert plan_experiment(toy_fingerprint(boundary_width_mm=1.6))["mask_dilation"]["radius_voxels"] == 2
    assert plan_experiment(toy_fingerprint(boundary_width_mm=0.3))["mask_dilation"]["radius_voxels"] == 1
    assert plan_experiment(toy_fingerprint(n_lesions=0))["mask_dilation"]["radius_voxels"] == 1


def test_healthy_dataset_uses_only_synthetic_masks():
    plans = plan_experiment(toy_fingerprint(n_lesions=0))
    assert plans["training_masks"]["real_shape_fraction"] == 0.0
    with_lesions = plan_experiment(toy_fingerprint())
    assert with_lesions["training_masks"]["real_shape_fraction"] == 0.5
    # half the 5th..95th percentile of in-plane extents (2 mm .. 12 mm in the toy statistics)
    assert with_lesions["training_masks"]["ellipsoid_radius_mm"] == [1.0, 6.0]


def test_cpu_batch_size_is_estimated_within_ram_target():
    small = plan_experiment(toy_fingerprint(), memory_target_gb=0.25)
    large = plan_experiment(toy_fingerprint(), memory_target_gb=8.0)
    for name in ("2d", "p3d"):
        assert small["configurations"][name]["batch_size_method"].startswith("estimated")
        assert small["configurations"][name]["batch_size"] <= large["configurations"][name]["batch_size"]
        used = small["configurations"][name]["memory_at_batch_size_gb"]
        assert used <= 0.25 or small["configurations"][name]["batch_size"] == 1
    assert large["configurations"]["2d"]["batch_size"] * 1 <= 16
    assert large["configurations"]["p3d"]["batch_size"] * large["configurations"]["p3d"]["stack_depth"] <= 16


def test_plans_are_json(tmp_path):
    plans = plan_experiment(toy_fingerprint())
    assert json.loads(json.dumps(plans)) == plans


def test_hand_made_nnunet_dataset_plans_and_preprocesses(data_roots):
    import subprocess
    import sys

    import SimpleITK as sitk

    from ldiff.preprocessing import restore_to_original
    from tests.conftest import make_nnunet_dataset

    raw = make_nnunet_dataset(data_roots["ldiff_raw"], num_cases=3)
    result = subprocess.run([sys.executable, "-m", "ldiff.cli.plan_and_preprocess", "-d", "042", "-np", "2"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    output = data_roots["ldiff_preprocessed"] / "Dataset042_HandMade"
    plans = load_json(output / "plans.json")
    fingerprint = load_json(output / "fingerprint.json")
    assert set(plans["configurations"]) == {"2d", "p3d"}
    assert fingerprint["lesions"]["n_lesions"] == 1 + 2 + 1  # cases alternate one and two lesions
    assert fingerprint["cases"][0]["mask_sources"]["wm_mask_source"] == "kmeans_channel_0"
    # The phantom's T1 lesion (450) is darker than NAWM (1000) by construction.
    t1 = fingerprint["intensity_median_of_cases"]["T1w"]
    flair = fingerprint["intensity_median_of_cases"]["FLAIR"]
    # Known by construction (tests/conftest.py phantom_case): T1 NAWM 1000, lesion 450; FLAIR NAWM 600,
    # lesion 1200; noise sd 20. Derived WM (k-means) may take a few border voxels, hence the tolerance.
    assert abs(t1["nawm"]["50"] - 1000) < 15 and abs(t1["lesion"]["50"] - 450) < 15
    assert abs(flair["nawm"]["50"] - 600) < 15 and abs(flair["lesion"]["50"] - 1200) < 15
    assert fingerprint["cases"][0]["spacing"] == pytest.approx([1.0, 1.0, 1.2])
    # each lesion is a ball of radius 3 voxels (123 voxels) deep in WM, on a 1 x 1 x 1.2 mm grid
    for case in fingerprint["cases"]:
        assert case["lesion_volume_ml"] == pytest.approx(case["lesion_count"] * 123 * 1.2 / 1000, rel=1e-5)
        # Each lesion against the WM 2-5 mm around it: T1w (450 - 1000) / 1000, FLAIR (1200 - 600) / 600.
        assert [row[0] for row in case["lesion_ring_contrasts"]] == pytest.approx([123 * 1.2] * case["lesion_count"])
        for _, t1_fraction, flair_fraction in case["lesion_ring_contrasts"]:
            assert t1_fraction == pytest.approx(-0.55, abs=0.01) and flair_fraction == pytest.approx(1.0, abs=0.03)
    by_volume = fingerprint["lesion_contrast_by_volume"]
    assert [entry["lesions"] for entry in by_volume["bins"]] == [0, 0, 4, 0, 0]  # 147.6 mm^3 in 100-300
    assert by_volume["bins"][2]["mean_contrast"]["T1w"] == pytest.approx(-0.55, abs=0.01)
    data = output / plans["data_identifier"]
    with np.load(data / "case_001.npz") as arrays:
        image, lesion = arrays["image"], arrays["lesion"]
    assert image.shape[0] == 2 and image.dtype == np.float32 and -1.0 <= image.min() and image.max() <= 1.0
    assert set(np.unique(lesion)) == {0, 1}
    properties = load_json(data / "case_001.json")
    restored = restore_to_original(lesion, properties, channel=None, is_mask=True)
    original = sitk.ReadImage(str(raw / "labelsTr" / "case_001.nii.gz"))
    assert restored.GetSize() == original.GetSize() and restored.GetSpacing() == original.GetSpacing()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(restored), sitk.GetArrayFromImage(original))
