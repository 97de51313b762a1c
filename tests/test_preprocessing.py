"""Tests of per-case preprocessing and its inverse, on small synthetic volumes with known answers."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from ldiff.dataset.raw import RawCase
from ldiff.errors import LdiffError
from ldiff.io import Geometry, read_image
from ldiff.preprocessing import (
    PercentileNormalizer,
    Reorientation,
    brain_bounding_box,
    compute_masks,
    crop_to_box,
    cropped_geometry,
    derive_brain_mask,
    derive_wm_mask,
    fit_normalizers,
    pad_from_box,
    preprocess_case,
    reorient_to_canonical,
    resample_array,
    resampled_geometry,
    restore_to_original,
    spacing_matches,
)

RAS_DIRECTION_LPS = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
# A permuted and flipped grid: index x -> posterior, index y -> inferior, index z -> right.
PERMUTED_DIRECTION = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
SIZE_XYZ = (20, 24, 18)
SPACING_XYZ = (1.0, 1.2, 0.9)
# The canonical (R, A, S) axes are the raw index axes (z, x, y), so this is the raw spacing in RAS order.
CANONICAL_SPACING = [0.9, 1.0, 1.2]
CONFIG = {
    "target_spacing": CANONICAL_SPACING,
    "normalization": {"scheme": "percentile_clip", "lower_percentile": 0.5, "upper_percentile": 99.5},
}
CSF, GM, WM = 1, 2, 3


def make_image(array_zyx: np.ndarray, direction=PERMUTED_DIRECTION, spacing=SPACING_XYZ, origin=(12.5, -30.0, 7.25)) -> sitk.Image:
    image = sitk.GetImageFromArray(array_zyx)
    image.SetDirection(direction)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def ellipsoid(shape_zyx, centre_zyx, radii_zyx) -> np.ndarray:
    grid = np.indices(shape_zyx, dtype=float)
    distance = sum(((grid[a] - centre_zyx[a]) / radii_zyx[a]) ** 2 for a in range(3))
    return distance <= 1.0


def phantom(seed: int = 0, smooth: bool = False) -> dict[str, np.ndarray]:
    """A skull-stripped head: GM shell, WM core, CSF ventricle, one lesion; T1 and FLAIR channels.

    ``smooth`` replaces the tissue intensities by a slowly varying field (for resampling tests).
    """
    shape = SIZE_XYZ[::-1]
    centre = tuple((n - 1) / 2 for n in shape)
    brain = ellipsoid(shape, centre, (7.5, 10.0, 8.5))
    white = ellipsoid(shape, centre, (5.0, 7.0, 6.0))
    ventricle = ellipsoid(shape, centre, (1.5, 2.0, 1.5))
    tissue = np.zeros(shape, np.uint8)
    tissue[brain] = GM
    tissue[white] = WM
    tissue[ventricle] = CSF
    lesion = ellipsoid(shape, (centre[0], centre[1] + 4, centre[2] + 2), (1.2, 1.5, 1.5)) & white & ~ventricle
    rng = np.random.default_rng(seed)
    if smooth:
        z, y, x = np.indices(shape, dtype=float)
        t1 = 600 + 150 * np.sin(z / 4.0) * np.cos(y / 5.0) + 100 * np.sin(x / 6.0)
    else:
        t1 = np.choose(tissue, [0.0, 250.0, 550.0, 850.0]) + rng.normal(0, 25, shape)
        t1[lesion] = 400
    t1[~brain] = 0
    flair = np.choose(tissue, [0.0, 100.0, 500.0, 400.0]) + rng.normal(0, 20, shape)
    flair[lesion] = 900
    flair[~brain] = 0
    return {
        "t1": np.rint(t1).astype(np.int16),
        "flair": np.rint(flair).astype(np.int16),
        "tissue": tissue,
        "lesion": lesion.astype(np.uint8),
        "brain": brain,
    }


def write_case(tmp_path, volumes: dict[str, np.ndarray], with_tissue: bool, spacing=SPACING_XYZ) -> RawCase:
    paths = {}
    for name in ("t1", "flair", "lesion", "tissue"):
        paths[name] = tmp_path / f"{name}.nii.gz"
        sitk.WriteImage(make_image(volumes[name], spacing=spacing), str(paths[name]))
    return RawCase(
        "case_001", "Tr", (paths["t1"], paths["flair"]), paths["lesion"], paths["tissue"] if with_tissue else None
    )


def assert_same_geometry(image: sitk.Image, reference: sitk.Image) -> None:
    assert image.GetSize() == reference.GetSize()
    np.testing.assert_allclose(image.GetSpacing(), reference.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(image.GetDirection(), reference.GetDirection(), atol=1e-6)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


# ---- orientation ---------------------------------------------------------------------------------

SIGNED_PERMUTATIONS = [
    (perm, signs) for perm in itertools.permutations(range(3)) for signs in itertools.product((1.0, -1.0), repeat=3)
]


@pytest.mark.parametrize("perm, signs", SIGNED_PERMUTATIONS)
def test_reorientation_is_exact_and_keeps_every_voxel_in_place(perm, signs):
    matrix = np.zeros((3, 3))
    for index_axis, physical_axis in enumerate(perm):
        matrix[physical_axis, index_axis] = signs[index_axis]
    values = np.arange(5 * 4 * 3, dtype=np.int32).reshape(5, 4, 3)  # every voxel unique
    image = make_image(values, direction=tuple(matrix.ravel()), spacing=(0.7, 1.1, 2.3))

    canonical, reorientation = reorient_to_canonical(image)

    np.testing.assert_allclose(canonical.GetDirection(), RAS_DIRECTION_LPS, atol=1e-12)
    reference = sitk.DICOMOrient(image, "RAS")  # ITK >= 5.4: letters name where each axis points to
    np.testing.assert_array_equal(sitk.GetArrayFromImage(canonical), sitk.GetArrayFromImage(reference))
    np.testing.assert_allclose(canonical.GetOrigin(), reference.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(canonical.GetSpacing(), reference.GetSpacing(), atol=1e-12)
    canonical_array = sitk.GetArrayFromImage(canonical)
    for value in (0, 17, 59):
        old_index = [int(v) for v in np.argwhere(values == value)[0][::-1]]
        new_index = [int(v) for v in np.argwhere(canonical_array == value)[0][::-1]]
        np.testing.assert_allclose(
            canonical.TransformIndexToPhysicalPoint(new_index), image.TransformIndexToPhysicalPoint(old_index), atol=1e-9
        )
    np.testing.assert_array_equal(reorientation.invert_array(canonical_array), values)
    assert Reorientation.from_dict(json.loads(json.dumps(reorientation.to_dict()))) == reorientation


def test_reorientation_of_an_oblique_grid_picks_the_nearest_permutation():
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    direction = rotation @ np.asarray(PERMUTED_DIRECTION).reshape(3, 3)
    values = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    image = make_image(values, direction=tuple(direction.ravel()))

    canonical, reorientation = reorient_to_canonical(image)

    assert reorientation == Reorientation.from_direction(PERMUTED_DIRECTION)
    assert np.all(np.sign(np.diag(np.reshape(canonical.GetDirection(), (3, 3)))) == [-1, -1, 1])
    np.testing.assert_array_equal(reorientation.invert_array(sitk.GetArrayFromImage(canonical)), values)


# ---- masks ---------------------------------------------------------------------------------------

def test_tissue_masks_count_lesions_as_brain_and_white_matter():
    volumes = phantom()
    lesion = volumes["lesion"].copy()
    tissue = volumes["tissue"].copy()
    tissue[lesion > 0] = GM  # a segmentation that mislabelled the lesion
    brain, wm, sources = compute_masks(np.stack([volumes["t1"]]), lesion > 0, tissue, wm_channel=0)
    np.testing.assert_array_equal(brain, tissue > 0)
    np.testing.assert_array_equal(wm, (tissue == WM) | (lesion > 0))
    assert sources == {"brain_mask_source": "tissue_map", "wm_mask_source": "tissue_map"}


def test_derived_brain_mask_fills_holes_and_drops_specks():
    volumes = phantom()
    t1 = volumes["t1"].copy()
    t1[volumes["tissue"] == CSF] = 0  # an enclosed zero region (dark ventricle after clipping)
    t1[0, 0, 0] = 500  # an isolated bright speck outside the brain
    np.testing.assert_array_equal(derive_brain_mask(t1), volumes["brain"])


def test_derived_brain_mask_keeps_a_ventricle_open_to_the_outside_on_a_zero_background_with_undershoot():
    """A resampled skull-stripped scan: background exactly 0, a few negative voxels at the brain's edge
    (interpolation undershoot, so 0 is not the minimum), and a dark CSF channel from the ventricle to
    the outside; Otsu's threshold would cut the ventricle and the channel out of the brain."""
    volumes = phantom()
    t1 = volumes["t1"].astype(np.float32)
    tissue = volumes["tissue"]
    centre = [n // 2 for n in t1.shape]
    channel = np.zeros(t1.shape, bool)
    channel[centre[0], centre[1], centre[2]:] = True  # from the ventricle's centre out of the head
    channel &= volumes["brain"]
    t1[channel | (tissue == CSF)] = 60.0
    edge = volumes["brain"] & ~ndimage.binary_erosion(volumes["brain"])
    t1[tuple(np.argwhere(edge)[:5].T)] = -40.0  # undershoot: the minimum is not the background
    brain = derive_brain_mask(t1)
    np.testing.assert_array_equal(brain, volumes["brain"])
    assert np.all(brain[tissue == CSF]) and np.all(brain[channel])


def test_derived_brain_mask_uses_otsu_on_a_noisy_background():
    volumes = phantom()
    noisy = volumes["t1"].astype(float) + np.random.default_rng(1).normal(0, 5, volumes["t1"].shape)
    brain = derive_brain_mask(noisy)
    assert dice(brain, volumes["brain"]) > 0.97


def test_clustered_white_matter_recovers_the_phantom():
    volumes = phantom()
    lesion = volumes["lesion"] > 0
    wm = derive_wm_mask(volumes["t1"], volumes["brain"], lesion)
    truth = (volumes["tissue"] == WM) | lesion
    assert dice(wm, truth) > 0.9
    assert np.all(wm[lesion])
    assert not np.any(wm & ~volumes["brain"])


def test_without_a_t1_channel_white_matter_falls_back_to_the_brain():
    volumes = phantom()
    brain, wm, sources = compute_masks(np.stack([volumes["flair"]]), volumes["lesion"] > 0, None, wm_channel=None)
    np.testing.assert_array_equal(wm, brain)
    assert sources["wm_mask_source"] == "brain_fallback"


# ---- cropping ------------------------------------------------------------------------------------

def test_crop_box_is_tight_and_padding_inverts_it():
    mask = np.zeros((10, 12, 14), bool)
    mask[2:5, 3, 4:11] = True
    mask[7, 9, 6] = True
    assert brain_bounding_box(mask) == [[2, 8], [3, 10], [4, 11]]
    assert brain_bounding_box(mask, margin=3) == [[0, 10], [0, 12], [1, 14]]
    values = np.random.default_rng(0).normal(size=(2, 10, 12, 14))
    box = brain_bounding_box(mask, margin=1)
    restored = pad_from_box(crop_to_box(values, box), box, mask.shape, fill_value=np.nan)
    inside = tuple(slice(a, b) for a, b in box)
    np.testing.assert_array_equal(restored[(Ellipsis, *inside)], values[(Ellipsis, *inside)])
    assert np.isnan(restored).sum() == values.size - crop_to_box(values, box).size
    with pytest.raises(LdiffError):
        brain_bounding_box(np.zeros((3, 3, 3), bool))


def test_cropped_geometry_matches_simpleitk_slicing():
    image = make_image(np.zeros((18, 24, 20), np.float32))
    box = [[3, 15], [2, 20], [5, 9]]
    sliced = image[5:9, 2:20, 3:15]
    geometry = cropped_geometry(Geometry.of(image), box)
    assert geometry.size == sliced.GetSize()
    np.testing.assert_allclose(geometry.origin, sliced.GetOrigin(), atol=1e-9)


# ---- resampling ----------------------------------------------------------------------------------

def test_resampled_grid_keeps_the_centre_and_matching_axes():
    geometry = Geometry((20, 24, 18), (1.0, 1.0, 0.9), (3.0, -4.0, 5.0), PERMUTED_DIRECTION)
    resampled = resampled_geometry(geometry, (1.5, 1.0, 1.8))
    assert resampled.size == (13, 24, 9)
    np.testing.assert_allclose(resampled.spacing, (1.5, 1.0, 1.8))

    def centre(g: Geometry) -> np.ndarray:
        matrix = np.reshape(g.direction, (3, 3))
        return np.asarray(g.origin) + matrix @ ((np.asarray(g.size) - 1) * np.asarray(g.spacing) / 2)

    np.testing.assert_allclose(centre(resampled), centre(geometry), atol=1e-9)
    assert spacing_matches((1.0, 1.0, 0.9), (1.0, 1.0, 0.9003))
    assert not spacing_matches((1.0, 1.0, 0.9), (1.0, 1.0, 0.91))


def test_masks_stay_binary_when_resampled():
    mask = phantom()["lesion"]
    source = Geometry.of(make_image(mask))
    target = resampled_geometry(source, (1.7, 0.8, 1.3))
    resampled = resample_array(mask, source, target, "nearest")
    assert resampled.dtype == np.uint8
    assert set(np.unique(resampled)) == {0, 1}
    resampled_bool = resample_array(mask > 0, source, target, "nearest")
    assert set(np.unique(resampled_bool)) == {0, 1}


# ---- normalisation -------------------------------------------------------------------------------

def test_normalisation_hits_the_percentiles_exactly_and_inverts():
    rng = np.random.default_rng(0)
    brain = np.zeros((4, 8, 10), bool)
    brain.flat[rng.choice(brain.size, 201, replace=False)] = True
    image = np.full(brain.shape, -50.0)
    # 201 brain values 0..200, so the 0.5th and 99.5th percentiles are exactly the values 1 and 199.
    image[brain] = rng.permutation(np.arange(201.0)) * 3.0 + 10.0
    normalizer = PercentileNormalizer.fit(image, brain, 0.5, 99.5)
    assert (normalizer.low, normalizer.high) == (13.0, 607.0)

    normalized = normalizer.normalize(image, brain)
    assert normalized.dtype == np.float32
    assert normalized[image == 13.0].item() == -1.0 and normalized[image == 607.0].item() == 1.0
    assert np.all(normalized[~brain] == -1.0)
    assert normalized.min() == -1.0 and normalized.max() == 1.0
    in_range = brain & (image >= normalizer.low) & (image <= normalizer.high)
    restored = normalizer.denormalize(normalized)
    np.testing.assert_allclose(restored[in_range], image[in_range], rtol=0, atol=1e-6 * (normalizer.high - normalizer.low))
    assert PercentileNormalizer.from_dict(json.loads(json.dumps(normalizer.to_dict()))) == normalizer


def test_normalisation_rejects_unknown_schemes_and_constant_brains_stay_invertible():
    brain = np.ones((2, 2, 2), bool)
    with pytest.raises(LdiffError):
        fit_normalizers(np.zeros((1, 2, 2, 2)), brain, {"scheme": "zscore", "lower_percentile": 1, "upper_percentile": 99})
    constant = np.full((2, 2, 2), 7.0)
    (normalizer,) = fit_normalizers(constant[None], brain, CONFIG["normalization"])
    np.testing.assert_array_equal(normalizer.normalize(constant, brain), 0.0)
    np.testing.assert_array_equal(normalizer.denormalize(normalizer.normalize(constant)), 7.0)


# ---- the whole case ------------------------------------------------------------------------------

@pytest.mark.parametrize("with_tissue", [True, False])
def test_preprocess_case_without_resampling_round_trips_exactly(tmp_path, with_tissue):
    volumes = phantom()
    case = write_case(tmp_path, volumes, with_tissue)
    arrays, properties = preprocess_case(case, CONFIG, wm_channel=0)
    properties = json.loads(json.dumps(properties))  # must survive properties.json

    assert properties["resampled"] is False
    assert properties["wm_mask_source"] == ("tissue_map" if with_tissue else "kmeans_channel_0")
    image = arrays["image"]
    assert image.dtype == np.float32 and image.shape[0] == 2 and image.shape[1:] == arrays["brain"].shape
    for name in ("lesion", "brain", "wm"):
        assert arrays[name].dtype == np.uint8 and set(np.unique(arrays[name])) <= {0, 1}
    brain = arrays["brain"] > 0
    assert image.min() == -1.0 and image.max() == 1.0 and np.all(image[:, ~brain] == -1.0)
    # The crop is the tight brain box: every face of the box touches the brain.
    assert list(brain.shape) == properties["shape_after_crop_zyx"]
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        assert brain.any(axis=other)[0] and brain.any(axis=other)[-1]

    # The preprocessed volume is the RAS+ volume cropped: axial slices are array[k], k inferior -> superior.
    t1_file = read_image(case.image_files[0])
    ras = sitk.GetArrayFromImage(sitk.DICOMOrient(t1_file, "RAS")).astype(float)
    ras_crop = crop_to_box(ras, properties["crop_bbox_zyx"])
    low, high = properties["normalization"][0]["low"], properties["normalization"][0]["high"]
    in_range = brain & (ras_crop >= low) & (ras_crop <= high)
    expected = np.clip((ras_crop - low) / (high - low) * 2 - 1, -1, 1)
    np.testing.assert_allclose(image[0][in_range], expected[in_range], atol=1e-6)

    for channel, name in enumerate(("t1", "flair")):
        restored = restore_to_original(image[channel], properties, channel=channel)
        assert_same_geometry(restored, read_image(case.image_files[channel]))
        restored_array = sitk.GetArrayFromImage(restored)
        original = volumes[name].astype(float)
        normalization = properties["normalization"][channel]
        keep = volumes["brain"] & (original >= normalization["low"]) & (original <= normalization["high"])
        tolerance = 1e-6 * (normalization["high"] - normalization["low"])
        np.testing.assert_allclose(restored_array[keep], original[keep], rtol=0, atol=tolerance)
        np.testing.assert_array_equal(np.rint(restored_array[keep]), original[keep])
    lesion_back = restore_to_original(arrays["lesion"], properties, channel=None, is_mask=True)
    assert_same_geometry(lesion_back, read_image(case.label_file))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(lesion_back), volumes["lesion"])
    brain_back = sitk.GetArrayFromImage(restore_to_original(arrays["brain"], properties, channel=None, is_mask=True))
    np.testing.assert_array_equal(brain_back > 0, volumes["brain"])


def test_preprocess_case_with_resampling_round_trips_within_interpolation_error(tmp_path):
    volumes = phantom(smooth=True)
    case = write_case(tmp_path, volumes, with_tissue=True, spacing=(1.0, 1.0, 1.0))
    config = dict(CONFIG, target_spacing=[1.5, 1.5, 1.5])
    arrays, properties = preprocess_case(case, config, wm_channel=0)

    assert properties["resampled"] is True
    assert properties["spacing_after_resampling"] == [1.5, 1.5, 1.5]
    crop_shape = np.array(properties["shape_after_crop_zyx"])
    np.testing.assert_array_equal(arrays["image"].shape[1:], np.rint(crop_shape / 1.5))
    for name in ("lesion", "brain", "wm"):
        assert set(np.unique(arrays[name])) == {0, 1}

    restored = restore_to_original(arrays["image"][0], properties, channel=0)
    assert_same_geometry(restored, read_image(case.image_files[0]))
    normalization = properties["normalization"][0]
    original = volumes["t1"].astype(float)
    # Compare away from the brain edge: the step to the background blurs over ~3 voxels each way
    # (a tiny phantom is mostly edge; a real brain's interior is most of it).
    interior = ndimage.distance_transform_edt(volumes["brain"]) >= 4
    keep = interior & (original > normalization["low"]) & (original < normalization["high"])
    error = np.abs(sitk.GetArrayFromImage(restored)[keep] - original[keep])
    assert keep.sum() > 200
    assert error.max() < 0.02 * (normalization["high"] - normalization["low"])
    assert error.mean() < 0.005 * (normalization["high"] - normalization["low"])

    lesion_back = sitk.GetArrayFromImage(restore_to_original(arrays["lesion"], properties, None, is_mask=True))
    assert set(np.unique(lesion_back)) == {0, 1}
    assert np.any((lesion_back > 0) & (volumes["lesion"] > 0))  # a 15-voxel lesion: overlap, not Dice
    brain_back = sitk.GetArrayFromImage(restore_to_original(arrays["brain"], properties, None, is_mask=True))
    # Nearest neighbour there (0.75 mm off at most) and back (0.5 mm) moves no voxel's value by more
    # than one voxel along any axis, so the brain lies between its 3x3x3 erosion and dilation.
    cube = np.ones((3, 3, 3), bool)
    assert np.all(brain_back[ndimage.binary_erosion(volumes["brain"], cube)] == 1)
    assert np.all(brain_back[~ndimage.binary_dilation(volumes["brain"], cube)] == 0)


def test_unlabelled_case_gets_an_empty_lesion_mask_and_fill_value_is_honoured(tmp_path):
    volumes = phantom()
    case = write_case(tmp_path, volumes, with_tissue=False)
    unlabelled = RawCase(case.identifier, "Ts", case.image_files, None, None)
    arrays, properties = preprocess_case(unlabelled, CONFIG, wm_channel=None)
    assert not arrays["lesion"].any()
    assert properties["wm_mask_source"] == "brain_fallback"
    restored = sitk.GetArrayFromImage(restore_to_original(arrays["image"][1], properties, channel=1, fill_value=-7.0))
    box_mask = Reorientation.from_dict(properties["orientation"]).invert_array(
        pad_from_box(np.ones(properties["shape_after_crop_zyx"], np.uint8), properties["crop_bbox_zyx"],
                     tuple(properties["canonical_geometry"]["size"][::-1]))
    )
    assert np.all(restored[box_mask == 0] == -7.0) and not np.any(restored[box_mask > 0] == -7.0)
