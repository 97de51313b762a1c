"""Folder resolution, dataset name lookup, and atomic writes."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from ldiff import paths
from ldiff.errors import LdiffError
from ldiff.io import Geometry, geometry_mismatch, load_json, read_image, save_json_atomic, save_npz_atomic, write_image_atomic
from ldiff.io.atomic import atomic_path


def test_environment_variable_wins(data_roots):
    assert paths.raw_root() == data_roots["ldiff_raw"]
    assert paths.preprocessed_root() == data_roots["ldiff_preprocessed"]
    assert paths.results_root() == data_roots["ldiff_results"]


def test_default_is_repository_folder(monkeypatch):
    monkeypatch.delenv("ldiff_results", raising=False)
    assert paths.results_root() == paths._REPOSITORY_ROOT / "ldiff_results"


def test_missing_folder_names_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("ldiff_raw", str(tmp_path / "nope"))
    with pytest.raises(LdiffError, match="export ldiff_raw="):
        paths.raw_root()


def test_import_is_silent_and_lazy(tmp_path):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ldiff_")}
    environment["ldiff_raw"] = str(tmp_path / "does_not_exist")
    result = subprocess.run([sys.executable, "-c", "import ldiff, ldiff.paths, ldiff.io, ldiff.dataset"],
                            capture_output=True, text=True, env=environment, check=True)
    assert result.stdout == "" and result.stderr == ""


def test_find_dataset_name_by_id_and_name(tmp_path):
    (tmp_path / "Dataset001_MSPhantom").mkdir()
    (tmp_path / "Dataset012_Other").mkdir()
    for identifier in (1, "1", "001", "Dataset001_MSPhantom"):
        assert paths.find_dataset_name(identifier, [tmp_path]) == "Dataset001_MSPhantom"
    assert paths.find_dataset_name("12", [tmp_path]) == "Dataset012_Other"
    with pytest.raises(LdiffError, match="No dataset with id 007"):
        paths.find_dataset_name(7, [tmp_path])
    (tmp_path / "Dataset001_Duplicate").mkdir()
    with pytest.raises(LdiffError, match="ambiguous"):
        paths.find_dataset_name(1, [tmp_path])


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_writes_round_trip(tmp_path):
    save_json_atomic({"a": np.float32(1.5), "b": np.arange(3)}, tmp_path / "x.json")
    assert load_json(tmp_path / "x.json") == {"a": 1.5, "b": [0, 1, 2]}
    array = np.random.default_rng(0).normal(size=(3, 4, 5)).astype(np.float32)
    save_npz_atomic(tmp_path / "x.npz", image=array)
    with np.load(tmp_path / "x.npz") as data:
        np.testing.assert_array_equal(data["image"], array)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.5, 1.0, 2.0))
    image.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, -1))
    write_image_atomic(image, tmp_path / "x.nii.gz")
    back = read_image(tmp_path / "x.nii.gz")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), array)
    assert geometry_mismatch(Geometry.of(image), Geometry.of(back)) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.nii.gz", "x.npz"]


def test_read_image_errors_name_the_file(tmp_path):
    truncated = tmp_path / "broken.nii.gz"
    truncated.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(LdiffError, match="broken.nii.gz: cannot be read"):
        read_image(truncated)
    with pytest.raises(LdiffError, match="missing.nii.gz: file not found"):
        read_image(tmp_path / "missing.nii.gz")
    sitk.WriteImage(sitk.Image(4, 5, sitk.sitkFloat32), str(tmp_path / "flat.nii.gz"))
    with pytest.raises(LdiffError, match="2D"):
        read_image(tmp_path / "flat.nii.gz")


def test_geometry_mismatch_tolerances():
    reference = Geometry((4, 4, 4), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert geometry_mismatch(reference, Geometry((4, 4, 4), (1.00001, 1.0, 1.0), (0.0001, 0, 0), reference.direction)) is None
    assert "spacing" in geometry_mismatch(reference, Geometry((4, 4, 4), (1.01, 1.0, 1.0), (0, 0, 0), reference.direction))
    assert "origin" in geometry_mismatch(reference, Geometry((4, 4, 4), (1, 1, 1), (0.1, 0, 0), reference.direction))
    assert "size" in geometry_mismatch(reference, Geometry((4, 4, 5), (1, 1, 1), (0, 0, 0), reference.direction))


def test_json_has_no_nan_and_files_get_normal_permissions(tmp_path):
    save_json_atomic({"psnr": float("inf"), "values": [1.0, float("nan")], "array": np.array([np.inf, 2.0])}, tmp_path / "m.json")
    text = (tmp_path / "m.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert load_json(tmp_path / "m.json") == {"psnr": None, "values": [1.0, None], "array": [None, 2.0]}
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o666 & ~umask


def _die(case):
    os._exit(9)  # a worker killed mid-case, e.g. by the out-of-memory killer


class _NamedCase:
    identifier = "case_007"


def test_dead_worker_becomes_one_sentence_naming_the_case():
    from ldiff.parallel import map_cases

    with pytest.raises(LdiffError, match="worker process died while testing case case_007"):
        map_cases(_die, [_NamedCase(), _NamedCase()], num_workers=2, description="testing")
