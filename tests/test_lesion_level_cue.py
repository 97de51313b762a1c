"""The lesion-level cue of conditional synthesis: the voided region tells the network how dark or bright
the lesion it paints should be (issue 12: each scan's lesions differ, and without a cue a model can only
paint an average lesion). Prediction with a cued model is checked exactly in test_predict_oracle.py."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ldiff.errors import LdiffError
from ldiff.inference.model_loading import load_model
from ldiff.io.model_files import model_description
from ldiff.tasks import VOID_VALUE, get_task, task_of_model
from ldiff.inference.lesion_intensity import lesion_contrasts
from ldiff.tasks.task import SURROUNDING_RING, lesion_core_level, surrounding_level
from ldiff.training.trainer import train
from training_fixtures import make_preprocessed_dataset


def square_lesion(batch: int = 1, channels: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """A 4x4 mask whose 2x2 interior holds 0.6 (channel 0) / -0.2 (channel 1) and whose rim holds 0.1."""
    image = torch.full((batch, channels, 10, 10), -0.5)
    mask = torch.zeros(batch, 1, 10, 10)
    mask[..., 3:7, 3:7] = 1
    image[:, :, 3:7, 3:7] = 0.1
    image[:, 0, 4:6, 4:6] = 0.6
    image[:, 1, 4:6, 4:6] = -0.2
    return image, mask


def test_the_lesion_level_is_the_mean_of_the_masks_interior():
    image, mask = square_lesion()
    assert lesion_core_level(image, mask)[0].tolist() == pytest.approx([0.6, -0.2])
    # A mask too thin to have an interior: the mean over the whole mask.
    thin = torch.zeros_like(mask)
    thin[..., 3, 3:6] = 1
    image[:, 0, 3, 3:6] = torch.tensor([0.0, 0.3, 0.6])
    assert lesion_core_level(image, thin)[0, 0].item() == pytest.approx(0.3)
    # Per sample, and through the extra slice dimension of p3d stacks.
    stack = torch.stack([image, -image], dim=2)  # (1, 2, 2, 10, 10)
    mask3 = torch.stack([mask, mask], dim=2)
    assert lesion_core_level(stack, mask3)[0].tolist() == pytest.approx([0.0, 0.0], abs=1e-6)  # 0.6, -0.6 average out
    assert lesion_core_level(image, torch.zeros_like(mask)).tolist() == [[0.0, 0.0]]


def test_the_cue_fills_the_voided_region_with_the_lesion_level():
    image, mask = square_lesion(batch=2)
    plain = get_task("cond_synth")
    cued = get_task("cond_synth", lesion_level_cue=True)
    inside = mask[0, 0].bool()
    assert (plain.condition(image, mask)[:, :2][:, :, inside] == VOID_VALUE).all()
    # Training: the truth's own lesion level; prediction: the level asked for (one per channel, every sample).
    trained = cued.condition(image, mask)
    assert trained[:, 0][:, inside].unique().tolist() == pytest.approx([0.6])
    assert trained[:, 1][:, inside].unique().tolist() == pytest.approx([-0.2])
    # The tissue around the square is -0.5 in both channels: asking for contrasts -0.2 and +0.3 paints
    # -0.7 and -0.2.
    assert surrounding_level(image, mask).tolist() == [[-0.5, -0.5], [-0.5, -0.5]]
    asked = cued.condition(image, mask, torch.tensor([-0.2, 0.3]))
    assert asked[:, 0][:, inside].unique().tolist() == pytest.approx([-0.7])
    assert asked[:, 1][:, inside].unique().tolist() == pytest.approx([-0.2])
    for condition in (trained, asked):  # outside the mask and the mask channel are as without the cue
        assert torch.equal(condition[:, :2][:, :, ~inside], image[:, :, ~inside])
        assert torch.equal(condition[:, 2:], plain.condition(image, mask)[:, 2:])
    assert cued.in_channels(2) == plain.in_channels(2)  # the same network: a cued model fine-tunes from a plain one


def test_only_conditional_synthesis_takes_the_cue_and_model_json_keeps_it():
    for name in ("cond_fill", "uncond_fill", "uncond_synth"):
        with pytest.raises(ValueError, match="conditional synthesis"):
            get_task(name, lesion_level_cue=True)
    assert not get_task("cond_synth").takes_lesion_intensity
    assert get_task("cond_synth", True).takes_lesion_intensity
    plans = {"configurations": {"2d": {"slice_size": [8, 8], "stack_depth": 1}}, "diffusion": {},
             "data_identifier": "x"}
    for cue in (False, True):
        description = model_description(plans, {}, "Dataset9_X", get_task("cond_synth", cue), "2d", {}, {})
        assert task_of_model(json.loads(json.dumps(description))).lesion_level_cue is cue
    assert task_of_model({"task": "cond_synth"}).lesion_level_cue is False  # models written before the cue


def test_a_cued_run_trains_and_its_model_loads_with_the_cue(data_roots, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    make_preprocessed_dataset(data_roots["ldiff_preprocessed"])
    output = train(901, "2d", "cond_synth", fold=0, num_training_steps=2, checkpoint_every=2, validate_every=0, log_every=1,
                   num_workers=0, validation_sampler={"num_inference_steps": 2}, num_validation_samples=1,
                   lesion_level_cue=True)
    description = json.loads((output / "model.json").read_text())
    assert description["lesion_level_cue"] is True and description["training"]["lesion_level_cue"] is True
    assert load_model(output).task.lesion_level_cue


def test_a_crops_surroundings_are_the_ring_two_to_three_steps_from_the_mask():
    """The ring a crop averages is the voxels 2-3 chessboard steps from the mask in-plane: its mean is
    known by construction, and the rim one step out (the dilated mask's partial volume) does not count."""
    assert SURROUNDING_RING == (1, 3)
    mask = torch.zeros(1, 1, 15, 15)
    mask[..., 6:9, 6:9] = 1
    steps = torch.maximum((torch.arange(15)[:, None] - 7).abs(), (torch.arange(15)[None, :] - 7).abs()) - 1
    image = torch.full((1, 1, 15, 15), 0.9)  # beyond the ring
    image[0, 0][(steps > 1) & (steps <= 3)] = 0.4
    image[0, 0][steps == 1] = -1.0
    assert surrounding_level(image, mask).item() == pytest.approx(0.4)
    # Stacks (p3d): the ring of every slice of the stack.
    stack, mask3 = torch.stack([image, image], dim=2), torch.stack([mask, mask], dim=2)
    assert surrounding_level(stack, mask3).item() == pytest.approx(0.4)


def test_the_default_contrast_is_the_training_lesions_against_their_white_matter(monkeypatch):
    import ldiff.inference.lesion_intensity as module

    fingerprint = {"intensity_median_of_cases": {
        "T1w": {"lesion": {"50": 700.0}, "nawm": {"50": 900.0}, "brain": {"1": 100.0, "99": 1100.0}},
        "FLAIR": {"lesion": {"50": 600.0}, "nawm": {"50": 400.0}, "brain": {"1": 0.0, "99": 800.0}}}}
    model = SimpleNamespace(channel_names=("T1w", "FLAIR"), folder="m", task=get_task("cond_synth", True),
                            description={"normalization": {"lower_percentile": 1, "upper_percentile": 99}})
    monkeypatch.setattr(module, "load_fingerprint", lambda _: fingerprint)
    # 2 (lesion - nawm) / (p99 - p1): the normalisation maps p1..p99 onto [-1, 1].
    assert lesion_contrasts(model, None, 2).tolist() == pytest.approx([-0.4, 0.5])
    assert lesion_contrasts(model, ["-0.3"], 2).tolist() == pytest.approx([-0.3, -0.3])
    with pytest.raises(LdiffError, match="no pNN"):
        lesion_contrasts(model, ["p10"], 2)
    monkeypatch.setattr(module, "load_fingerprint", lambda _: None)
    with pytest.raises(LdiffError, match="no training fingerprint"):
        lesion_contrasts(model, None, 2)


def test_the_contrast_by_volume_interpolates_the_fingerprint_in_log_volume(monkeypatch):
    import ldiff.inference.lesion_intensity as module

    bins = [{"lesions": 10, "geometric_mean_volume_mm3": 10.0, "mean_contrast": {"T1w": -0.1, "FLAIR": 0.2}},
            {"lesions": 4, "geometric_mean_volume_mm3": 50.0, "mean_contrast": {"T1w": -0.9, "FLAIR": 0.9}},  # too few
            {"lesions": 0},
            {"lesions": 6, "geometric_mean_volume_mm3": 1000.0, "mean_contrast": {"T1w": -0.4, "FLAIR": 0.6}}]
    model = SimpleNamespace(channel_names=("T1w", "FLAIR"), folder="m")
    monkeypatch.setattr(module, "load_fingerprint", lambda _: {"lesion_contrast_by_volume": {"bins": bins}})
    fraction = module.contrast_for_volume(model, 2)
    assert fraction(10.0).tolist() == pytest.approx([-0.1, 0.2])
    assert fraction(100.0).tolist() == pytest.approx([-0.25, 0.4])  # halfway between 10 and 1000 in log volume
    assert fraction(1.0).tolist() == pytest.approx([-0.1, 0.2])  # held beyond the outer bins
    assert fraction(1e5).tolist() == pytest.approx([-0.4, 0.6])
    monkeypatch.setattr(module, "load_fingerprint", lambda _: {"intensity_median_of_cases": {}})
    assert module.contrast_for_volume(model, 2) is None  # an older fingerprint: matching falls back


def test_the_shipped_synthesis_model_paints_small_lesions_fainter_than_large_ones():
    """Its fingerprint carries the training lesions' contrast by volume (real lesions fade with size):
    T1w darker and FLAIR brighter than the white matter at every size, both stronger for larger lesions."""
    from ldiff.inference.lesion_intensity import contrast_for_volume
    from ldiff.inference.model_loading import demo_models_root

    model = SimpleNamespace(channel_names=("T1w", "FLAIR"), folder=demo_models_root() / "t1_flair_cond_synth",
                            description={})
    fraction = contrast_for_volume(model, 2)
    assert fraction is not None
    small, large = fraction(5.0), fraction(500.0)
    assert large[0] < small[0] < 0 and large[1] > small[1] > 0
