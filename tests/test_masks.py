"""Tests of ldiff.masks: components, statistics, boundary width, dilation, shapes, placement, sampling."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.special import erfc

from ldiff.masks import (
    DEFAULT_MASK_CONFIG,
    LesionLibrary,
    MaskSampler,
    ShapePlacer,
    axial_cross_section,
    boundary_width_from_intensity,
    dilate_mask,
    dilation_radius_voxels,
    lesion_components,
    lesion_statistics,
    mask_config_from_statistics,
    periventricular_weights,
    random_ellipse,
    random_ellipsoid,
    resolve_mask_config,
    signed_border_distance_mm,
)
from ldiff.masks.shapes import random_rotation, voxelise_ellipsoid

from mask_helpers import dilation_kernel, place_shape

GAUSSIAN_90_PERCENT = 1.2815515655446004  # the 90 % quantile of the standard normal


def radius_grid(shape, spacing_xyz, centre_offset=(0.0, 0.0, 0.0)):
    """Distance in mm of every voxel centre to the (offset) centre of a (z, y, x) grid."""
    spacing_zyx = np.asarray(spacing_xyz, dtype=float)[::-1]
    grid = np.indices(shape).astype(float)
    centre = [(n - 1) / 2 + o for n, o in zip(shape, centre_offset)]
    return np.sqrt(sum(((grid[i] - centre[i]) * spacing_zyx[i]) ** 2 for i in range(3)))


@pytest.fixture(scope="module")
def head():
    """A toy head (Z, Y, X) = (36, 44, 44): brain ball r 20, WM shell 6..16 mm, ventricles inside."""
    r = radius_grid((36, 44, 44), (1.0, 1.0, 1.0))
    brain = r < 20
    ventricles = r < 6
    wm = (r < 16) & ~ventricles
    return {"brain": brain, "wm": wm, "ventricles": ventricles}


# ---------------------------------------------------------------- components and statistics


def test_components_count_volume_extent_and_26_connectivity():
    mask = np.zeros((20, 20, 20), dtype=np.uint8)
    mask[2:5, 3:6, 4:7] = 1  # a 3x3x3 cube, 27 voxels
    mask[10, 10, 10] = mask[11, 11, 11] = mask[12, 12, 12] = 1  # touch only at corners: one lesion
    spacing = (0.5, 1.0, 3.0)  # (x, y, z) -> voxel volume 1.5 mm^3
    components = lesion_components(mask, spacing)
    assert [c.voxel_count for c in components] == [27, 3]
    assert [c.volume_mm3 for c in components] == [27 * 1.5, 3 * 1.5]
    cube, diagonal = components
    assert cube.bbox_zyx == ((2, 5), (3, 6), (4, 7))
    assert cube.extent_mm_zyx == (9.0, 3.0, 1.5)
    assert cube.centroid_zyx == pytest.approx((3.0, 4.0, 5.0))
    assert cube.mask.shape == (3, 3, 3) and cube.mask.all()
    assert diagonal.mask.shape == (3, 3, 3) and diagonal.mask.sum() == 3
    assert np.array_equal(mask[diagonal.slices].astype(bool), diagonal.mask)
    assert [c.label for c in lesion_components(mask, spacing, min_voxels=4)] == [cube.label]
    assert lesion_components(np.zeros((4, 4, 4)), spacing) == []


def test_component_crop_excludes_a_neighbour_inside_its_bounding_box():
    mask = np.zeros((10, 10, 10), dtype=bool)
    mask[1, 1:8, 1] = True  # a line whose bounding box contains the next lesion's voxel
    mask[1, 4, 5] = True
    components = lesion_components(mask)
    assert sorted(c.voxel_count for c in components) == [1, 7]
    line = max(components, key=lambda c: c.voxel_count)
    assert line.mask.sum() == 7


def test_statistics_match_numpy_percentiles():
    sizes = [1, 2, 3, 5, 8, 13, 4]  # cube edge lengths, spread over three cases
    cases = [[1, 2, 3], [5, 8], [13, 4]]
    masks = []
    for edges in cases:
        mask = np.zeros((16, 40, 60), dtype=np.uint8)
        x = 0
        for edge in edges:
            mask[:edge, :edge, x : x + edge] = 1
            x += edge + 2  # a gap keeps the cubes separate
        masks.append(mask)
    spacing = (1.0, 0.5, 2.0)  # voxel volume 1 mm^3
    stats = lesion_statistics(masks, spacing)
    volumes = np.array([e**3 for e in sizes], dtype=float)
    assert stats["n_cases"] == 3 and stats["n_lesions"] == 7
    assert stats["lesions_per_case"] == [3, 2, 2]
    for p in (5, 25, 50, 75, 95):
        assert stats["volume_mm3"][f"p{p}"] == pytest.approx(np.percentile(volumes, p))
        edges = np.array(sizes, dtype=float)
        assert stats["extent_mm"]["x"][f"p{p}"] == pytest.approx(np.percentile(edges * 1.0, p))
        assert stats["extent_mm"]["y"][f"p{p}"] == pytest.approx(np.percentile(edges * 0.5, p))
        assert stats["extent_mm"]["z"][f"p{p}"] == pytest.approx(np.percentile(edges * 2.0, p))
    assert stats["volume_mm3"]["min"] == 1.0 and stats["volume_mm3"]["max"] == 13.0**3
    assert stats["volume_mm3"]["mean"] == pytest.approx(volumes.mean())
    assert stats["lesion_count"]["p50"] == 2.0
    assert stats["boundary_width_mm"] is None
    json.dumps(stats)  # the fingerprint must be JSON-able


def test_statistics_of_lesion_free_dataset_are_empty_not_crashing():
    stats = lesion_statistics([np.zeros((4, 4, 4))], [(1.0, 1.0, 1.0)])
    assert stats["n_lesions"] == 0 and stats["volume_mm3"]["p50"] is None


# ---------------------------------------------------------------- boundary width


def blurred_sphere(sigma_mm, spacing, radius_mm=8.0, size_mm=40.0, bright=True):
    """A lesion ball and an image whose edge is a step blurred by a Gaussian of ``sigma_mm``."""
    shape = tuple(int(size_mm / s) for s in spacing[::-1])
    r = radius_grid(shape, spacing, centre_offset=(0.3, -0.2, 0.1))
    image = 0.5 * erfc((r - radius_mm) / (math.sqrt(2) * sigma_mm))  # 1 inside, 0 far outside
    return (image if bright else -image), r < radius_mm


@pytest.mark.parametrize("sigma", [1.0, 2.0])
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 0.8, 1.5)])
def test_boundary_width_of_blurred_edge(sigma, spacing):
    image, lesion = blurred_sphere(sigma, spacing)
    width = boundary_width_from_intensity(image, lesion, spacing)
    assert width == pytest.approx(GAUSSIAN_90_PERCENT * sigma, abs=0.35)


@pytest.mark.parametrize("sigma", [1.0, 2.0])
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (1.5, 0.8, 0.8)])
def test_boundary_width_of_gaussian_smoothed_planar_step(sigma, spacing):
    shape = (10, 10, int(40 / spacing[0]))
    lesion = np.zeros(shape, dtype=bool)
    lesion[..., : shape[2] // 2] = True
    image = ndimage.gaussian_filter(lesion.astype(float), [sigma / s for s in spacing[::-1]], mode="nearest")
    width = boundary_width_from_intensity(image, lesion, spacing)
    assert width == pytest.approx(GAUSSIAN_90_PERCENT * sigma, abs=0.3)


def test_boundary_width_ignores_polarity_scale_and_far_tissue():
    image, lesion = blurred_sphere(1.5, (1.0, 1.0, 1.0))
    reference = boundary_width_from_intensity(image, lesion)
    # T1-like dark lesion on an arbitrary intensity scale: same width.
    assert boundary_width_from_intensity(300.0 - 200.0 * image, lesion) == pytest.approx(reference)
    # Tissue that is not WM (here: everything 4+ mm out) is ignored when a WM mask is given.
    distance = signed_border_distance_mm(lesion)
    wm = distance < 4.0
    spoiled = np.where(wm, image, 5.0)
    assert boundary_width_from_intensity(spoiled, lesion, wm_mask=wm | lesion) == pytest.approx(
        boundary_width_from_intensity(image, lesion, wm_mask=wm | lesion)
    )
    assert boundary_width_from_intensity(np.ones_like(image), lesion) is None
    assert boundary_width_from_intensity(image, np.zeros_like(lesion)) is None


def test_signed_distance_half_voxel_convention():
    mask = np.zeros((7, 7, 7), dtype=bool)
    mask[2:5, 1:6, 1:6] = True
    distance = signed_border_distance_mm(mask, (1.0, 1.0, 2.0))  # 2 mm slices
    assert distance[3, 3, 3] == pytest.approx(-2.5)  # 2.5 mm to the in-plane faces, 3 mm along z
    assert distance[4, 3, 3] == pytest.approx(-1.0)  # half a 2 mm slice below the top face
    assert distance[3, 3, 5] == pytest.approx(-0.5)
    assert distance[3, 3, 6] == pytest.approx(0.5)  # in-plane face neighbour
    assert distance[5, 3, 3] == pytest.approx(1.0)  # across a 2 mm slice
    assert np.all((distance < 0) == mask)


def test_dilation_radius_rule():
    assert dilation_radius_voxels(None, (1, 1, 1)) == 1
    assert dilation_radius_voxels(0.4, (1, 1, 1)) == 1
    assert dilation_radius_voxels(1.92, (1, 1, 1)) == 2
    assert dilation_radius_voxels(2.0, (1, 1, 1)) == 2
    assert dilation_radius_voxels(1.2, (0.5, 0.5, 1.0)) == 3  # counted along the finest axis


# ---------------------------------------------------------------- dilation


def single_voxel(shape=(9, 9, 9)):
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(n // 2 for n in shape)] = True
    return mask


def test_dilation_of_single_voxel():
    assert dilate_mask(single_voxel(), 1, shape="cube").sum() == 27
    ball = dilate_mask(single_voxel(), 1, shape="ball")
    assert ball.sum() == 7
    assert np.array_equal(ball, ndimage.binary_dilation(single_voxel(), ndimage.generate_binary_structure(3, 1)))
    assert dilate_mask(single_voxel(), 2, shape="cube").sum() == 125
    assert dilate_mask(single_voxel((9, 9)), 1, shape="cube").sum() == 9


def test_dilation_radius_zero_returns_equal_copy():
    mask = single_voxel()
    result = dilate_mask(mask, 0)
    assert np.array_equal(result, mask) and result is not mask
    result[0, 0, 0] = True
    assert not mask[0, 0, 0]


def test_ball_dilation_equals_brute_force_including_anisotropy_and_edges():
    rng = np.random.default_rng(3)
    mask = rng.random((14, 15, 16)) > 0.97
    mask[0, 0, 0] = True  # touching the array edge must not wrap around
    cases = (
        {"radius_voxels": 2},
        {"radius_mm": 2.5, "spacing": (1.0, 1.0, 2.0)},
        {"radius_voxels": 1, "spacing": (0.5, 0.5, 1.0)},
    )
    for kwargs in cases:
        kernel = dilation_kernel(3, **kwargs)
        expected = ndimage.binary_dilation(mask, structure=kernel)
        assert np.array_equal(dilate_mask(mask, **kwargs), expected), kwargs
    # Along z (2 mm) a 2.5 mm ball reaches one voxel, in-plane two.
    assert dilation_kernel(3, radius_mm=2.5, spacing=(1.0, 1.0, 2.0)).shape == (3, 5, 5)
    with pytest.raises(ValueError):
        dilate_mask(mask, 1, shape="diamond")


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.7, 0.7, 1.2)])
def test_ellipsoid_volume_close_to_formula(spacing):
    rng = np.random.default_rng(0)
    radii = (3.0, 5.0, 8.0)
    for _ in range(3):
        shape = voxelise_ellipsoid(radii, random_rotation(rng, 3), spacing)
        volume = shape.sum() * np.prod(spacing)
        assert volume == pytest.approx(4 / 3 * math.pi * np.prod(radii), rel=0.1)
    sphere = random_ellipsoid(rng, (5.0, 5.0), spacing)
    assert sphere.sum() * np.prod(spacing) == pytest.approx(4 / 3 * math.pi * 125, rel=0.1)
    # The crop is tight: every face of the bounding box holds a voxel.
    for axis in range(3):
        assert sphere.take(0, axis=axis).any() and sphere.take(-1, axis=axis).any()


def test_random_ellipsoid_respects_radius_range_and_varies_with_seed():
    spacing = (1.0, 1.0, 1.0)
    shapes = [random_ellipsoid(np.random.default_rng(seed), (2.0, 6.0), spacing) for seed in range(20)]
    for shape in shapes:
        assert 4 / 3 * math.pi * 2.0**3 * 0.7 <= shape.sum() <= 4 / 3 * math.pi * 6.0**3 * 1.1
        assert max(shape.shape) <= 2 * 6 + 1
    assert len({(s.shape, s.sum()) for s in shapes}) > 10
    same_seed = [random_ellipsoid(np.random.default_rng(7), (2, 6)) for _ in range(2)]
    assert np.array_equal(*same_seed)


def test_ellipse_area_close_to_formula():
    rng = np.random.default_rng(1)
    ellipse = voxelise_ellipsoid((4.0, 9.0), random_rotation(rng, 2), (0.5, 0.5))
    assert ellipse.sum() * 0.25 == pytest.approx(math.pi * 36, rel=0.1)
    assert random_ellipse(rng, (3.0, 3.0), (1.0, 1.0, 3.0)).ndim == 2


# ---------------------------------------------------------------- library


def small_library(spacing=(1.0, 1.0, 1.0)):
    rng = np.random.default_rng(11)
    shapes = [rng.random((3 + k, 4, 5 + k)) > 0.4 for k in range(5)]
    shapes.append(np.ones((1, 1, 1), dtype=bool))
    return LesionLibrary(shapes, spacing)


def test_library_npz_round_trip_is_exact(tmp_path):
    library = small_library((0.9, 0.9, 1.3))
    library.to_npz(tmp_path / "shapes.npz")
    loaded = LesionLibrary.from_npz(tmp_path / "shapes.npz")
    assert loaded.spacing == library.spacing
    assert len(loaded) == len(library)
    for original, copy in zip(library.shapes, loaded.shapes):
        assert copy.dtype == bool and np.array_equal(original, copy)


def test_library_from_masks_and_augmented_samples():
    mask = np.zeros((12, 12, 12), dtype=np.uint8)
    mask[1:4, 1:3, 1:6] = 1
    mask[8, 8, 8] = 1  # a speck below min_voxels
    library = LesionLibrary.from_lesion_masks([mask], (1.0, 1.0, 1.0), min_voxels=3)
    assert len(library) == 1 and library.shapes[0].shape == (3, 2, 5)
    rng = np.random.default_rng(0)
    seen = {library.sample(rng).shape for _ in range(40)}
    assert seen == {(3, 2, 5), (3, 5, 2)}  # 90-degree axial rotations swap y and x only
    anisotropic = LesionLibrary(library.shapes, (0.5, 1.0, 1.0))
    assert not anisotropic.can_rotate_in_plane
    assert {anisotropic.sample(rng).shape for _ in range(20)} == {(3, 2, 5)}


def test_library_resampling_keeps_physical_size():
    ball = radius_grid((21, 21, 21), (1.0, 1.0, 1.0)) < 8
    library = LesionLibrary([ball], (1.0, 1.0, 1.0))
    coarse = library.resampled((1.0, 1.0, 2.0))
    assert coarse.spacing == (1.0, 1.0, 2.0)
    assert coarse.shapes[0].sum() * 2.0 == pytest.approx(ball.sum(), rel=0.1)
    tiny = LesionLibrary([np.ones((1, 1, 1), bool)], (0.5, 0.5, 0.5)).resampled((2.0, 2.0, 2.0))
    assert tiny.shapes[0].sum() == 1


def test_axial_cross_section_prefers_large_slices():
    shape = np.zeros((3, 5, 5), dtype=bool)
    shape[0, 2, 2] = True
    shape[1] = True
    rng = np.random.default_rng(0)
    areas = [axial_cross_section(shape, rng).sum() for _ in range(200)]
    assert set(areas) == {1, 25} and areas.count(25) > 150
    assert axial_cross_section(shape, rng, min_area_voxels=100) is None


# ---------------------------------------------------------------- placement


def test_placed_shapes_lie_in_wm_and_brain(head):
    rng = np.random.default_rng(5)
    for seed in range(10):
        shape = random_ellipsoid(np.random.default_rng(seed), (1.5, 4.0))
        placed = place_shape(shape, head["wm"], rng, min_wm_fraction=0.9, brain_mask=head["brain"])
        assert placed is not None and placed.shape == head["wm"].shape
        assert not (placed & ~head["brain"]).any()
        assert (placed & head["wm"]).sum() >= 0.9 * placed.sum()
        assert placed.sum() >= 0.9 * shape.sum()


def test_forbidden_voxels_count_against_and_are_never_returned(head):
    forbidden = head["wm"].copy()
    forbidden[:, :, :22] = False  # half of the WM is taken by "real lesions"
    rng = np.random.default_rng(2)
    for _ in range(10):
        placed = place_shape(
            np.ones((3, 3, 3), bool), head["wm"], rng, 0.9, brain_mask=head["brain"], forbidden=forbidden
        )
        assert placed is not None and not (placed & forbidden).any()
    # Forbidden WM does not count as WM: with every other voxel forbidden, 90 % is unreachable.
    checkerboard = head["wm"] & (np.indices(head["wm"].shape).sum(axis=0) % 2 == 0)
    cube = np.ones((3, 3, 3), bool)
    assert place_shape(cube, head["wm"], rng, 0.9, brain_mask=head["brain"], forbidden=checkerboard) is None
    assert place_shape(cube, head["wm"], rng, 0.4, brain_mask=head["brain"], forbidden=checkerboard) is not None


def test_impossible_placement_returns_none_or_best(head):
    huge = np.ones((30, 30, 30), dtype=bool)
    rng = np.random.default_rng(0)
    assert place_shape(huge, head["wm"], rng, 0.9, brain_mask=head["brain"], max_tries=5) is None
    best = place_shape(huge, head["wm"], rng, 0.9, brain_mask=head["brain"], max_tries=5, return_best=True)
    assert best is not None and best.any() and not (best & ~head["brain"]).any()
    assert place_shape(huge, np.zeros_like(head["wm"]), rng, 0.0, return_best=True) is None


def test_centre_weights_steer_placement(head):
    weights = np.zeros(head["wm"].shape)
    weights[18, 22, 8:10] = 1.0  # only two candidate anchors
    placer = ShapePlacer(head["wm"], head["brain"], centre_weights=weights)
    rng = np.random.default_rng(0)
    for _ in range(5):
        placement = placer.place(np.ones((1, 1, 1), bool), rng)
        assert placement.slices[0].start == 18 and placement.slices[2].start in (8, 9)
    near = periventricular_weights(head["ventricles"], scale_mm=5.0)
    assert near[18, 22, 22 + 7] > near[18, 22, 22 + 14] > 0


# ---------------------------------------------------------------- sampler


def test_sampler_reproducible_and_seed_dependent(head):
    sampler = MaskSampler({"lesions_per_mask": [2, 3]}, small_library())
    first = sampler.sample_volume_mask(head["wm"], head["brain"], np.random.default_rng(42))
    again = sampler.sample_volume_mask(head["wm"], head["brain"], np.random.default_rng(42))
    other = sampler.sample_volume_mask(head["wm"], head["brain"], np.random.default_rng(43))
    assert first.any() and np.array_equal(first, again) and not np.array_equal(first, other)


def test_sampler_masks_stay_in_brain_and_off_forbidden(head):
    forbidden = np.zeros_like(head["wm"])
    forbidden[10:26, 10:34, 14:30] = True
    sampler = MaskSampler({"dilation_radius_voxels": 2, "lesions_per_mask": [1, 4]}, small_library())
    rng = np.random.default_rng(0)
    for _ in range(15):
        mask = sampler.sample_volume_mask(head["wm"], head["brain"], rng, forbidden=forbidden)
        assert mask.any() and not (mask & forbidden).any() and not (mask & ~head["brain"]).any()
        k = 18
        slice_mask = sampler.sample_slice_mask(head["wm"][k], head["brain"][k], rng, forbidden=forbidden[k])
        assert slice_mask.ndim == 2 and slice_mask.any()
        assert not (slice_mask & forbidden[k]).any() and not (slice_mask & ~head["brain"][k]).any()


def test_sampler_dilates_the_placed_shapes(head):
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    plain = MaskSampler({"dilation_radius_voxels": 0, "lesions_per_mask": [1, 1]})
    dilated = MaskSampler({"dilation_radius_voxels": 1, "lesions_per_mask": [1, 1]})
    base = plain.sample_volume_mask(head["wm"], head["brain"], rng_a)
    grown = dilated.sample_volume_mask(head["wm"], head["brain"], rng_b)
    assert np.array_equal(grown, dilate_mask(base, 1) & head["brain"])


def test_sampler_mixture_ratio_and_healthy_only():
    rng = np.random.default_rng(0)
    sampler = MaskSampler({"real_shape_fraction": 0.3}, small_library())
    kinds = [sampler.choose_shape(rng, 3)[1] for _ in range(2000)]
    assert kinds.count("real") / len(kinds) == pytest.approx(0.3, abs=0.04)
    kinds_2d = [sampler.choose_shape(rng, 2)[1] for _ in range(1000)]
    assert kinds_2d.count("real") / len(kinds_2d) == pytest.approx(0.3, abs=0.05)
    healthy = MaskSampler({"real_shape_fraction": 1.0}, None)
    assert {healthy.choose_shape(rng, 3)[1] for _ in range(50)} == {"synthetic"}


def test_sampler_falls_back_to_brain_without_wm(head):
    empty_wm = np.zeros_like(head["wm"][18])
    sampler = MaskSampler()
    mask = sampler.sample_slice_mask(empty_wm, head["brain"][18], np.random.default_rng(0))
    assert mask.any() and not (mask & ~head["brain"][18]).any()
    strict = MaskSampler({"fallback_to_brain": False})
    assert not strict.sample_slice_mask(empty_wm, head["brain"][18], np.random.default_rng(0)).any()


def test_config_defaults_validation_and_statistics_fit():
    config = resolve_mask_config()
    assert config == DEFAULT_MASK_CONFIG and config is not DEFAULT_MASK_CONFIG
    assert json.loads(json.dumps(config)) == config
    with pytest.raises(ValueError):
        resolve_mask_config({"real_shape_fractoin": 0.5})
    with pytest.raises(ValueError):
        resolve_mask_config({"lesions_per_mask": [3, 1]})
    stats = {
        "n_lesions": 10,
        "extent_mm": {axis: {"p5": 3.0, "p95": 20.0} for axis in ("x", "y", "z")},
        "boundary_width_mm": 1.9,
    }
    fitted = mask_config_from_statistics(stats, (1.0, 1.0, 1.0))
    assert fitted["ellipsoid_radius_mm"] == [1.5, 10.0] and fitted["dilation_radius_voxels"] == 2
    healthy = mask_config_from_statistics({"n_lesions": 0, "boundary_width_mm": None}, (1.0, 1.0, 1.0))
    assert healthy["real_shape_fraction"] == 0.0 and healthy["dilation_radius_voxels"] == 1
