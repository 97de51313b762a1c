"""Synthesis realism measures, checked on a scan built by hand where the right answers are known."""
from __future__ import annotations

import numpy as np
import pytest

from ldiff.evaluation.benchmark.lesion_context import tissue_classes
from ldiff.evaluation.benchmark.transplant import TransplantSettings
from ldiff.evaluation.synthesis_realism import channel_realism, coverage, noise_level, source_lesions, synthesis_sites

SHAPE = (40, 48, 48)
NOISE = 1.0
LESION_RATIO = 0.7  # real lesions at 70 % of the WM level: contrast -30 %


@pytest.fixture(scope="module")
def scan():
    """A ball brain: WM core (100), GM shell (60), CSF ventricle (20); two real lesions at 70 in the WM."""
    z, y, x = np.indices(SHAPE, dtype=np.float64)
    radius = np.sqrt(((z - 19.5) / 18) ** 2 + ((y - 23.5) / 22) ** 2 + ((x - 23.5) / 22) ** 2)
    image = np.where(radius < 1, 60.0, 0.0)
    image[radius < 0.8] = 100.0
    image[(np.abs(z - 19.5) < 3) & (np.abs(y - 23.5) < 3) & (np.abs(x - 23.5) < 6)] = 20.0
    lesion = np.zeros(SHAPE, bool)
    for centre in ((12, 14, 15), (27, 33, 31)):
        lesion |= ((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) <= 6
    image[lesion] = 100.0 * LESION_RATIO
    noisy = image + np.random.default_rng(0).normal(0, NOISE, SHAPE)
    classes = tissue_classes(noisy, lesion, radius < 1)
    sites = synthesis_sites(noisy, lesion, classes, (1.0, 1.0, 1.0), np.random.default_rng(1),
                            TransplantSettings(count=3, tissue_margin_mm=2.0, lesion_margin_mm=4.0, min_voxels=5))
    return noisy, lesion, classes, sites


def test_sites_take_the_real_shapes_into_nawm_away_from_the_real_lesions(scan):
    noisy, lesion, classes, sites = scan
    assert sites.any() and not (sites & lesion).any()
    assert np.all(classes[sites] == 3)  # white matter only
    assert sites.sum() % 81 == 0  # each real shape has 81 voxels (squared radius <= 6) and is placed whole


def test_a_perfect_synthesiser_matches_the_real_lesions(scan):
    noisy, lesion, classes, sites = scan
    painted = noisy.copy()
    painted[sites] = noisy[sites] * LESION_RATIO  # the real lesions' appearance, the scan's own noise scaled
    row = channel_realism("T1w", noisy, painted, sites, lesion, classes, (1.0, 1.0, 1.0))
    assert row.real_contrast == pytest.approx(-30.0, abs=1.0)
    assert row.synthetic_contrast == pytest.approx(-30.0, abs=1.0)
    assert row.contrast_ratio == pytest.approx(1.0, abs=0.05)
    assert row.wasserstein < 0.01
    assert row.coverage == 1.0


def test_no_synthesis_and_half_a_synthesis_are_seen_as_such(scan):
    noisy, lesion, classes, sites = scan
    untouched = channel_realism("T1w", noisy, noisy, sites, lesion, classes, (1.0, 1.0, 1.0))
    assert untouched.coverage == 0.0 and abs(untouched.contrast_ratio) < 0.05
    assert untouched.wasserstein == pytest.approx(0.3, abs=0.02)  # ratio ~1.0 against the real ~0.7
    half = noisy.copy()
    flat = np.flatnonzero(sites)
    half.ravel()[flat[::2]] *= LESION_RATIO
    assert coverage(noisy, half, sites, 2 * NOISE) == pytest.approx(0.5, abs=0.01)
    weak = channel_realism("T1w", noisy, np.where(sites, noisy * 0.85, noisy), sites, lesion, classes, (1.0, 1.0, 1.0))
    assert weak.contrast_ratio == pytest.approx(0.5, abs=0.05)  # half the real contrast


def test_noise_level_is_the_standard_deviation_of_flat_tissue():
    rng = np.random.default_rng(3)
    flat = 50.0 + rng.normal(0, 2.0, (30, 30, 30))
    region = np.zeros(flat.shape, bool)
    region[3:-3, 3:-3, 3:-3] = True
    # the 3x3x3 median removes a little of the noise itself, so the estimate is close to, not exactly, 2
    assert 1.6 < noise_level(flat, region) < 2.4


def test_the_source_lesions_are_the_real_lesions_whose_shapes_were_moved():
    """Two real lesions of different shape and darkness; only the ball's shape is moved to a site."""
    z, y, x = np.indices(SHAPE, dtype=np.float64)
    radius = np.sqrt(((z - 19.5) / 18) ** 2 + ((y - 23.5) / 22) ** 2 + ((x - 23.5) / 22) ** 2)
    image = np.where(radius < 1, 60.0, 0.0)
    image[radius < 0.8] = 100.0

    def ball(centre):
        return ((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) <= 6

    light = ball((12, 14, 15))  # 81 voxels at 70: contrast -30 %
    dark = (np.abs(z - 27) <= 1) & (np.abs(y - 33) <= 1) & (np.abs(x - 31) <= 3)  # 63 voxels at 40: -60 %
    image[light], image[dark] = 70.0, 40.0
    lesion = light | dark
    sites = ball((20, 32, 14))  # the light lesion's shape, moved
    noisy = image + np.random.default_rng(0).normal(0, NOISE, SHAPE)
    classes = tissue_classes(noisy, lesion, radius < 1)
    sources = source_lesions(sites, lesion)
    assert np.array_equal(sources, light)  # exactly the lesion whose shape was moved, not the other
    painted = np.where(sites, noisy * LESION_RATIO, noisy)  # the light lesion's appearance
    row = channel_realism("T1w", noisy, painted, sites, lesion, classes, (1.0, 1.0, 1.0), sources=sources)
    assert row.source_contrast == pytest.approx(-30.0, abs=1.5)
    assert row.source_ratio == pytest.approx(1.0, abs=0.05)
    assert row.real_contrast < -40  # the volume-weighted mean of both lesions: the dark one pulls it down
    assert row.contrast_ratio < 0.75  # so against all lesions the same synthesis looks too weak
    unmatched = source_lesions(ball((20, 32, 14)) & (x < 14), lesion)  # a shape no real lesion has
    assert not unmatched.any()
