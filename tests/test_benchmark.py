"""ldiff_benchmark: transplanted cases whose truth is known by construction, their scoring and report."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ldiff.errors import LdiffError
from ldiff.evaluation.benchmark.lesion_context import (distance_from, per_lesion_contrast, residual_contrast,
                                                        tissue_classes, WM_CLASS)
from ldiff.evaluation.benchmark.methods import parse_method
from ldiff.evaluation.benchmark.runner import score_channel
from ldiff.evaluation.benchmark.transplant import (RIM_BINS_MM, TransplantSettings, make_transplanted_case,
                                                   measure_appearance)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "open_ms_data"
SPACING = (1.0, 1.0, 1.0)
LESION_CENTRES = ((20, 24, 14), (20, 24, 34), (28, 30, 24))


def ball(shape, centre, radius):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2


def phantom(seed: int = 0, noise: float = 1.0):
    """A two-channel (T1-like, FLAIR-like) brain: CSF ventricle, WM core, GM shell; three real lesions.

    Returns (images (2, Z, Y, X), lesion mask). The lesions are darker on T1 (60 % of WM) and brighter
    on FLAIR (150 %), each with a one-voxel partial-volume rim half-way to the WM level.
    """
    shape = (40, 48, 48)
    centre = (20, 24, 24)
    brain = ball(shape, centre, 19)
    wm = ball(shape, centre, 15)
    ventricle = ball(shape, centre, 3)
    rng = np.random.default_rng(seed)
    t1 = np.where(brain, 70.0, 0.0)
    t1[wm] = 100.0
    t1[ventricle] = 30.0
    flair = np.where(brain, 90.0, 0.0)
    flair[wm] = 80.0
    flair[ventricle] = 20.0
    lesion = np.zeros(shape, bool)
    for position in LESION_CENTRES:
        lesion |= ball(shape, position, 2.2)
    rim = (distance_from(lesion, SPACING) <= 1.0) & ~lesion
    t1[lesion], flair[lesion] = 60.0, 120.0
    t1[rim], flair[rim] = 80.0, 100.0
    t1[brain] += noise * rng.standard_normal(int(brain.sum()))
    flair[brain] += noise * rng.standard_normal(int(brain.sum()))
    return np.stack([t1, flair]), lesion


SETTINGS = TransplantSettings(count=3, min_voxels=10, tissue_margin_mm=2.0, lesion_margin_mm=4.0, separation_mm=3.0)


def test_transplanted_case_truth_is_the_real_scan_and_changes_stay_near_the_shapes():
    images, lesion = phantom()
    case = make_transplanted_case(images, lesion, SPACING, np.random.default_rng(1), 0, None, SETTINGS)
    assert np.array_equal(case.truth, images)  # the truth is the original voxels, bit for bit
    assert case.placed >= 1 and case.mask.any()
    changed = np.any(case.images != case.truth, axis=0)
    near = distance_from(case.mask, SPACING) <= RIM_BINS_MM[-1]
    assert not np.any(changed & ~near)  # nothing changes farther than the rim
    assert np.all(changed[case.mask])
    # dark on T1, bright on FLAIR, as the real lesions
    assert case.images[0][case.mask].mean() < 0.8 * case.truth[0][case.mask].mean()
    assert case.images[1][case.mask].mean() > 1.2 * case.truth[1][case.mask].mean()


def test_shapes_land_only_in_white_matter_away_from_lesions_and_each_other():
    images, lesion = phantom()
    case = make_transplanted_case(images, lesion, SPACING, np.random.default_rng(2), 0, None, SETTINGS)
    classes = tissue_classes(images[0], lesion)
    wm_or_lesion = (classes == WM_CLASS) | lesion
    assert np.all(distance_from(~wm_or_lesion, SPACING)[case.mask] >= SETTINGS.tissue_margin_mm)
    assert np.all(distance_from(lesion, SPACING)[case.mask] >= SETTINGS.lesion_margin_mm)
    from ldiff.masks import label_components

    _, components = label_components(case.mask)
    assert components == case.placed  # separate shapes stay separate


def test_transplanting_is_deterministic_for_a_seed():
    images, lesion = phantom()
    first = make_transplanted_case(images, lesion, SPACING, np.random.default_rng(5), 0, None, SETTINGS)
    again = make_transplanted_case(images, lesion, SPACING, np.random.default_rng(5), 0, None, SETTINGS)
    other = make_transplanted_case(images, lesion, SPACING, np.random.default_rng(6), 0, None, SETTINGS)
    assert np.array_equal(first.images, again.images) and np.array_equal(first.mask, again.mask)
    assert not np.array_equal(first.mask, other.mask)


def test_appearance_measures_the_lesion_ratio_and_the_rim_by_construction():
    images, lesion = phantom(noise=0.0)
    classes = tissue_classes(images[0], lesion)
    nawm = (classes == WM_CLASS) & ~lesion
    t1 = measure_appearance(images[0], lesion, nawm, classes, SPACING)
    flair = measure_appearance(images[1], lesion, nawm, classes, SPACING)
    assert t1.ratio_quantiles == pytest.approx(np.full(101, 0.6))
    assert flair.ratio_quantiles == pytest.approx(np.full(101, 1.5))
    assert t1.hypointense and not flair.hypointense
    # the one-voxel rim is half-way: weight 0.5 in the first millimetre, nothing beyond
    assert t1.rim_weight[0] == pytest.approx(0.5) and flair.rim_weight[0] == pytest.approx(0.5)
    assert t1.rim_weight[1:] == pytest.approx([0.0, 0.0])


def test_a_lesion_next_to_grey_matter_does_not_widen_the_measured_rim():
    images, lesion = phantom(noise=0.0)
    cortex_side = ball(lesion.shape, (20, 24, 37), 2.2)  # reaches the WM border at x = 39
    images[0][cortex_side], images[1][cortex_side] = 60.0, 120.0
    lesion |= cortex_side
    classes = tissue_classes(images[0], lesion)
    nawm = (classes == WM_CLASS) & ~lesion
    t1 = measure_appearance(images[0], lesion, nawm, classes, SPACING)
    # the grey matter 2-3 mm from that lesion would read as rim; only the lesions inside WM measure it
    assert t1.rim_weight[1:] == pytest.approx([0.0, 0.0], abs=0.02)


def test_residual_contrast_is_known_by_construction():
    images, lesion = phantom(noise=0.0)
    classes = tissue_classes(images[0], lesion)
    nawm = (classes == WM_CLASS) & ~lesion
    region = distance_from(lesion, SPACING) <= 1.0  # the lesions and their rim
    filled = images[0].copy()
    filled[region] = 90.0
    summary = residual_contrast(filled, region, nawm, SPACING)
    assert len(summary.per_lesion) == 3
    assert summary.weighted_signed == pytest.approx(-10.0) and summary.weighted_abs == pytest.approx(10.0)
    filled[region] = 100.0
    assert residual_contrast(filled, region, nawm, SPACING).weighted_abs == pytest.approx(0.0)


def test_per_lesion_contrast_and_the_tissue_beside_each_lesion_are_known_by_construction():
    """WM (100) with a grey-matter slab (70) at x < 10: lesion A deep in WM filled at 90 (-10 %, nothing but WM
    beside it), lesion B against the slab filled at 110 (+10 %, part of its surroundings grey matter); the
    per-lesion rows agree with the volume-weighted summary."""
    shape = (30, 30, 40)
    image = np.full(shape, 100.0)
    image[:, :, :10] = 70.0
    classes = np.full(shape, WM_CLASS, np.uint8)
    classes[:, :, :10] = 2
    lesion_a, lesion_b = ball(shape, (15, 15, 28), 2.5), ball(shape, (15, 15, 12), 2.5)
    region = lesion_a | lesion_b
    nawm = (classes == WM_CLASS) & ~region
    filled = image.copy()
    filled[lesion_a], filled[lesion_b] = 90.0, 110.0
    rows = sorted(per_lesion_contrast(filled, region, nawm, classes, SPACING), key=lambda row: row["centre_zyx"][2])
    assert [row["centre_zyx"] for row in rows] == [[15, 15, 12], [15, 15, 28]]
    assert [row["voxels"] for row in rows] == [int(lesion_b.sum()), int(lesion_a.sum())]
    assert rows[0]["contrast_pct"] == pytest.approx(10.0) and rows[1]["contrast_pct"] == pytest.approx(-10.0)
    assert rows[1]["non_wm_beside_pct"] == 0.0 and 5.0 < rows[0]["non_wm_beside_pct"] < 50.0
    summary = residual_contrast(filled, region, nawm, SPACING)
    weights = [row["voxels"] for row in rows]
    assert summary.weighted_abs == pytest.approx(np.average([abs(row["contrast_pct"]) for row in rows], weights=weights))


def test_wm_fraction_counts_the_filled_voxels_the_scans_own_split_calls_wm():
    from ldiff.evaluation.benchmark.lesion_context import tissue_centres, wm_fraction

    images, lesion = phantom(noise=0.0)
    region = distance_from(lesion, SPACING) <= 1.0
    centres = tissue_centres(images[0], region, images[0] > 0)
    filled = images[0].copy()
    filled[region] = 100.0  # the WM level
    assert wm_fraction(filled, region, centres) == 1.0
    filled[region] = 70.0  # the GM level
    assert wm_fraction(filled, region, centres) == 0.0
    assert wm_fraction(images[0], region, centres) == 0.0  # the unfilled lesions (60) and rim (80) are not WM


def test_a_perfect_filler_scores_infinite_psnr_and_the_painted_input_does_not():
    images, lesion = phantom()
    case = make_transplanted_case(images, lesion, SPACING, np.random.default_rng(1), 0, None, SETTINGS)
    perfect = score_channel(case.truth[0], case.truth[0], case.mask, lpips=False)
    copy = score_channel(case.images[0], case.truth[0], case.mask, lpips=False)
    assert math.isinf(perfect["thesis_psnr_in"]) and math.isinf(perfect["brats_psnr_in"])
    assert perfect["thesis_ssim_in"] == pytest.approx(1.0)
    assert math.isfinite(copy["thesis_psnr_in"]) and copy["thesis_psnr_in"] < 40
    assert copy["thesis_ssim_in"] < 0.99
    assert perfect["level_error_pct"] == 0.0
    assert copy["level_error_pct"] < 0  # the painted T1 lesions are darker than the tissue they replaced


def test_the_level_error_is_the_regions_mean_against_the_truths_in_percent():
    images, lesion = phantom()
    case = make_transplanted_case(images, lesion, SPACING, np.random.default_rng(1), 0, None, SETTINGS)
    truth = case.truth[0]
    brighter = truth.copy()
    brighter[case.mask] *= 1.05  # 5 % too bright inside, untouched outside (not scored)
    brighter[~case.mask] = 0.0
    assert score_channel(brighter, truth, case.mask, lpips=False)["level_error_pct"] == pytest.approx(5.0, abs=1e-9)
    darker = truth - 0.02 * float(truth[case.mask].mean())  # the region's mean 2 % too low
    assert score_channel(darker, truth, case.mask, lpips=False)["level_error_pct"] == pytest.approx(-2.0, abs=1e-9)


def test_no_room_and_no_shapes_are_one_sentence_errors():
    images, lesion = phantom()
    huge = TransplantSettings(count=3, min_voxels=10, tissue_margin_mm=30.0)
    with pytest.raises(ValueError, match="no room in WM"):
        make_transplanted_case(images, lesion, SPACING, np.random.default_rng(0), 0, None, huge)
    with pytest.raises(ValueError, match="no lesion shape"):
        make_transplanted_case(images, np.zeros_like(lesion), SPACING, np.random.default_rng(0), 0, None, SETTINGS)


def test_method_specs_parse_and_bad_ones_are_refused():
    assert parse_method("biharmonic").classic == "biharmonic"
    spec = parse_method("ldiff:some/model@sampler=dpm_solver,steps=10,num_samples=4")
    assert spec.is_ldiff and spec.model == "some/model"
    assert dict(spec.sampling) == {"sampler": "dpm_solver", "steps": 10, "num_samples": 4}
    with pytest.raises(LdiffError, match="unknown method"):
        parse_method("fsl")
    with pytest.raises(LdiffError, match="key=value"):
        parse_method("ldiff@colour=blue")


def _write(array: np.ndarray, path: Path) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path


def _run_cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ldiff.cli.benchmark", *arguments], capture_output=True, text=True,
                          timeout=600)


def test_cli_writes_the_report_and_is_deterministic(tmp_path):
    images, lesion = phantom()
    t1 = _write(images[0].astype(np.float32), tmp_path / "T1.nii.gz")
    flair = _write(images[1].astype(np.float32), tmp_path / "FLAIR.nii.gz")
    mask = _write(lesion.astype(np.uint8), tmp_path / "lesions.nii.gz")
    runs = []
    for name in ("first", "second"):
        result = _run_cli("-i", str(t1), str(flair), "--mask", str(mask), "--channel-names", "T1w", "FLAIR",
                          "-o", str(tmp_path / name), "--methods", "biharmonic", "ringmedian", "--count", "3",
                          "--dilate", "1", "--no-lpips")
        assert result.returncode == 0, result.stderr
        runs.append(json.loads((tmp_path / name / "benchmark.json").read_text()))
    for produced in ("benchmark.md", "benchmark.csv", "benchmark.png", "real_lesions.csv", "real_lesions_per_lesion.csv"):
        assert (tmp_path / "first" / produced).is_file()
    assert list((tmp_path / "first").glob("preview_*.png"))
    strip = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    assert strip(runs[0]["rows"]) == strip(runs[1]["rows"])
    methods = {(row["method"], row["channel"]) for row in runs[0]["rows"]}
    assert methods == {(m, c) for m in ("input", "biharmonic", "ringmedian") for c in ("T1w", "FLAIR")}
    real = {row["method"]: row for row in runs[0]["real_lesion_rows"] if row["channel"] == "T1w"}
    # the unfilled lesions are dark; a fill brings them close to the surrounding WM
    assert real["input"]["residual_contrast_signed_pct"] < -15
    assert abs(real["ringmedian"]["residual_contrast_signed_pct"]) < 5
    unfilled = [row for row in runs[0]["real_lesion_per_lesion_rows"] if row["method"] == "input" and row["channel"] == "T1w"]
    assert len(unfilled) == len(LESION_CENTRES) and all(row["contrast_pct"] < -10 for row in unfilled)


def test_repeats_run_one_benchmark_per_seed_and_summarise_their_mean(tmp_path):
    images, lesion = phantom()
    t1 = _write(images[0].astype(np.float32), tmp_path / "T1.nii.gz")
    mask = _write(lesion.astype(np.uint8), tmp_path / "lesions.nii.gz")
    common = ["-i", str(t1), "--mask", str(mask), "--channel-names", "T1w", "--methods", "biharmonic", "ringmedian",
              "--count", "3", "--dilate", "1", "--no-lpips"]
    result = _run_cli(*common, "-o", str(tmp_path / "seeds"), "--seed", "4", "--repeats", "2")
    assert result.returncode == 0, result.stderr
    runs = [json.loads((tmp_path / "seeds" / f"seed_{seed}" / "benchmark.json").read_text()) for seed in (4, 5)]
    assert runs[0]["real_lesion_rows"] and not runs[1]["real_lesion_rows"]  # the real lesions once
    assert runs[0]["rows"] != runs[1]["rows"]  # another draw of shapes
    single = _run_cli(*common, "-o", str(tmp_path / "single"), "--seed", "5", "--no-real-lesions")
    assert single.returncode == 0, single.stderr
    strip = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    assert strip(json.loads((tmp_path / "single" / "benchmark.json").read_text())["rows"]) == strip(runs[1]["rows"])
    summary = {row["method"]: row for row in json.loads((tmp_path / "seeds" / "seeds.json").read_text())["summary"]}
    psnr = {m: [next(r["thesis_psnr_in"] for r in run["summary"] if r["method"] == m) for run in runs]
            for m in ("biharmonic", "ringmedian")}
    assert summary["biharmonic"]["thesis_psnr_in_mean"] == pytest.approx(np.mean(psnr["biharmonic"]))
    assert summary["biharmonic"]["thesis_psnr_in_std"] == pytest.approx(np.std(psnr["biharmonic"]))
    leads = np.subtract(psnr["biharmonic"], psnr["ringmedian"])
    assert summary["biharmonic"]["psnr_lead_over_best_other_classic_mean"] == pytest.approx(leads.mean())
    assert summary["ringmedian"]["psnr_lead_over_best_other_classic_worst"] == pytest.approx((-leads).min())
    assert (tmp_path / "seeds" / "seeds.md").read_text().count("| biharmonic | T1w |") == 1
    refused = _run_cli(*common, "-o", str(tmp_path / "bad"), "--repeats", "0")
    assert refused.returncode != 0 and "--repeats must be at least 1" in refused.stderr
    assert not (tmp_path / "bad").exists()


def test_cli_refuses_grids_that_differ_and_writes_nothing(tmp_path):
    images, lesion = phantom()
    t1 = _write(images[0].astype(np.float32), tmp_path / "T1.nii.gz")
    mask = _write(lesion[:, :, :40].astype(np.uint8), tmp_path / "lesions.nii.gz")
    result = _run_cli("-i", str(t1), "--mask", str(mask), "-o", str(tmp_path / "out"), "--methods", "biharmonic")
    assert result.returncode == 1
    assert "grid differs" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="the real MS data (../shared/data) is not present")
def test_real_patient_shapes_land_in_its_white_matter_and_look_like_its_lesions():
    folder = SHARED_DATA / "patient07"
    images = np.stack([sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f))).astype(np.float64)
                       for f in ("T1.nii.gz", "FLAIR.nii.gz")])
    lesion = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "lesion_mask.nii.gz"))) > 0
    settings = TransplantSettings(count=5)
    case = make_transplanted_case(images, lesion, SPACING, np.random.default_rng(0), 0, None, settings)
    assert case.placed == 5
    classes = tissue_classes(images[0], lesion)
    assert np.all(classes[case.mask] == WM_CLASS)
    assert np.all(distance_from(lesion, SPACING)[case.mask] >= settings.lesion_margin_mm)
    t1, flair = case.appearances
    assert t1.hypointense and not flair.hypointense
    assert np.array_equal(case.truth, images)


def test_the_scored_region_defaults_to_the_models_own_dilation():
    from ldiff.evaluation.benchmark.methods import MethodRunner
    from ldiff.evaluation.benchmark.runner import resolve_dilation

    demo = Path(__file__).resolve().parents[1] / "ldiff" / "demo_models" / "t1_cond_fill"
    runner = MethodRunner(parse_method(f"ldiff:{demo}"), device="cpu")
    assert resolve_dilation([runner], None, 1, (1.0, 1.0, 1.0)) == pytest.approx(2.0)  # its plan: 2 mm
    assert resolve_dilation([runner], 1, 1, (0.8, 0.8, 1.2)) == pytest.approx(0.8)  # --dilate counts finest voxels
    # The result files name the weights that made the numbers: the checkpoint's SHA-256 and the sampling.
    import hashlib

    described = runner.describe()
    assert described["checkpoint_sha256"] == hashlib.sha256((demo / "checkpoint_final.pth").read_bytes()).hexdigest()
    # the shipped model is trained on all three views, so it fills along each with one draw
    assert described["sampling"] == ("dpm_solver 3 steps, one draw per crop in each of 3 views (axial, coronal, sagittal), "
                                     "warm start: smooth fill noised to t0=250, input standardised to the training histogram")


def test_plot_labels_name_the_model_and_its_settings():
    from ldiff.evaluation.benchmark.report import short_label

    assert short_label("ldiff:results/Dataset019_P/cond_fill__2d/fold_all@steps=3,num_samples=4") == \
        "ldiff Dataset019_P\nsteps=3, num_samples=4"
    assert short_label("ldiff:ldiff/demo_models/t1_cond_fill") == "ldiff t1_cond_fill"
    assert short_label("ldiff") == "ldiff" and short_label("patch") == "patch"
