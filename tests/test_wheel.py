"""Packaging as users install: build the wheel, install it (not editable) into a fresh environment and
fill a small case with the shipped demo model there, from outside the repository, so that the demo
models and the LPIPS weights are proven to be inside the package."""
from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]

CHECK = """
import sys
from pathlib import Path
import ldiff
from ldiff.evaluation.lpips import DEFAULT_WEIGHTS_PATH
from ldiff.inference.model_loading import demo_models_root
package = Path(ldiff.__file__).resolve().parent
assert Path(sys.prefix).resolve() in package.parents, f"ldiff imported from {package}, not the fresh environment"
assert DEFAULT_WEIGHTS_PATH.is_file(), DEFAULT_WEIGHTS_PATH
demos = sorted(p.name for p in demo_models_root().iterdir() if (p / "checkpoint_final.pth").is_file())
assert "t1_cond_fill" in demos, demos
print("package", package)
"""


def _small_case(folder: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """A 1 mm T1-like volume (bright WM block in darker tissue) with one small lesion."""
    rng = np.random.default_rng(0)
    image = np.full((24, 40, 40), 0.0, np.float32)
    image[2:-2, 4:-4, 4:-4] = 60.0
    image[5:-5, 10:-10, 10:-10] = 100.0
    image += rng.normal(0, 2, image.shape).astype(np.float32) * (image > 0)
    lesion = np.zeros(image.shape, np.uint8)
    lesion[11:14, 18:22, 18:22] = 1
    image[lesion > 0] = 70.0
    paths = []
    for array, name in ((image, "t1.nii.gz"), (lesion, "lesion.nii.gz")):
        written = sitk.GetImageFromArray(array)
        written.SetSpacing((1.0, 1.0, 1.0))
        sitk.WriteImage(written, str(folder / name))
        paths.append(folder / name)
    return paths[0], paths[1], image, lesion


@pytest.mark.usefixtures("one_thread")
def test_wheel_installs_and_fills_with_the_shipped_model(tmp_path):
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(REPO)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("ldiff-*.whl")
    environment = tmp_path / "env"
    # The fresh environment sees the installed dependencies (torch, SimpleITK, ...) but not the repository.
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(environment)
    python = environment / "bin" / "python"
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                              "--no-index", "-q", str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    clean = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    check = subprocess.run([str(python), "-c", CHECK], cwd=work, capture_output=True, text=True, timeout=300,
                           env=clean)
    assert check.returncode == 0, check.stderr[-2000:]
    t1, mask, image, lesion = _small_case(work)
    fill = subprocess.run([str(environment / "bin" / "ldiff_predict"), "-i", str(t1), "--mask", str(mask),
                           "-o", str(work / "filled.nii.gz"), "--device", "cpu"], cwd=work, capture_output=True,
                          text=True, timeout=600, env=clean)
    assert fill.returncode == 0, fill.stderr[-2000:]
    assert "t1_cond_fill" in fill.stdout + fill.stderr
    filled = sitk.GetArrayFromImage(sitk.ReadImage(str(work / "filled.nii.gz")))
    from scipy import ndimage

    region = ndimage.binary_dilation(lesion > 0, iterations=3)  # the model dilates by 2 voxels
    assert np.array_equal(filled[~region], image[~region])
    assert np.isfinite(filled).all() and not np.array_equal(filled[lesion > 0], image[lesion > 0])
