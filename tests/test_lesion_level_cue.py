"""The lesion-level cue of conditional synthesis: the voided region tells the network how dark or bright
the lesion it paints should be (issue 12: each scan's lesions differ, and without a cue a model can only
paint an average lesion). Prediction with a cued model is checked exactly in test_predict_oracle.py."""
from __future__ import annotations

import json

import pytest
import torch

from ldiff.inference.model_loading import load_model
from ldiff.io.model_files import model_description
from ldiff.tasks import VOID_VALUE, get_task, task_of_model
from ldiff.tasks.task import lesion_core_level
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
    asked = cued.condition(image, mask, torch.tensor([-0.7, 0.9]))
    assert asked[:, 0][:, inside].unique().tolist() == pytest.approx([-0.7])
    assert asked[:, 1][:, inside].unique().tolist() == pytest.approx([0.9])
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
