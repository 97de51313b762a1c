"""LPIPS must reproduce the published reference distances of the official example images."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import io

from ldiff.evaluation.lpips import DEFAULT_WEIGHTS_PATH, LPIPS, lpips_distance

# The three 64x64 example images of the official LPIPS repository, BSD-2-Clause (LICENSE and README with
# the published distances beside them), shipped with the tests so that the check runs from a clone.
FIXTURES = Path(__file__).resolve().parent / "data" / "lpips"
# Published to three decimals (README there); half a unit in the last place plus float slack.
REFERENCE_TOLERANCE = 0.0015


def _load_in_unit_range(name: str) -> np.ndarray:
    """(3, H, W) float64 in [-1, 1] from an 8-bit RGB PNG."""
    pixels = io.imread(FIXTURES / name)[..., :3]
    return pixels.astype(np.float64).transpose(2, 0, 1) / 127.5 - 1.0


@pytest.fixture(scope="module")
def example_images() -> dict[str, np.ndarray]:
    return {name: _load_in_unit_range(f"{name}.png") for name in ("ex_ref", "ex_p0", "ex_p1")}


@pytest.mark.parametrize(("other", "published"), [("ex_p0", 0.722), ("ex_p1", 0.138)])
def test_reproduces_published_distances(example_images: dict[str, np.ndarray], other: str, published: float) -> None:
    distance = lpips_distance(example_images["ex_ref"], example_images[other])
    assert isinstance(distance, float)
    assert abs(distance - published) <= REFERENCE_TOLERANCE


def test_identical_images_have_zero_distance(example_images: dict[str, np.ndarray]) -> None:
    assert lpips_distance(example_images["ex_p0"], example_images["ex_p0"]) == 0.0


def test_symmetric(example_images: dict[str, np.ndarray]) -> None:
    forward = lpips_distance(example_images["ex_ref"], example_images["ex_p1"])
    backward = lpips_distance(example_images["ex_p1"], example_images["ex_ref"])
    assert forward == pytest.approx(backward, abs=1e-6)


def test_batch_matches_single_images(example_images: dict[str, np.ndarray]) -> None:
    batch_a = np.stack([example_images["ex_ref"], example_images["ex_ref"]])
    batch_b = np.stack([example_images["ex_p0"], example_images["ex_p1"]])
    batch = lpips_distance(batch_a, batch_b, batch_size=1)
    assert batch.shape == (2,)
    singles = [lpips_distance(example_images["ex_ref"], example_images[n]) for n in ("ex_p0", "ex_p1")]
    np.testing.assert_allclose(batch, singles, atol=1e-6)


def test_grayscale_equals_the_same_image_repeated_to_rgb() -> None:
    generator = np.random.default_rng(0)
    gray_a = generator.uniform(-1, 1, size=(40, 48))
    gray_b = np.clip(gray_a + generator.normal(0, 0.2, size=gray_a.shape), -1, 1)
    from_gray = lpips_distance(gray_a, gray_b)
    from_rgb = lpips_distance(np.repeat(gray_a[None], 3, axis=0), np.repeat(gray_b[None], 3, axis=0))
    assert from_gray > 0
    assert from_gray == pytest.approx(from_rgb, abs=1e-6)


def test_rejects_images_that_are_not_in_unit_range_or_too_small() -> None:
    model = LPIPS()
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        model(torch.full((1, 1, 32, 32), 255.0), torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="H, W >= 31"):
        model(torch.zeros(1, 3, 16, 64), torch.zeros(1, 3, 16, 64))


def test_weights_file_is_plain_float32_without_objects() -> None:
    with np.load(DEFAULT_WEIGHTS_PATH, allow_pickle=False) as archive:
        for name in archive.files:
            array = archive[name]  # would raise for an object array under allow_pickle=False
            assert array.dtype != object
            if name != "source_sha256":
                assert array.dtype == np.float32, name
    with zipfile.ZipFile(DEFAULT_WEIGHTS_PATH) as archive:
        assert all(member.endswith(".npy") for member in archive.namelist())


def test_metrics_module_knows_the_lpips_minimum_size():
    from ldiff.evaluation.lpips import MIN_IMAGE_SIZE
    from ldiff.evaluation.metrics import LPIPS_MIN_IMAGE_SIZE

    assert LPIPS_MIN_IMAGE_SIZE == MIN_IMAGE_SIZE
