"""Model loading (final and latest checkpoints, damaged files) and the automatic choice of a model folder
among the user's trained models and the shipped demo models."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ldiff.errors import LdiffError
from ldiff.inference import model_loading
from ldiff.inference.model_loading import choose_model_folder, load_model
from ldiff.training import checkpoints
from test_predict import make_model_folder


def test_latest_checkpoint_loads_the_ema_weights(tmp_path):
    folder = make_model_folder(tmp_path, "cond_fill", "2d", latest=True)
    model = load_model(folder, "latest")
    saved = torch.load(folder / checkpoints.LATEST_NAME, weights_only=True)
    loaded = model.network.state_dict()
    assert all(torch.equal(loaded[name], value) for name, value in saved["ema"]["weights"].items())
    assert any(not torch.equal(loaded[name], value) for name, value in saved["model"].items())
    with pytest.raises(LdiffError, match="try -chk latest"):
        load_model(folder, "final")


def test_damaged_checkpoint_and_missing_model_json_are_one_sentence(tmp_path):
    folder = make_model_folder(tmp_path, "cond_fill", "2d")
    (folder / checkpoints.FINAL_NAME).write_bytes(b"not a checkpoint")
    with pytest.raises(LdiffError, match="cannot be read as an ldiff checkpoint"):
        load_model(folder)
    with pytest.raises(LdiffError, match="is not a model folder"):
        load_model(tmp_path)


@pytest.fixture
def no_demo_models(tmp_path, monkeypatch) -> Path:
    demos = tmp_path / "demo_models"
    demos.mkdir()
    monkeypatch.setattr(model_loading, "demo_models_root", lambda: demos)
    return demos


def test_the_single_trained_model_is_chosen_and_several_are_listed(data_roots, no_demo_models):
    results = data_roots["ldiff_results"]
    with pytest.raises(LdiffError, match="No trained model"):
        choose_model_folder()
    first = make_model_folder(results, "cond_fill", "2d")
    assert choose_model_folder() == first
    make_model_folder(no_demo_models.parent / "demo", "cond_fill", "p3d").rename(no_demo_models / "demo_a")
    assert choose_model_folder() == first, "the user's own model beats the demo model"
    second = make_model_folder(results, "uncond_fill", "p3d", fold="all")
    with pytest.raises(LdiffError) as error:
        choose_model_folder()
    message = str(error.value)
    assert "3 trained models match" in message and str(first) in message and str(second) in message
    assert "\n" not in message
    assert choose_model_folder(task="uncond_fill") == second
    assert choose_model_folder(dataset="901", config_name="2d", fold="0") == first
    assert choose_model_folder(model_folder=second.parent) == second  # a TASK__CONFIG folder with one fold


def test_demo_models_are_preferred_by_channels_and_cond_fill(data_roots, no_demo_models):
    staging = no_demo_models.parent / "staging"
    for name, task, channels in (("synth", "cond_synth", ("FLAIR",)), ("t1", "cond_fill", ("T1w",)),
                                 ("both", "cond_fill", ("T1w", "FLAIR"))):
        make_model_folder(staging / name, task, "2d", channel_names=channels).rename(no_demo_models / name)
    assert choose_model_folder(num_input_channels=1) == no_demo_models / "t1"
    assert choose_model_folder(num_input_channels=2) == no_demo_models / "both"
    assert choose_model_folder(task="cond_synth") == no_demo_models / "synth"
    # with a one-channel fill demo and a two-channel synthesis demo, two inputs are not silently synthesised into
    (no_demo_models / "both").rename(staging / "both_unused")
    (no_demo_models / "synth").rename(staging / "synth_unused")
    make_model_folder(staging / "synth2", "cond_synth", "2d", channel_names=("T1w", "FLAIR")).rename(no_demo_models / "synth")
    assert choose_model_folder(num_input_channels=1) == no_demo_models / "t1"
    with pytest.raises(LdiffError, match="choose one with -m"):
        choose_model_folder(num_input_channels=2)
    assert choose_model_folder(task="cond_synth", num_input_channels=2) == no_demo_models / "synth"
    saved = json.loads((no_demo_models / "t1" / "model.json").read_text())
    assert saved["task"] == "cond_fill"
