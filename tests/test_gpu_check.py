"""benchmarks/gpu_check.py stays runnable: its --tiny CPU run writes every number and the tables."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_tiny_gpu_check_runs_on_a_cpu_and_writes_its_tables(tmp_path, monkeypatch):
    specification = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(specification)
    specification.loader.exec_module(module)
    monkeypatch.setenv("ldiff_raw", str(tmp_path / "untouched"))  # the check uses its own folders
    module.main(["-o", str(tmp_path / "out"), "--tiny", "--device", "cpu"])
    result = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert set(result["training"]) == {"2d", "p3d"} and result["device"] == "cpu"
    assert all(numbers["seconds_per_step"] > 0 and numbers["peak_memory_gb"] > 0 for numbers in result["training"].values())
    assert len(result["prediction"]["seconds"]) == 3 and all(s > 0 for s in result["prediction"]["seconds"].values())
    assert {"command", "commit", "hardware", "date"} <= set(result["provenance"])
    assert "| p3d |" in (tmp_path / "out" / "gpu_check.md").read_text()
    assert not (tmp_path / "untouched").exists()
