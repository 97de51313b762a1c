"""ldiff_evaluate on tiny synthetic NIfTI folders: numbers against a direct computation, files, errors."""
from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from skimage.metrics import structural_similarity

from ldiff.cli import evaluate as evaluate_cli
from ldiff.errors import LdiffError
from ldiff.evaluation.evaluate import evaluate_folder, format_table
from ldiff.evaluation.metrics import lpips_around_mask

SHAPE = (24, 32, 32)
CASES = ("case_a", "case_b")
CHANNELS = ("0000", "0001")


def write(array: np.ndarray, path: Path, spacing=(1.0, 1.0, 1.0)) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def make_folders(tmp_path: Path, channels=CHANNELS, cases=CASES, identical=False) -> tuple[Path, Path, Path, dict]:
    """Reference, prediction and mask folders; returns them and the arrays written, per case."""
    rng = np.random.default_rng(7)
    folders = [tmp_path / name for name in ("reference", "prediction", "masks")]
    arrays = {}
    for index, case in enumerate(cases):
        mask = np.zeros(SHAPE, np.uint8)
        mask[9 + index : 14 + index, 12:18, 11 + 2 * index : 19 + 2 * index] = 1
        arrays[case] = {"mask": mask.astype(bool)}
        write(mask, folders[2] / f"{case}.nii.gz")
        for channel in channels:
            # Smooth structure plus noise, so that SSIM has something to compare.
            reference = 100 + 2000 * ndimage.gaussian_filter(rng.normal(size=SHAPE), 1.5) + rng.normal(0, 5, SHAPE)
            reference = reference.astype(np.float32)
            error = mask * rng.normal(0, 40, SHAPE) + rng.normal(0, 1, SHAPE)
            prediction = reference if identical else (reference + error).astype(np.float32)
            write(reference, folders[0] / f"{case}_{channel}.nii.gz")
            write(prediction, folders[1] / f"{case}_{channel}.nii.gz")
            arrays[case][channel] = (prediction.astype(np.float64), reference.astype(np.float64))
    return *folders, arrays


def thesis_by_hand(prediction: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """The thesis protocol written out: [-1, 1] from the reference's min/max, skimage SSIM per axial slice."""
    low, high = reference.min(), reference.max()
    scaled_prediction = np.clip(2 * (prediction - low) / (high - low) - 1, -1, 1)
    scaled_reference = np.clip(2 * (reference - low) / (high - low) - 1, -1, 1)
    ssim_map = np.stack([
        structural_similarity(scaled_reference[z], scaled_prediction[z], data_range=2.0, win_size=7, full=True)[1]
        for z in range(reference.shape[0])
    ])
    squared_error = (scaled_prediction - scaled_reference) ** 2
    mse_in = squared_error[mask].mean()
    return {"ssim_in": ssim_map[mask].mean(), "mse_in": mse_in, "psnr_in": 10 * np.log10(4 / mse_in),
            "ssim_full": ssim_map.mean(), "mse_full": squared_error.mean()}


def brats_mse_by_hand(prediction: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """BraTS 2023: mask, clip to percentiles of the voided reference, map to [0, 1], MSE in the mask."""
    low, high = np.percentile(np.where(mask, 0, reference), [0.5, 99.5])
    low = max(low, 0.0)
    normalise = lambda volume: (np.clip(volume * mask, low, high) - low) / (high - low)  # noqa: E731
    return float(((normalise(prediction) - normalise(reference))[mask] ** 2).mean())


def run_cli(*arguments) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ldiff.cli.evaluate", *map(str, arguments)],
                          capture_output=True, text=True, timeout=120)


def test_numbers_equal_a_direct_computation_in_both_protocols(tmp_path):
    reference, prediction, masks, arrays = make_folders(tmp_path)
    result = evaluate_folder(reference, prediction, masks, lpips=False)
    assert [(row["case"], row["channel"]) for row in result["cases"]] == [(c, ch) for c in CASES for ch in CHANNELS]
    for row in result["cases"]:
        mask = arrays[row["case"]]["mask"]
        predicted, truth = arrays[row["case"]][row["channel"]]
        assert row["voxels_in"] == mask.sum()
        for key, expected in thesis_by_hand(predicted, truth, mask).items():
            assert row["thesis"][key] == pytest.approx(expected, abs=1e-6), key
        assert row["thesis"]["mse_in"] > row["thesis"]["mse_out"] > 0  # the error sits in the lesion
        brats_mse = brats_mse_by_hand(predicted, truth, mask)
        assert row["brats2023"]["mse_in"] == pytest.approx(brats_mse, abs=1e-9)
        assert row["brats2023"]["psnr_in"] == pytest.approx(10 * np.log10(1 / brats_mse), abs=1e-6)
        assert "lpips_crops" not in row["thesis"]


def test_identical_images_give_zero_mse_and_infinite_psnr(tmp_path):
    reference, prediction, masks, _ = make_folders(tmp_path, channels=("0000",), identical=True)
    result = evaluate_folder(reference, prediction, masks, tmp_path / "out" / "summary.json", lpips=False)
    for row in result["cases"]:
        for protocol in ("thesis", "brats2023"):
            assert row[protocol]["mse_in"] == 0.0 and row[protocol]["psnr_in"] == math.inf
            assert row[protocol]["ssim_in"] == pytest.approx(1.0)
    assert result["aggregate"]["thesis"]["psnr_in"]["median"] == math.inf
    written = json.loads((tmp_path / "out" / "summary.json").read_text())  # strict JSON: inf became null
    assert written["cases"][0]["thesis"]["psnr_in"] is None and written["cases"][0]["thesis"]["mse_in"] == 0.0
    assert written["aggregate"]["brats2023"]["psnr_in"]["mean"] is None


def test_aggregates_equal_numpy_statistics_overall_and_per_channel(tmp_path):
    reference, prediction, masks, _ = make_folders(tmp_path)
    result = evaluate_folder(reference, prediction, masks, lpips=False)
    groups = {"all": (result["aggregate"], result["cases"])}
    for channel in CHANNELS:
        rows = [row for row in result["cases"] if row["channel"] == channel]
        groups[channel] = (result["aggregate_by_channel"][channel], rows)
    for aggregate, rows in groups.values():
        for protocol, metric in (("thesis", "psnr_in"), ("thesis", "ssim_out"), ("brats2023", "ssim_in")):
            values = np.array([row[protocol][metric] for row in rows])
            summary = aggregate[protocol][metric]
            assert summary["n"] == len(rows)
            assert summary["mean"] == pytest.approx(np.mean(values), rel=1e-12)
            assert summary["std"] == pytest.approx(np.std(values), rel=1e-12)
            assert summary["median"] == pytest.approx(np.median(values), rel=1e-12)
    assert len(groups["0000"][1]) == 2 and result["aggregate"]["thesis"]["psnr_in"]["n"] == 4
    assert "intensity_low" not in result["aggregate"]["brats2023"]


def test_json_and_csv_are_written_side_by_side_and_agree(tmp_path):
    reference, prediction, masks, _ = make_folders(tmp_path)
    output = tmp_path / "results" / "method.json"
    result = evaluate_folder(reference, prediction, masks, output, lpips=False)
    written = json.loads(output.read_text())
    assert set(written["protocols"]) >= {"thesis", "brats2023"}
    assert written["inputs"]["reference"] == str(reference) and written["inputs"]["masks"] == str(masks)
    expected_mean = result["aggregate"]["thesis"]["psnr_in"]["mean"]
    assert written["aggregate"]["thesis"]["psnr_in"]["mean"] == pytest.approx(expected_mean)
    with open(tmp_path / "results" / "method.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(CASES) * len(CHANNELS)
    for row, entry in zip(rows, written["cases"]):
        assert (row["case"], row["channel"]) == (entry["case"], entry["channel"])
        assert float(row["thesis_psnr_in"]) == pytest.approx(entry["thesis"]["psnr_in"], rel=1e-12)
        assert float(row["brats2023_ssim_full"]) == pytest.approx(entry["brats2023"]["ssim_full"], rel=1e-12)
    assert sorted(path.name for path in output.parent.iterdir()) == ["method.csv", "method.json"]  # no temp files


def test_dilation_enlarges_the_evaluated_region(tmp_path):
    reference, prediction, masks, arrays = make_folders(tmp_path, channels=("0000",))
    plain = evaluate_folder(reference, prediction, masks, lpips=False)
    ball = evaluate_folder(reference, prediction, masks, dilate=1, lpips=False)
    cube = evaluate_folder(reference, prediction, masks, dilate=1, dilate_shape="cube", lpips=False)
    for index, case in enumerate(CASES):
        mask = arrays[case]["mask"]
        face_neighbours = ndimage.binary_dilation(mask, ndimage.generate_binary_structure(3, 1))
        full_cube = ndimage.binary_dilation(mask, np.ones((3, 3, 3), bool))
        assert plain["cases"][index]["voxels_in"] == mask.sum()
        assert ball["cases"][index]["voxels_in"] == face_neighbours.sum() > mask.sum()
        assert cube["cases"][index]["voxels_in"] == full_cube.sum() > face_neighbours.sum()
        # The error sits in the lesion, so a ring of almost exact voxels lowers the in-mask MSE.
        assert ball["cases"][index]["thesis"]["mse_in"] < plain["cases"][index]["thesis"]["mse_in"]
        predicted, truth = arrays[case]["0000"]
        expected = thesis_by_hand(predicted, truth, face_neighbours)["ssim_in"]
        assert ball["cases"][index]["thesis"]["ssim_in"] == pytest.approx(expected, abs=1e-6)


def test_empty_mask_is_skipped_with_a_warning_and_extra_references_are_listed(tmp_path, caplog):
    reference, prediction, masks, _ = make_folders(tmp_path, channels=("0000",))
    write(np.zeros(SHAPE, np.uint8), masks / "case_b.nii.gz")
    shutil.copy(reference / "case_a_0000.nii.gz", reference / "case_z_0000.nii.gz")
    with caplog.at_level(logging.WARNING, logger="ldiff"):
        result = evaluate_folder(reference, prediction, masks, lpips=False)
    assert [row["case"] for row in result["cases"]] == ["case_a"] and result["num_cases"] == 1
    assert result["skipped"] == [{"case": "case_b", "mask": str(masks / "case_b.nii.gz"), "reason": "empty mask"}]
    assert result["unmatched_references"] == [str(reference / "case_z_0000.nii.gz")]
    assert "case_b.nii.gz: the mask is empty" in caplog.text and "no prediction" in caplog.text
    write(np.zeros(SHAPE, np.uint8), masks / "case_a.nii.gz")
    with pytest.raises(LdiffError, match="every mask is empty"):
        evaluate_folder(reference, prediction, masks, lpips=False)


def test_bad_inputs_give_one_sentence_naming_the_file(tmp_path):
    reference, prediction, masks, arrays = make_folders(tmp_path)
    predicted, _ = arrays["case_b"]["0001"]
    bad_prediction = write(predicted.astype(np.float32), prediction / "case_b_0001.nii.gz", spacing=(1.0, 1.0, 2.0))
    with pytest.raises(LdiffError) as error:
        evaluate_folder(reference, prediction, masks, lpips=False)
    assert str(bad_prediction) in str(error.value) and "grid differs" in str(error.value)
    assert "\n" not in str(error.value)

    with_nan = predicted.astype(np.float32)
    with_nan[0, 0, 0] = np.nan
    write(with_nan, bad_prediction)
    with pytest.raises(LdiffError, match=r"case_b_0001\.nii\.gz: contains 1 NaN"):
        evaluate_folder(reference, prediction, masks, lpips=False)

    write(predicted.astype(np.float32), bad_prediction)
    write(arrays["case_a"]["mask"].astype(np.uint8) * 2, masks / "case_a.nii.gz")
    with pytest.raises(LdiffError, match=r"case_a\.nii\.gz: mask is not binary"):
        evaluate_folder(reference, prediction, masks, lpips=False)

    write(arrays["case_a"]["mask"].astype(np.uint8), masks / "case_a.nii.gz")
    (reference / "case_b_0000.nii.gz").unlink()
    with pytest.raises(LdiffError) as error:
        evaluate_folder(reference, prediction, masks, tmp_path / "summary.json", lpips=False)
    assert str(reference / "case_b_0000.nii.gz") in str(error.value) and "not found" in str(error.value)
    assert not (tmp_path / "summary.json").exists()


def test_cli_error_is_one_line_with_exit_code_1(tmp_path):
    reference, prediction, masks, _ = make_folders(tmp_path, channels=("0000",))
    (masks / "case_a.nii.gz").unlink()
    result = run_cli("-r", reference, "-p", prediction, "-m", masks, "--no-lpips", "-np", "1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"ldiff: error: {masks / 'case_a.nii.gz'}: mask of case case_a not found."]
    assert not (prediction / "summary.json").exists()


def test_cli_prints_the_table_and_writes_the_default_summary(tmp_path, monkeypatch, capsys):
    reference, prediction, masks, _ = make_folders(tmp_path, channels=("0000",))
    monkeypatch.setattr(sys, "argv", ["ldiff_evaluate", "-r", str(reference), "-p", str(prediction),
                                      "-m", str(masks), "--no-lpips", "-np", "1"])
    with pytest.raises(SystemExit) as exit_status:
        evaluate_cli.main()
    assert exit_status.value.code == 0
    printed = capsys.readouterr().out.splitlines()
    assert "thesis psnr_in" in printed[0] and "brats2023 ssim_in" in printed[0] and "lpips" not in printed[0]
    assert [line.split("|")[1].strip() for line in printed[2:5]] == ["case_a", "case_b", "mean"]
    assert (prediction / "summary.json").is_file() and (prediction / "summary.csv").is_file()


def test_lpips_is_zero_for_identical_images_and_matches_the_metric_on_single_files(tmp_path):
    reference, prediction, masks, arrays = make_folders(tmp_path, channels=("0000",), cases=("case_a",))
    single = [folder / name for folder, name in zip((reference, prediction, masks),
                                                       ("case_a_0000.nii.gz", "case_a_0000.nii.gz", "case_a.nii.gz"))]
    result = evaluate_folder(*single, lpips=True)
    predicted, truth = arrays["case_a"]["0000"]
    mask = arrays["case_a"]["mask"]
    expected = lpips_around_mask(predicted, truth, mask, intensity_range=(truth.min(), truth.max()))
    assert result["cases"][0]["case"] == "case_a"
    assert result["cases"][0]["thesis"]["lpips_crops"] == pytest.approx(expected)
    assert expected > 1e-4
    same = evaluate_folder(single[0], single[0], single[2], lpips=True)
    assert same["cases"][0]["thesis"]["lpips_crops"] == pytest.approx(0.0, abs=1e-6)


def test_format_table_is_fixed_width_with_aligned_cells():
    rows = [{"method": "nawm", "psnr": 31.23456, "n": 3}, ["ldiff", math.inf, None]]
    table = format_table(rows, ["method", "psnr", "n"])
    lines = table.splitlines()
    assert len({len(line) for line in lines}) == 1 and set(lines[1]) == {"|", "-"}
    assert lines[2] == "| nawm   | 31.23 | 3 |" and lines[3] == "| ldiff  |   inf | - |"


def test_each_image_is_read_once_and_its_grid_checked_from_the_header_first(tmp_path, monkeypatch):
    from ldiff.evaluation import evaluate as module

    reference, prediction, masks, _ = make_folders(tmp_path)
    reads: list[str] = []
    real_read = module.read_image
    monkeypatch.setattr(module, "read_image", lambda path: reads.append(str(path)) or real_read(path))
    evaluate_folder(reference, prediction, masks, lpips=False)
    image_reads = [path for path in reads if Path(path).parent != masks]
    assert len(image_reads) == len(set(image_reads)) == 2 * len(CHANNELS) * len(CASES)
