"""The two simplest honest baselines: ``ringmedian`` (median of the NAWM ring) and ``slf`` (WM mean
plus half-SD noise), with values known by construction."""
from __future__ import annotations

import numpy as np
import pytest

from ldiff.evaluation.classic import classic_fill
from test_classic_fillers import LESION_MEAN, SHAPE, WM_MEAN, WM_SD, sphere, wm_phantom


# --- ringmedian -----------------------------------------------------------------------------------

ALL = np.ones(SHAPE, bool)


def ring_by_brute_force(lesion: np.ndarray, radius_mm: float, spacing_zyx=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Voxels outside ``lesion`` within ``radius_mm`` of one of its voxels, by explicit distances."""
    points = np.argwhere(lesion) * np.asarray(spacing_zyx)
    grid = np.indices(lesion.shape).reshape(3, -1).T * np.asarray(spacing_zyx)
    nearest = np.min(np.linalg.norm(grid[:, None, :] - points[None, :, :], axis=2), axis=1)
    return (nearest <= radius_mm).reshape(lesion.shape) & ~lesion


def test_ringmedian_fills_each_lesion_with_the_exact_median_of_its_3mm_ring():
    # Intensity grows with the distance from the lesion centre (plus integer noise), so the median
    # depends on the ring's exact radius; integers make the median (maybe a half-integer) exact in float32.
    distance = np.sqrt(((np.indices(SHAPE) - 16) ** 2).sum(axis=0))
    noise = np.random.default_rng(0).integers(-5, 6, SHAPE)
    image = (np.rint(10 * distance) + noise).astype(np.float32)
    lesion = sphere((16, 16, 16), 2.5)
    image[lesion] = LESION_MEAN
    ring = ring_by_brute_force(lesion, 3.0)
    for other in (2.0, 4.0):
        assert np.median(image[ring_by_brute_force(lesion, other)]) != np.median(image[ring])
    filled = classic_fill(image, lesion, "ringmedian", (1, 1, 1), wm_mask=ALL)
    assert np.all(filled[lesion] == np.float32(np.median(image[ring])))
    assert np.array_equal(filled.view(np.uint32)[~lesion], image.view(np.uint32)[~lesion])
    assert filled[lesion].dtype == np.float32


def test_ringmedian_gives_each_lesion_its_own_level():
    image = np.where(np.indices(SHAPE)[2] < 16, 100.0, 140.0).astype(np.float32)
    left, right = sphere((16, 16, 6), 2.5), sphere((16, 16, 25), 2.5)
    image[left | right] = LESION_MEAN
    for wm_mask in (None, ALL):
        filled = classic_fill(image, left | right, "ringmedian", (1, 1, 1), wm_mask=wm_mask)
        assert np.all(filled[left] == 100.0) and np.all(filled[right] == 140.0)
        assert np.array_equal(filled[~(left | right)], image[~(left | right)])


def test_ringmedian_never_takes_a_neighbouring_lesion_into_the_ring():
    # Lesion A is one voxel; lesion B a hollow cube 2 to 4 voxels from it (not 26-connected to A)
    # at 0. A's 3 mm ring holds 26 normal voxels at 100 and 96 voxels of B: if B counted, A's median
    # would be 0.
    chebyshev = np.max(np.abs(np.indices(SHAPE) - 16), axis=0)
    a, b = chebyshev == 0, (chebyshev >= 2) & (chebyshev <= 4)
    image = np.where(b, 0.0, 100.0).astype(np.float32)
    for wm_mask in (None, ALL):
        filled = classic_fill(image, a | b, "ringmedian", (1, 1, 1), wm_mask=wm_mask)
        assert filled[a][0] == 100.0 and np.all(filled[b] == 100.0)


def test_ringmedian_measures_the_ring_in_mm():
    # One-voxel lesion; voxels in other axial planes are 200, its own plane is 100. With 1 mm voxels
    # the 3 mm ring holds 28 in-plane voxels and 94 off-plane ones (median 200); with 2.5 mm slices
    # only the adjacent planes are within 3 mm, with 9 voxels each: 28 against 18 (median 100).
    z = np.indices(SHAPE)[0]
    image = np.where(z == 16, 100.0, 200.0).astype(np.float32)
    lesion = sphere((16, 16, 16), 0)
    assert ring_by_brute_force(lesion, 3.0, (2.5, 1, 1)).sum() == 28 + 18
    assert classic_fill(image, lesion, "ringmedian", (1, 1, 1), wm_mask=ALL)[lesion][0] == 200.0
    assert classic_fill(image, lesion, "ringmedian", (1, 1, 2.5), wm_mask=ALL)[lesion][0] == 100.0


def test_ringmedian_uses_only_wm_of_the_ring_or_its_dominant_population():
    # A lesion on the WM border, its ring partly in grey matter (60).
    image, lesion, wm = wm_phantom(((((16, 16, 26), 2.5),)))
    ring = ring_by_brute_force(lesion, 3.0)
    assert np.median(image[ring]) < WM_MEAN - 4, "the test needs a mixed ring to mean anything"
    with_wm = classic_fill(image, lesion, "ringmedian", (1, 1, 1), wm_mask=wm)
    assert with_wm[lesion][0] == np.float32(np.median(image[ring & wm]))
    without = classic_fill(image, lesion, "ringmedian", (1, 1, 1))
    assert abs(without[lesion][0] - WM_MEAN) < 2.0
    # A WM mask that misses the ring entirely: the whole ring is used rather than nothing.
    far = np.zeros(SHAPE, bool)
    far[:3, :3, :3] = True
    filled = classic_fill(image, lesion, "ringmedian", (1, 1, 1), wm_mask=far)
    assert filled[lesion][0] == np.float32(np.median(image[ring]))


def test_ringmedian_doubles_the_radius_while_the_ring_is_too_small():
    # One row of 60 voxels: a lesion at x = 0..30, normal tissue at x = 31..59 with intensity x. Its
    # ring holds 3, 6, 12, then 24 voxels at 3, 6, 12, 24 mm; the 24 mm ring (31..54, median 42.5)
    # is the first with 20. Fewer doublings use the last ring, however small, as nawm does.
    x = np.arange(60, dtype=np.float64).reshape(1, 1, 60)
    lesion, everywhere = x <= 30, np.ones(x.shape, bool)
    expected = {(): 42.5, (("min_samples", 3),): 32.0, (("max_doublings", 2),): 36.5, (("max_doublings", 0),): 32.0}
    for options, median in expected.items():
        filled = classic_fill(x, lesion, "ringmedian", (1, 1, 1), wm_mask=everywhere, **dict(options))
        assert np.all(filled[lesion] == median), options
        assert np.array_equal(filled[~lesion], x[~lesion])


def test_ringmedian_falls_back_to_the_global_nawm_when_the_ring_stays_empty():
    # 30 mm between voxel centres along x: nothing lies within 3 * 2^3 = 24 mm of the lesion at x = 0.
    image = np.array([0.0, 10.0, 20.0, 90.0]).reshape(1, 1, 4)
    lesion = np.array([True, False, False, False]).reshape(1, 1, 4)
    wm = np.array([False, True, True, False]).reshape(1, 1, 4)
    assert classic_fill(image, lesion, "ringmedian", (30, 1, 1), wm_mask=wm)[0, 0, 0] == 15.0
    with pytest.raises(ValueError, match="no normal-appearing white matter"):
        classic_fill(image, np.ones(image.shape, bool), "ringmedian", (1, 1, 1))


# --- slf ------------------------------------------------------------------------------------------

T1_WM, T1_GM = 110.0, 70.0


def t1_brain(seed=0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image float32, lesion bool, wm bool): a skull-stripped T1-like ball: zero background, GM shell
    at 70 +- 5, WM core (about as many voxels as GM) at 110 +- 5, and a large dark lesion (30) in it."""
    rng = np.random.default_rng(seed)
    brain, wm = sphere((16, 16, 16), 14), sphere((16, 16, 16), 11.5)
    image = np.where(wm, T1_WM, T1_GM) + rng.normal(0, WM_SD, SHAPE)
    image[~brain] = 0.0
    lesion = sphere((16, 16, 16), 6)
    image[lesion] = LESION_MEAN + rng.normal(0, WM_SD, int(lesion.sum()))
    return image.astype(np.float32), lesion, wm


def assert_slf_statistics(fill: np.ndarray, wm_mean: float, wm_sd: float, extra_sd: float = 0.0) -> None:
    """Fill mean within 4 standard errors of ``wm_mean``, fill sd within 4 of 0.5 ``wm_sd`` (plus ``extra_sd``)."""
    n, sd = fill.size, 0.5 * wm_sd
    assert abs(fill.mean() - wm_mean) < 4 * sd / np.sqrt(n)
    assert abs(fill.std() - sd) < 4 * sd / np.sqrt(2 * n) + extra_sd


@pytest.mark.parametrize("contrast", ["t1", "inverted"])
def test_slf_with_wm_mask_draws_from_the_wm_mean_and_half_its_sd(contrast):
    image, lesion, wm = t1_brain()
    if contrast == "inverted":  # FLAIR-like: WM darker than GM; the mask makes the contrast irrelevant
        image = np.where(image > 0, 200.0 - image, 0.0).astype(np.float32)
    assert lesion.sum() > 800, "a large lesion keeps the sampling error small"
    filled = classic_fill(image, lesion, "slf", (1, 1, 1), seed=0, wm_mask=wm)
    reference = image[wm & ~lesion].astype(np.float64)
    assert_slf_statistics(filled[lesion], reference.mean(), reference.std())
    assert np.array_equal(filled.view(np.uint32)[~lesion], image.view(np.uint32)[~lesion])


def test_slf_without_wm_mask_finds_the_t1_white_matter():
    image, lesion, wm = t1_brain()
    brain = (image != 0) & ~lesion
    assert image[brain].mean() < T1_WM - 15, "the brain mean is far from WM, so finding WM means something"
    filled = classic_fill(image, lesion, "slf", (1, 1, 1), seed=0)
    reference = image[wm & ~lesion].astype(np.float64)
    # The WM estimate clips its population at 2.5 sd, which makes its sd about 5 % low.
    assert_slf_statistics(filled[lesion], reference.mean(), reference.std(), extra_sd=0.06 * 0.5 * reference.std())
    assert abs(filled[lesion].mean() - T1_WM) < 1.0


def test_slf_is_global_and_seeded():
    image, lesion, wm = t1_brain()
    first = classic_fill(image, lesion, "slf", (1, 1, 1), seed=4, wm_mask=wm)
    assert np.array_equal(first, classic_fill(image, lesion, "slf", (1, 1, 1), seed=4, wm_mask=wm))
    assert np.mean(first[lesion] != classic_fill(image, lesion, "slf", (1, 1, 1), seed=5, wm_mask=wm)[lesion]) > 0.99
    # Global statistics: a brighter WM half far from the lesion moves the fill as much as it moves the WM mean.
    shifted = image.copy()
    far_half = wm & ~lesion & (np.indices(SHAPE)[0] < 8)
    shifted[far_half] += 50.0
    moved = classic_fill(shifted, lesion, "slf", (1, 1, 1), seed=4, wm_mask=wm)
    wm_shift = shifted[wm & ~lesion].mean() - image[wm & ~lesion].mean()
    assert wm_shift > 2.0
    assert abs((moved[lesion].mean() - first[lesion].mean()) - wm_shift) < 0.5


def test_slf_refuses_images_without_white_matter():
    image, lesion, _ = t1_brain()
    with pytest.raises(ValueError, match="no white-matter voxel"):
        classic_fill(image, lesion, "slf", (1, 1, 1), wm_mask=np.zeros(SHAPE, bool))
    with pytest.raises(ValueError, match="no white-matter voxel"):
        classic_fill(np.where(lesion, image, 0.0), lesion, "slf", (1, 1, 1))
    # Nothing to fill: no WM is needed and the image comes back unchanged.
    empty = np.zeros(SHAPE, bool)
    assert np.array_equal(classic_fill(image, empty, "slf", (1, 1, 1), wm_mask=empty), image)
