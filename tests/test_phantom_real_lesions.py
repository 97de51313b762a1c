"""Real lesion masks as phantom lesions: placed by world coordinates, mirrored, kept in WM, recorded.

Masks are drawn here on an MNI grid of their own (FSL's 1 mm layout, coarsened to 4 mm) as balls
around known template WM voxels, so where each lesion must land is known by construction.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from ldiff.dataset.example import make_example_dataset
from ldiff.dataset.phantom_case import simulate_case
from ldiff.dataset.phantom_parameters import PhantomParameters
from ldiff.dataset.phantom_real_lesions import load_real_lesion_library, real_lesion_maps
from ldiff.dataset.phantom_template import WM, build_phantom_template
from ldiff.errors import LdiffError
from ldiff.io import array_to_image

SPACING_MM = 4.0
OPEN_MS_MASKS = Path(__file__).resolve().parents[2] / "shared" / "data" / "open_ms_data" / "lesion_masks_mni"


@pytest.fixture(scope="module")
def template():
    return build_phantom_template(SPACING_MM, PhantomParameters())


def mni_grid_image(array_zyx: np.ndarray) -> sitk.Image:
    """FSL's MNI152 grid layout (RAS origin -90, -126, -72; x and y flipped in LPS) at 4 mm."""
    image = sitk.GetImageFromArray(array_zyx.astype(np.uint8))
    image.SetSpacing((4.0, 4.0, 4.0))
    image.SetOrigin((90.0, 126.0, -72.0))
    image.SetDirection((-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))
    return image


def deep_wm_point(template, side: int) -> np.ndarray:
    """LPS world point of the template voxel deepest inside WM on one side (x > 0 or x < 0 in LPS)."""
    wm = template.tissue_labels == WM
    depth = ndimage.distance_transform_edt(wm)
    reference = array_to_image(np.zeros(template.shape, np.float32), template.geometry)
    xs = np.array([reference.TransformIndexToPhysicalPoint((int(i), 0, 0))[0] for i in range(template.shape[2])])
    depth[:, :, np.sign(xs) != side] = 0
    z, y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return np.array(reference.TransformIndexToPhysicalPoint((int(x), int(y), int(z))))


def ball_mask(centre_lps: np.ndarray, radius_mm: float) -> sitk.Image:
    image = mni_grid_image(np.zeros((46, 55, 46)))
    size = image.GetSize()
    points = np.array([[image.TransformIndexToPhysicalPoint((i, j, k)) for i in range(size[0])]
                       for k in range(size[2]) for j in range(size[1])]).reshape(size[2], size[1], size[0], 3)
    inside = np.linalg.norm(points - centre_lps, axis=-1) <= radius_mm
    return mni_grid_image(inside)


@pytest.fixture(scope="module")
def masks_folder(template, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("real_masks")
    sitk.WriteImage(ball_mask(deep_wm_point(template, +1), 7.0), str(folder / "patientA_lesion_mask.nii.gz"))
    sitk.WriteImage(mni_grid_image(np.zeros((46, 55, 46))), str(folder / "patientB_lesion_mask.nii.gz"))  # no lesions
    return folder


def centre_of(values: np.ndarray, template) -> np.ndarray:
    """LPS world centre of mass of a (z, y, x) map on the template grid."""
    z, y, x = ndimage.center_of_mass(values)
    reference = array_to_image(np.zeros(template.shape, np.float32), template.geometry)
    return np.array(reference.TransformContinuousIndexToPhysicalPoint((float(x), float(y), float(z))))


def test_masks_land_where_their_world_coordinates_say_and_mirror_about_the_midline(template, masks_folder):
    library = load_real_lesion_library(masks_folder, template.geometry, template.tissue_labels > 0)
    assert library.files == ["patientA_lesion_mask.nii.gz"]  # the empty mask lends nothing
    given, mirrored = library.maps
    assert given.source == "patientA_lesion_mask.nii.gz" and mirrored.source.endswith("(mirrored)")
    target = deep_wm_point(template, +1)
    found = centre_of(given.dense(template.shape), template)
    assert np.linalg.norm(found - target) < 0.5 * SPACING_MM
    assert np.linalg.norm(centre_of(mirrored.dense(template.shape), template) - target * [-1, 1, 1]) < 0.5 * SPACING_MM
    # The volume is the mask's own (a 7 mm ball drawn on 4 mm voxels: 4/3 pi 7^3 mm^3 within the voxelisation).
    assert given.volume_ml == pytest.approx(4 / 3 * np.pi * 7**3 / 1000, rel=0.35)


def test_real_lesions_stay_in_white_matter_and_get_one_strength_per_lesion(template, masks_folder):
    library = load_real_lesion_library(masks_folder, template.geometry, template.tissue_labels > 0)
    white_matter = template.tissue_probabilities[WM - 1]
    params = PhantomParameters()
    partial_volume, severity = real_lesion_maps(np.random.default_rng(0), library.maps[0], white_matter,
                                                SPACING_MM, params)
    assert np.all(partial_volume <= white_matter + 1e-6) and partial_volume.max() > 0.5
    lesion = partial_volume >= 0.5
    ratio = severity[lesion] / partial_volume[lesion]
    low, high = params.lesion_strength_range
    assert ratio.min() >= low - 1e-5 and ratio.max() <= high + 1e-5
    assert np.ptp(ratio) < 1e-5  # one connected lesion, one strength
    assert np.all(severity[~(partial_volume > 0)] == 0)


def test_cases_take_a_real_patient_s_lesions_at_its_site_and_others_stay_bit_identical(template, masks_folder):
    params = PhantomParameters()
    library = load_real_lesion_library(masks_folder, template.geometry, template.tissue_labels > 0)
    real = simulate_case(template, 0, 1, params, library, real_lesion_share=1.0)
    assert real.lesion_source.startswith("patientA_lesion_mask.nii.gz")
    site = deep_wm_point(template, +1) * ([-1, 1, 1] if "mirrored" in real.lesion_source else 1)
    # The anatomy moves the lesion with it: a few mm of deformation, no more.
    assert np.linalg.norm(centre_of(real.lesion_label.astype(float), template) - site) < 3 * SPACING_MM
    assert ndimage.label(real.lesion_label)[1] >= 1
    # With share 0, or without a library, a case is the same case bit for bit (its own random stream).
    plain = simulate_case(template, 0, 1, params)
    kept = simulate_case(template, 0, 1, params, library, real_lesion_share=0.0)
    assert kept.lesion_source == plain.lesion_source == "simulated"
    assert np.array_equal(kept.images, plain.images) and np.array_equal(kept.lesion_label, plain.lesion_label)
    # The healthy images do not depend on where the lesions came from.
    assert np.array_equal(real.healthy_images, plain.healthy_images)


def test_dataset_json_records_the_masks_and_each_case_s_source(masks_folder, tmp_path):
    folder = make_example_dataset(tmp_path, num_train=2, num_test=1, spacing_mm=SPACING_MM, num_workers=1,
                                  show_progress=False, real_lesion_masks=masks_folder, real_lesion_share=1.0)
    description = json.loads((folder / "dataset.json").read_text())
    assert description["real_lesion_masks"]["files"] == ["patientA_lesion_mask.nii.gz"]
    assert description["real_lesion_masks"]["share"] == 1.0
    assert set(description["lesion_sources"]) == {"MSPhantom_000", "MSPhantom_001", "MSPhantom_002"}
    assert all(source.startswith("patientA") for source in description["lesion_sources"].values())


def test_bad_mask_folders_are_one_sentence(template, masks_folder, tmp_path):
    brain = template.tissue_labels > 0
    with pytest.raises(LdiffError, match="folder not found"):
        load_real_lesion_library(tmp_path / "missing", template.geometry, brain)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LdiffError, match="holds no .nii.gz"):
        load_real_lesion_library(tmp_path / "empty", template.geometry, brain)
    odd = tmp_path / "odd"
    odd.mkdir()
    sitk.WriteImage(mni_grid_image(np.full((46, 55, 46), 3)), str(odd / "labels.nii.gz"))
    with pytest.raises(LdiffError, match="labels.nii.gz: is not a 0/1 lesion mask"):
        load_real_lesion_library(odd, template.geometry, brain)
    far = tmp_path / "far"
    far.mkdir()
    outside = mni_grid_image(np.zeros((46, 55, 46)))
    outside.SetOrigin((900.0, 900.0, 900.0))
    array = np.zeros((46, 55, 46), np.uint8)
    array[20:25, 20:25, 20:25] = 1
    moved = sitk.GetImageFromArray(array)
    moved.CopyInformation(outside)
    sitk.WriteImage(moved, str(far / "elsewhere.nii.gz"))
    with pytest.raises(LdiffError, match="elsewhere.nii.gz: no lesion voxel falls inside the MNI152 brain"):
        load_real_lesion_library(far, template.geometry, brain)


@pytest.mark.skipif(not OPEN_MS_MASKS.is_dir(), reason="needs ../shared/data/open_ms_data (Lesjak et al. 2017)")
def test_the_30_real_masks_are_mni_aligned_and_span_the_real_lesion_loads():
    template = build_phantom_template(2.0, PhantomParameters())
    library = load_real_lesion_library(OPEN_MS_MASKS, template.geometry, template.tissue_labels > 0)
    assert len(library.files) == 30
    loads = sorted({item.volume_ml for item in library.maps})
    assert loads[0] < 0.5 and loads[-1] > 40  # the README's 0.1 to 50 ml
    wm = template.tissue_probabilities[WM - 1].ravel()
    # Carried by world coordinates, most lesion mass of every patient lands in template WM.
    in_wm = [float(np.sum(item.values * wm[item.indices]) / np.sum(item.values)) for item in library.maps]
    assert np.median(in_wm) > 0.6 and min(in_wm) > 0.3, in_wm
