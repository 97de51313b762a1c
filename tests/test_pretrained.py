"""Fine-tuning with ``--pretrained-weights``: exact start weights, fresh optimizer and step, recorded
origin, ``--c`` that does not reload, the shipped float16 demo model, and one sentence per mismatch."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from ldiff.errors import LdiffError
from ldiff.training import checkpoints
from ldiff.training.distributed import DistributedContext
from ldiff.training.pretrained import pretrained_settings, resolve_pretrained
from ldiff.training.settings import TrainingSettings, resolve_run
from ldiff.training.trainer import Trainer, train
from training_fixtures import make_preprocessed_dataset

DEMO_MODEL = Path(__file__).resolve().parent.parent / "ldiff" / "demo_models" / "t1_cond_fill"
QUIET = {"num_workers": 0, "num_validation_samples": 0, "device": "cpu", "log_every": 1}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny_dataset(data_roots):
    return make_preprocessed_dataset(data_roots["ldiff_preprocessed"])


def pretrain(steps: int = 2, **settings) -> Path:
    """A tiny cond_fill 2d model trained on all cases of Dataset901 (fine-tunes below use fold 0)."""
    return train(901, "2d", "cond_fill", fold="all", num_training_steps=steps, checkpoint_every=1000, **QUIET,
                 **settings)


def fresh_trainer(run, **overrides) -> Trainer:
    settings = TrainingSettings.from_plan(run.configuration, None, {**QUIET, **overrides})
    return Trainer(run, settings, DistributedContext())


def assert_same_weights(found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert set(found) == set(expected)
    for name, value in expected.items():
        assert found[name].dtype == (torch.float32 if value.is_floating_point() else value.dtype), name
        assert torch.equal(found[name], value.to(found[name].dtype)), name


def edited_dataset(data_roots, name: str, edit) -> None:
    """Another tiny dataset whose plans.json ``edit(plans)`` changes."""
    folder = make_preprocessed_dataset(data_roots["ldiff_preprocessed"], name)
    plans = json.loads((folder / "plans.json").read_text())
    edit(plans)
    (folder / "plans.json").write_text(json.dumps(plans))


def test_network_and_ema_start_from_the_pretrained_weights_with_a_fresh_optimizer(tiny_dataset):
    source = pretrain()
    weights = torch.load(source / checkpoints.FINAL_NAME, weights_only=True)["state_dict"]
    run = resolve_run(901, "2d", "cond_fill", 0)
    recorded = pretrained_settings(str(source), run, resuming=False, saved=None)
    assert recorded == {"pretrained_weights": str(source.resolve()),
                        "pretrained_model": {"dataset_name": "Dataset901_Tiny", "task": "cond_fill",
                                             "config_name": "2d", "step": 2}}

    trainer = fresh_trainer(run, **recorded)
    assert_same_weights(trainer.network.state_dict(), weights)
    assert_same_weights(trainer.ema.averaged_state_dict(), weights)
    assert trainer.start_step == 0 and trainer.ema.num_updates == 0
    assert trainer.optimizer.state_dict()["state"] == {} and trainer.log.entries == []
    # Without the option the same seed gives other (random) weights, so the equality above is the loading's.
    scratch = fresh_trainer(run).network.state_dict()
    assert any(not torch.equal(scratch[name], weights[name]) for name in weights)


def test_a_2d_model_starts_a_p3d_run_that_first_computes_what_the_2d_model_does(tiny_dataset):
    source = pretrain()
    weights = torch.load(source / checkpoints.FINAL_NAME, weights_only=True)["state_dict"]
    run = resolve_run(901, "p3d", "cond_fill", 0)
    trainer = fresh_trainer(run, **pretrained_settings(str(source), run, resuming=False, saved=None))
    loaded = trainer.network.state_dict()
    assert set(weights) < set(loaded)
    for name, value in weights.items():
        assert torch.equal(loaded[name], value), name
    # Slice by slice, the fresh p3d network is the 2d network: its slice convolutions are the identity.
    two_d = fresh_trainer(resolve_run(901, "2d", "cond_fill", 0), pretrained_weights=str(source)).network.eval()
    pseudo3d = trainer.network.eval()
    stack = torch.randn(2, two_d.config.in_channels, 3, 16, 16)
    t = torch.tensor([10, 500])
    with torch.no_grad():
        expected = torch.stack([two_d(stack[:, :, d], t) for d in range(3)], dim=2)
        assert torch.allclose(pseudo3d(stack, t), expected, atol=1e-5)


def test_fine_tune_starts_lower_records_its_origin_and_resumes_without_reloading(tiny_dataset, data_roots,
                                                                                    monkeypatch):
    source = pretrain(steps=30, batch_size=4, learning_rate=3e-3, warmup_steps=5)
    common = dict(num_training_steps=2, batch_size=4, checkpoint_every=1, **QUIET)
    output = train(901, "2d", "cond_fill", fold=0, pretrained_weights=str(source), **common)

    model_json = json.loads((output / "model.json").read_text())
    assert model_json["training"]["pretrained_weights"] == str(source.resolve())
    assert model_json["training"]["pretrained_model"]["step"] == 30
    assert json.loads((output / "training_settings.json").read_text())["pretrained_weights"] == str(source.resolve())
    fine_tuned_loss = json.loads((output / "training_log.json").read_text())["entries"][0]["loss"]

    monkeypatch.setenv("ldiff_results", str(data_roots["ldiff_results"].parent / "scratch"))
    scratch = train(901, "2d", "cond_fill", fold=0, **common)
    scratch_loss = json.loads((scratch / "training_log.json").read_text())["entries"][0]["loss"]
    # Same seed, so the same first batch, noise and timesteps: only the start weights differ.
    assert fine_tuned_loss < 0.7 * scratch_loss

    # --c continues from the run's own checkpoint: the pretrained folder is not needed (nor read) any more.
    monkeypatch.setenv("ldiff_results", str(data_roots["ldiff_results"]))
    shutil.rmtree(source)
    train(901, "2d", "cond_fill", fold=0, continue_training=True, num_training_steps=3)
    log = json.loads((output / "training_log.json").read_text())
    assert [entry["step"] for entry in log["entries"]] == [0, 1, 2]
    assert log["entries"][0]["loss"] == fine_tuned_loss
    assert json.loads((output / "model.json").read_text())["training"]["pretrained_model"]["step"] == 30


def test_the_float16_demo_model_loads_into_a_matching_plan(data_roots):
    demo = json.loads((DEMO_MODEL / "model.json").read_text())

    def like_the_demo(plans):
        plans["channel_names"] = ["T1w"]
        plans["configurations"]["2d"]["network"] = demo["network"]
        plans["diffusion"]["prediction_type"] = "v_prediction"

    edited_dataset(data_roots, "Dataset904_OwnT1", like_the_demo)
    run = resolve_run(904, "2d", "cond_fill", 0)
    recorded = resolve_pretrained(DEMO_MODEL, run)
    stored = torch.load(DEMO_MODEL / checkpoints.FINAL_NAME, weights_only=True)
    assert recorded["pretrained_model"] == {"dataset_name": demo["dataset_name"], "task": "cond_fill",
                                            "config_name": "2d", "step": stored["step"]}
    weights = torch.load(DEMO_MODEL / checkpoints.FINAL_NAME, weights_only=True)["state_dict"]
    assert {value.dtype for value in weights.values()} == {torch.float16}
    trainer = fresh_trainer(run, **recorded)
    assert_same_weights(trainer.network.state_dict(), weights)  # cast to float32 exactly
    assert_same_weights(trainer.ema.averaged_state_dict(), weights)


def run_cli(monkeypatch, capsys, *arguments: str) -> tuple[int, str]:
    from ldiff.training.command import main

    monkeypatch.setattr(sys, "argv", ["ldiff_train", *arguments])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


def test_each_mismatch_is_one_sentence_naming_it(tiny_dataset, data_roots, monkeypatch, capsys, tmp_path):
    source = str(pretrain())
    # A 2d model may start a p3d run (tested above), not the other way round.
    pseudo3d_source = str(train(901, "p3d", "cond_fill", fold="all", num_training_steps=1, checkpoint_every=1000,
                                **QUIET))
    capsys.readouterr()  # the pretrainings' progress bars
    edited_dataset(data_roots, "Dataset904_OneChannel", lambda plans: plans.update(channel_names=["T1w"]))
    edited_dataset(data_roots, "Dataset905_Wider",
                   lambda plans: plans["configurations"]["2d"]["network"].update(channels=[8, 32]))
    edited_dataset(data_roots, "Dataset906_V", lambda plans: plans["diffusion"].update(prediction_type="v_prediction"))
    (tmp_path / "empty").mkdir()
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copy(Path(source) / "model.json", unfinished / "model.json")
    cases = [
        (("901", "2d", "cond_synth"), source, "its task is cond_fill, not cond_synth ("),
        (("904", "2d", "cond_fill"), source, "its channels are T1w, FLAIR, not T1w ("),
        (("905", "2d", "cond_fill"), source, "its network has channels [8, 16] instead of [8, 32] ("),
        (("901", "2d", "cond_fill"), pseudo3d_source, "its network has architecture unet_p3d instead of unet2d ("),
        (("906", "2d", "cond_fill"), source, "it predicts epsilon, not v_prediction (diffusion.prediction_type)"),
        (("901", "2d", "cond_fill"), str(tmp_path / "missing"), "folder not found"),
        (("901", "2d", "cond_fill"), str(tmp_path / "empty"), "is not a model folder (no model.json)"),
        (("901", "2d", "cond_fill"), str(unfinished), "has no checkpoint_final.pth"),
        (("901", "2d", "cond_fill", "-f", "all"), source, "is this run's own results folder"),
    ]
    for arguments, folder, expected in cases:
        status, error = run_cli(monkeypatch, capsys, *arguments, "--pretrained-weights", folder, "--steps", "1")
        assert status == 1, arguments
        assert expected in error and str(Path(folder).resolve()) in error, (arguments, error)
        assert "Traceback" not in error and error.startswith("ldiff: error: ") and error.count("\n") == 1, error
    # A channel mismatch is not also reported as a network one (its in/out channels follow from it).
    with pytest.raises(LdiffError) as error:
        resolve_pretrained(source, resolve_run(904, "2d", "cond_fill", 0))
    assert "network" not in str(error.value).split(" (fine-tuning")[0]


def test_the_command_line_passes_the_option_through(monkeypatch, tmp_path):
    from ldiff.training import command as cli

    arguments = cli.build_parser().parse_args(["1", "2d", "cond_fill", "--pretrained-weights", "some/model"])
    assert arguments.pretrained_weights == "some/model"
    calls = []

    def fake_train(*args, **kwargs):
        calls.append((args, kwargs))
        return tmp_path

    monkeypatch.setattr("ldiff.training.trainer.train", fake_train)
    monkeypatch.setattr(sys, "argv", ["ldiff_train", "1", "2d", "cond_fill", "--pretrained-weights", "some/model"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 0
    assert calls[0][1]["pretrained_weights"] == "some/model" and not calls[0][1]["continue_training"]
