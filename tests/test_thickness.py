"""ldiff_evaluate_thickness: comparisons with known answers, regions at known MNI points, the study's
caching and failure handling with a thickness tool of known output, and ANTs DiReCT on shells of
known thickness (when antspyx is installed)."""
from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ldiff.errors import LdiffError
from ldiff.evaluation.thickness.compare import compare_methods, percent_difference, thesis_change_percent
from ldiff.evaluation.thickness.regions import REGION_NAMES, sector_of_mni, sectors_from_world, world_ras_coordinates
from ldiff.evaluation.thickness.run import evaluate_thickness
from ldiff.evaluation.thickness.tools import CSF, GM, WM, ThicknessResult
from ldiff.io import load_json
from ldiff.io.images import Geometry


def test_thesis_change_is_half_the_percent_difference_and_symmetric():
    assert thesis_change_percent(3.0, 1.0) == pytest.approx(50.0)
    assert thesis_change_percent(1.0, 3.0) == pytest.approx(50.0)
    assert thesis_change_percent(2.5, 2.5) == 0.0
    # For small changes the thesis measure is half the plain percent difference.
    assert thesis_change_percent(2.02, 2.0) == pytest.approx(percent_difference(2.02, 2.0) / 2, rel=0.01)
    assert percent_difference(1.8, 2.0) == pytest.approx(-10.0)


def _tables(values: dict[str, list[float]]) -> dict:
    return {method: {f"c{i}": {"global": v} for i, v in enumerate(per_case)} for method, per_case in values.items()}


def test_bias_and_share_of_bias_removed_by_construction():
    # Truth 2.50 and 2.40 mm; lesions make the unfilled scans 0.20 and 0.10 mm thicker.
    tables = _tables({"unfilled": [2.70, 2.50], "good": [2.55, 2.425], "worse": [2.95, 2.40],
                      "same": [2.70, 2.50], "truth": [2.50, 2.40]})
    rows = {r["method"]: r for r in compare_methods(tables, "unfilled", "truth")}
    assert set(rows) == {"unfilled", "good", "worse", "same"}
    assert rows["unfilled"]["bias_mm"] == pytest.approx(0.15)
    assert rows["unfilled"]["bias_removed"] == pytest.approx(0.0)
    # |0.05| + |0.025| over |0.20| + |0.10| = 0.25 of the bias is left.
    assert rows["good"]["bias_removed"] == pytest.approx(0.75)
    assert rows["good"]["bias_mm"] == pytest.approx(0.0375)
    # 0.45 + 0 over 0.30: the filler added bias.
    assert rows["worse"]["bias_removed"] == pytest.approx(-0.5)
    assert rows["same"]["thesis_change_pct"] == 0.0
    assert rows["same"]["percent_difference_pct"] == 0.0
    expected = np.mean([thesis_change_percent(2.55, 2.70), thesis_change_percent(2.425, 2.50)])
    assert rows["good"]["thesis_change_pct"] == pytest.approx(expected)


def test_comparison_uses_only_cases_every_method_has_and_skips_nan():
    tables = _tables({"unfilled": [2.0, 3.0], "filled": [2.2, float("nan")]})
    del tables["unfilled"]["c1"]
    rows = compare_methods(tables, "unfilled")
    filled = next(r for r in rows if r["method"] == "filled")
    assert filled["cases"] == 1 and filled["percent_difference_pct"] == pytest.approx(10.0)
    assert "bias_mm" not in filled


@pytest.mark.parametrize("point, region", [((-30, 30, 30), "left frontal"), ((40, -50, 40), "right parietal"),
                                           ((-50, -20, -20), "left temporal"), ((10, -90, 0), "right occipital"),
                                           ((30, 40, -20), "right frontal"), ((-5, -75, 20), "left occipital")])
def test_sectors_at_known_mni_points(point, region):
    label = int(sector_of_mni(*(np.array([v]) for v in point))[0])
    assert REGION_NAMES[label - 1] == region


def test_world_coordinates_follow_the_lps_header():
    # The header of FSL's MNI grid (open_ms_data): LPS origin (-90, 126, -72); index i runs towards
    # LPS +x (patient left), i.e. towards RAS -x; index j towards LPS -y (anterior).
    geometry = Geometry((182, 218, 182), (1.0, 1.0, 1.0), (-90.0, 126.0, -72.0), (1, 0, 0, 0, -1, 0, 0, 0, 1))
    x, y, z = world_ras_coordinates(geometry)
    # Voxel (i, j, k) = (90, 126, 72) is the MNI origin; (0, 0, 0) is at RAS (90, -126, -72).
    assert (x[72, 126, 90], y[72, 126, 90], z[72, 126, 90]) == (0.0, 0.0, 0.0)
    assert (x[0, 0, 0], y[0, 0, 0], z[0, 0, 0]) == (90.0, -126.0, -72.0)
    sectors = sectors_from_world(geometry)
    assert REGION_NAMES[sectors[72 + 30, 126 + 30, 90 + 30] - 1] == "left frontal"
    assert x[0, 0, 90 + 30] == -30.0


class KnownThickness:
    """A thickness tool whose map is the scan's value at every voxel with tissue label GM in the tissue
    map (so a scan that is a constant c gets thickness c everywhere in the cortex)."""

    name = "known"

    def __init__(self, fail_on_value: float | None = None):
        self.calls = 0
        self.fail_on_value = fail_on_value

    def measure(self, t1, brain_mask, tissue=None):
        self.calls += 1
        image = sitk.GetArrayFromImage(t1).astype(np.float32)
        if self.fail_on_value is not None and np.isclose(image[brain_mask].mean(), self.fail_on_value):
            raise RuntimeError("segmentation did not converge")
        cortex = (tissue == GM) & brain_mask
        return ThicknessResult(np.where(cortex, image, 0).astype(np.float32), tissue.astype(np.uint8))


def _write(array: np.ndarray, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    # LPS header of an MNI-space scan: index (i, j, k) -> RAS (i - 10, j - 10, k - 10).
    image.SetOrigin((10.0, 10.0, -10.0))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


@pytest.fixture()
def study_folders(tmp_path):
    shape = (20, 20, 20)
    tissue = np.full(shape, WM, np.uint8)
    tissue[:, :, :3] = GM
    tissue[:, :, -3:] = GM
    tissue[:, :2] = CSF
    values = {"unfilled": (2.6, 2.9), "filled": (2.45, 2.75), "truth": (2.4, 2.7)}
    for method, per_case in values.items():
        for case, value in zip(("a", "b"), per_case):
            _write(np.full(shape, value, np.float32), tmp_path / method / f"{case}_0000.nii.gz")
    for case in ("a", "b"):
        _write(tissue, tmp_path / "tissue" / f"{case}.nii.gz")
    return tmp_path


def test_study_bias_change_and_identical_scans(study_folders):
    root = study_folders
    tool = KnownThickness()
    result = evaluate_thickness([root / "unfilled", root / "filled", root / "unfilled"], ["unfilled", "filled", "again"],
                                root / "out", truth=root / "truth", tissue=root / "tissue", region_mode="mni",
                                tool=tool, progress=False)
    assert tool.calls == 8
    rows = {(r["method"], r["region"]): r for r in result["comparison"]}
    assert rows[("again", "global")]["thesis_change_pct"] == 0.0
    assert rows[("again", "global")]["bias_removed"] == pytest.approx(0.0)
    assert rows[("unfilled", "global")]["bias_mm"] == pytest.approx(0.2, abs=1e-6)
    assert rows[("filled", "global")]["bias_mm"] == pytest.approx(0.05, abs=1e-6)
    assert rows[("filled", "global")]["bias_removed"] == pytest.approx(0.75, abs=1e-5)
    for name in ("thickness.json", "thickness.csv", "thickness_scans.csv", "thickness.md", "thickness_regions.png",
                 "thickness_map.png", "regions/a.nii.gz", "maps/filled/b_thickness.nii.gz"):
        assert (root / "out" / name).is_file(), name
    assert not list((root / "out").rglob("*.tmp*")), "temporary files left behind"
    assert "| filled | 2.600 |" in (root / "out" / "thickness.md").read_text()
    stored = load_json(root / "out" / "thickness.json")
    assert stored["tables"]["truth"]["b"]["global"] == pytest.approx(2.7)


def test_continue_reuses_maps_and_a_failing_scan_is_named_and_skipped(study_folders, caplog):
    root = study_folders
    first = KnownThickness(fail_on_value=2.75)  # the filled scan of case b
    result = evaluate_thickness([root / "unfilled", root / "filled"], ["unfilled", "filled"], root / "out",
                                tissue=root / "tissue", region_mode="mni", tool=first, progress=False)
    assert [f["case"] for f in result["failures"]] == ["b"]
    assert "filled/b_0000.nii.gz" in caplog.text
    assert result["tables"]["filled"].keys() == {"a"}
    # Only the failed scan is measured again.
    second = KnownThickness()
    result = evaluate_thickness([root / "unfilled", root / "filled"], ["unfilled", "filled"], root / "out",
                                tissue=root / "tissue", region_mode="mni", tool=second, resume=True, progress=False)
    assert second.calls == 1 and not result["failures"]
    filled = next(r for r in result["comparison"] if r["method"] == "filled" and r["region"] == "global")
    assert filled["cases"] == 2
    assert filled["percent_difference_pct"] == pytest.approx(np.mean([100 * (2.45 / 2.6 - 1), 100 * (2.75 / 2.9 - 1)]),
                                                            rel=1e-5)


def _cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ldiff.cli.evaluate_thickness", *arguments], capture_output=True,
                          text=True, timeout=120)


def test_cli_refuses_bad_input_quickly_in_one_sentence(study_folders):
    root = study_folders
    start = time.perf_counter()
    completed = _cli("-i", str(root / "unfilled"), "-i", str(root / "filled"), "--names", "unfilled", "-o", str(root / "o"))
    assert completed.returncode == 1
    assert "2 -i folder(s) but 1 --names" in completed.stderr and "Traceback" not in completed.stderr
    assert time.perf_counter() - start < 20
    completed = _cli("-i", str(root / "nothing"), "--names", "unfilled", "-o", str(root / "o"))
    assert "nothing: no such folder" in completed.stderr
    (root / "o" / "maps" / "unfilled").mkdir(parents=True)
    completed = _cli("-i", str(root / "unfilled"), "--names", "unfilled", "-o", str(root / "o"))
    assert "already holds thickness maps; pass --continue" in completed.stderr


def test_study_refuses_scans_on_different_grids(study_folders):
    root = study_folders
    _write(np.full((20, 20, 21), 2.0, np.float32), root / "filled" / "a_0000.nii.gz")
    with pytest.raises(LdiffError, match="grid differs"):
        evaluate_thickness([root / "unfilled", root / "filled"], ["unfilled", "filled"], root / "out",
                           tissue=root / "tissue", region_mode="mni", tool=KnownThickness(), progress=False)


def _two_shells(inner_mm: float, thicknesses: tuple[float, float], size: int = 34) -> np.ndarray:
    """Two spheres side by side along x: white matter of radius ``inner_mm``, a grey-matter shell of each
    given thickness, then 3 mm of CSF."""
    z, y, x = np.mgrid[:size, :size, : 2 * size].astype(np.float64)
    tissue = np.zeros(z.shape, np.uint8)
    for centre_x, thickness in zip((size / 2 - 0.5, 1.5 * size - 0.5), thicknesses):
        radius = np.sqrt((z - size / 2 + 0.5) ** 2 + (y - size / 2 + 0.5) ** 2 + (x - centre_x) ** 2)
        tissue[(radius < inner_mm + thickness + 3) & (tissue == 0)] = CSF
        tissue[radius < inner_mm + thickness] = GM
        tissue[radius < inner_mm] = WM
    return tissue


def _shell_means(thickness: np.ndarray, tissue: np.ndarray, size: int = 34) -> tuple[float, float]:
    left, right = (tissue == GM).copy(), (tissue == GM).copy()
    left[:, :, size:] = False
    right[:, :, :size] = False
    return float(thickness[left & (thickness > 0)].mean()), float(thickness[right & (thickness > 0)].mean())


def test_ants_direct_measures_shells_of_known_thickness():
    pytest.importorskip("ants")
    from ldiff.evaluation.thickness.tools import AntsDirect

    tissue = _two_shells(8.0, (3.0, 5.0))
    t1 = sitk.GetImageFromArray(np.choose(tissue, [0.0, 0.25, 0.6, 1.0]).astype(np.float32))
    brain = tissue > 0
    given = AntsDirect().measure(t1, brain, tissue)
    thin, thick = _shell_means(given.thickness, tissue)
    # DiReCT measures between voxelised boundaries, so the absolute value is good to about a voxel
    # (it reads 3 mm as ~2.3-2.4 mm and 5 mm as ~4.4 mm on a 1 mm grid), while a difference in
    # thickness, which is what a filler's bias is, comes through to a few tenths of a millimetre.
    assert abs(thin - 3.0) < 1.0 and abs(thick - 5.0) < 1.0, (thin, thick)
    assert abs((thick - thin) - 2.0) < 0.3, (thin, thick)
    # Atropos on a T1-like image of the same anatomy (noise 2 % of WM) finds the same tissue and thickness.
    rng = np.random.default_rng(0)
    noisy = sitk.GetImageFromArray((sitk.GetArrayFromImage(t1) + rng.normal(0, 0.02, tissue.shape) * brain)
                                   .astype(np.float32))
    segmented = AntsDirect().measure(noisy, brain, None)
    agreement = np.mean(segmented.segmentation[brain] == tissue[brain])
    assert agreement > 0.95, agreement
    thin_s, thick_s = _shell_means(segmented.thickness, tissue)
    assert abs(thin_s - thin) < 0.3 and abs(thick_s - thick) < 0.3, (thin_s, thick_s, thin, thick)
