"""Histogram standardisation (ldiff.preprocessing.standardisation) and its use at prediction.

By construction: an image whose brain values are a known monotone transform of a target histogram maps
onto the target's landmarks; the inverse undoes the map exactly; the ends of [-1, 1] and so the
background stay fixed; tied percentiles still give an invertible map. At prediction, an oracle network
(tests/test_predict_oracle.py) copies the standardised, voided input to known voxels, so the written
file is known exactly: copied tissue comes back as the input's own value (the inverse applied), a copied
void comes back as the inverse of the void value (the map applied before the network).
"""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ldiff.cli.record_landmarks import record_landmarks
from ldiff.errors import LdiffError
from ldiff.inference.predictor import COVERAGE_THRESHOLD, Predictor
from ldiff.inference.roi import BACKGROUND, coverage_in_preprocessed_space
from ldiff.masks import dilate_mask
from ldiff.preprocessing import preprocess_images, restore_to_original
from ldiff.preprocessing.standardisation import (LANDMARK_PERCENTILES, IntensityStandardisation, brain_landmarks,
                                                 target_landmarks)
from ldiff.tasks import VOID_VALUE
from test_predict import make_model_folder
from test_predict_oracle import SETTINGS, SHIFT_2D, float_case, oracle_predictor, shifted

pytestmark = pytest.mark.usefixtures("one_thread")


def brain_image(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(1, 1, 1, N + 10) image with ``values`` in the brain and -1 in a 10-voxel background."""
    image = np.concatenate([values, np.full(10, -1.0)]).astype(np.float32)[None, None, None]
    brain = np.zeros(image.shape[1:], bool)
    brain[..., :len(values)] = True
    return image, brain


def test_a_transformed_histogram_maps_onto_the_target_landmarks_and_back_exactly():
    rng = np.random.default_rng(0)
    reference = rng.uniform(-0.95, 0.95, 20000)
    target = np.percentile(reference, LANDMARK_PERCENTILES)[None]
    # The scan: the same tissue through a monotone nonlinear scanner curve (brighter mid-tones).
    image, brain = brain_image(np.sign(reference) * np.abs(reference) ** 0.6)
    mapping = IntensityStandardisation.fit(image, brain, target)
    mapped = mapping.apply(image)
    assert mapped.dtype == np.float32
    np.testing.assert_allclose(brain_landmarks(mapped, brain), target, atol=2e-3)
    assert np.all(mapped[~np.broadcast_to(brain, mapped.shape)] == -1.0), "the background stays -1"
    assert np.all(np.diff(mapped[0, 0, 0, np.argsort(image[0, 0, 0])]) >= 0), "monotone"
    np.testing.assert_allclose(mapping.invert(mapped[0], 0), image[0], atol=1e-6)
    ends = np.array([-1.0, 1.0], np.float32)
    np.testing.assert_array_equal(mapping.invert(ends, 0), ends)
    np.testing.assert_array_equal(mapping.apply(ends[None]), ends[None])


def test_matching_landmarks_give_the_identity_and_the_mapping_is_per_channel():
    rng = np.random.default_rng(1)
    values = rng.uniform(-0.9, 0.9, 5000)
    image, brain = brain_image(values)
    two = np.concatenate([image, 0.5 * image], axis=0)  # channel 1 darker than channel 0 ...
    target = np.concatenate([brain_landmarks(image, brain), brain_landmarks(image, brain)])  # ... both map onto channel 0
    mapping = IntensityStandardisation.fit(two, brain, target)
    mapped = mapping.apply(two)
    np.testing.assert_allclose(mapped[0], two[0], atol=1e-6)
    # Between the outer landmarks (beyond them the map runs to the fixed ends of [-1, 1], not on the line).
    inner = brain & (np.abs(two[0]) < np.percentile(two[0][brain], 98))
    np.testing.assert_allclose(mapped[1][inner], two[0][inner], atol=2e-3)
    np.testing.assert_allclose(mapping.invert(mapped[1], 1), two[1], atol=1e-6)


def test_tied_percentiles_still_give_an_invertible_map():
    """An integer-like image with three grey levels: most percentiles tie; the knots kept rise strictly."""
    image, brain = brain_image(np.repeat([-0.5, 0.1, 0.6], [300, 500, 200]).astype(float))
    target = np.linspace(-0.9, 0.9, len(LANDMARK_PERCENTILES))[None]
    mapping = IntensityStandardisation.fit(image, brain, target)
    for knots in (mapping.source[0], mapping.target[0]):
        assert knots[0] == -1.0 and knots[-1] == 1.0 and np.all(np.diff(knots) > 0)
    np.testing.assert_allclose(mapping.invert(mapping.apply(image)[0], 0), image[0], atol=1e-6)


def test_landmarks_that_do_not_fit_the_model_are_one_sentence():
    assert target_landmarks({}, 2) is None
    record = {"percentiles": list(LANDMARK_PERCENTILES), "mean": [[0.0] * len(LANDMARK_PERCENTILES)]}
    with pytest.raises(LdiffError, match=r"expected \(2, 9\)"):
        target_landmarks({"intensity_landmarks": record}, 2)
    with pytest.raises(LdiffError, match="brain mask is empty"):
        brain_landmarks(np.zeros((1, 2, 2, 2)), np.zeros((2, 2, 2), bool))


# ---- at prediction -------------------------------------------------------------------------------
# Landmarks far from the float case's own (its brain after normalisation is not these), so the map bends.
FAR_LANDMARKS = [[-0.9, -0.8, -0.7, -0.5, -0.3, 0.0, 0.3, 0.5, 0.8], [-0.6, -0.3, 0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.9]]


@pytest.fixture(scope="module")
def standardised_model(tmp_path_factory):
    folder = make_model_folder(tmp_path_factory.mktemp("standardised"), "cond_fill", "2d")
    description = json.loads((folder / "model.json").read_text())
    description["intensity_landmarks"] = {"percentiles": list(LANDMARK_PERCENTILES), "mean": FAR_LANDMARKS,
                                          "cases": 2, "source": "test"}
    (folder / "model.json").write_text(json.dumps(description))
    return folder


def test_prediction_standardises_the_network_input_and_inverts_its_output(standardised_model):
    images, lesion = float_case()
    predictor = oracle_predictor(standardised_model, SETTINGS["cond_fill"])
    assert predictor.landmarks is not None and "standardised" in predictor.describe_sampling()
    result = predictor.predict(images, lesion, seed=5)

    model = predictor.model
    region = dilate_mask(lesion, spacing=(1.0, 1.0, 1.0), shape=model.mask_dilation["shape"],
                         radius_mm=model.mask_dilation["radius_mm"])
    arrays, properties = preprocess_images(images, None, None, model.preprocessing_config, None, "case")
    brain = arrays["brain"].astype(bool)
    paint = (coverage_in_preprocessed_space(region, properties) > COVERAGE_THRESHOLD) & brain
    mapping = IntensityStandardisation.fit(arrays["image"], brain, np.array(FAR_LANDMARKS))
    voided = torch.where(torch.from_numpy(paint)[None], torch.tensor(VOID_VALUE), torch.from_numpy(mapping.apply(arrays["image"])))
    target = shifted(voided, SHIFT_2D[1:], BACKGROUND).numpy()
    # Without standardisation the same oracle writes the void value itself where it copies a void.
    plain = shifted(torch.where(torch.from_numpy(paint)[None], torch.tensor(VOID_VALUE), torch.from_numpy(arrays["image"])),
                    SHIFT_2D[1:], BACKGROUND).numpy()
    assert np.array_equal(result.changed, region)
    for channel, (source, output) in enumerate(zip(images, result.images)):
        before, after = sitk.GetArrayFromImage(source), sitk.GetArrayFromImage(output)
        assert np.array_equal(before[~region], after[~region])
        expected = sitk.GetArrayFromImage(restore_to_original(mapping.invert(target[channel], channel), properties, channel))
        unstandardised = sitk.GetArrayFromImage(restore_to_original(plain[channel], properties, channel))
        scale = float(np.ptp(before))
        assert np.abs(after[region] - expected[region]).max() / scale < 1e-4
        # Copied tissue comes back as the input's own value whichever way; copied voids do not.
        same = np.abs(expected[region] - unstandardised[region]) / scale < 1e-4
        assert 0.2 < same.mean() < 0.95, channel

    off = Predictor(predictor.model, dataclasses.replace(SETTINGS["cond_fill"], standardise=False))
    assert off.landmarks is None and "standardised" not in off.describe_sampling()


def test_standardisation_asked_of_a_model_without_landmarks_is_one_sentence(tmp_path):
    folder = make_model_folder(tmp_path, "cond_fill", "2d")
    with pytest.raises(LdiffError, match="no intensity_landmarks"):
        Predictor.from_folder(folder, options=dataclasses.replace(SETTINGS["cond_fill"], standardise=True))
    assert Predictor.from_folder(folder, options=SETTINGS["cond_fill"]).landmarks is None  # default: quietly none
    synthesis = make_model_folder(tmp_path / "synth", "cond_synth", "2d")
    assert not Predictor.from_folder(synthesis).model.task.standardises_intensities


def test_record_landmarks_adds_the_training_cases_mean_to_model_json(tmp_path):
    from training_fixtures import make_preprocessed_dataset

    dataset = make_preprocessed_dataset(tmp_path / "preprocessed")
    data = dataset / "ldiffPlans_1x1x1mm"
    (data / "lesion_library_abc.npz").write_bytes((data / "case_000.npz").read_bytes())  # a cache, not a case
    folder = make_model_folder(tmp_path / "models", "cond_fill", "2d")
    checkpoint = (folder / "checkpoint_final.pth").read_bytes()
    record = record_landmarks(folder, data, source="four tiny cases")
    per_case = []
    for case in ("case_000", "case_001", "case_002", "case_003"):
        with np.load(data / f"{case}.npz") as arrays:
            per_case.append(brain_landmarks(arrays["image"], arrays["brain"]))
    assert record["cases"] == 4 and record["source"] == "four tiny cases"
    written = json.loads((folder / "model.json").read_text())["intensity_landmarks"]
    np.testing.assert_allclose(written["mean"], np.mean(per_case, axis=0), atol=1e-6)
    assert (folder / "checkpoint_final.pth").read_bytes() == checkpoint
    assert Predictor.from_folder(folder).landmarks.shape == (2, len(LANDMARK_PERCENTILES))
    with pytest.raises(LdiffError, match="no preprocessed case"):
        record_landmarks(folder, tmp_path / "models")
    one_channel = make_model_folder(tmp_path / "t1", "cond_fill", "2d", channel_names=("T1w",))
    with pytest.raises(LdiffError, match=r"expected \(1, 9\)"):
        record_landmarks(one_channel, data)
    shutil.rmtree(tmp_path / "preprocessed")


def test_the_command_line_flag_reaches_the_predictor(tmp_path):
    """``ldiff_predict --standardise on`` with a model that records no landmarks: one sentence, nothing written."""
    from test_predict_cli import make_folder, one_line_error, run_cli

    folder = make_model_folder(tmp_path / "models", "cond_fill", "2d")
    images, _, _ = make_folder(tmp_path, cases=("one",))
    out = tmp_path / "out"
    message = one_line_error(run_cli("-i", images / "one_0000.nii.gz", images / "one_0001.nii.gz", "--mask",
                                     images / "one.nii.gz", "-o", out, "-m", folder, "--standardise", "on",
                                     "--device", "cpu"))
    assert "no intensity_landmarks" in message and not out.exists()
