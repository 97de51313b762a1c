"""End-to-end training on a tiny preprocessed dataset: outputs, exact resume after SIGKILL, DDP, errors.

The dataset (4 cases of 2 x 12 x 32 x 32) and the network (channels [8, 16], one residual block, no
attention) are tiny, so a step takes tens of milliseconds on a CPU.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ldiff.networks import build_network
from ldiff.preprocessing.standardisation import LANDMARK_PERCENTILES
from ldiff.training import checkpoints
from ldiff.training.trainer import train
from training_fixtures import make_preprocessed_dataset

TASK_NAMES = ("cond_fill", "uncond_fill", "cond_synth", "uncond_synth")
FAST = {"num_workers": 0, "validation_sampler": {"num_inference_steps": 2}, "num_validation_samples": 2}
REPOSITORY = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """One intra-op thread here and in child processes: on a shared 2-core machine, OpenMP threads
    spinning against other processes make tiny convolutions 10-20 times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_dataset(data_roots):
    return make_preprocessed_dataset(data_roots["ldiff_preprocessed"])


def training_entries(log: dict) -> list[dict]:
    return [entry for entry in log["entries"] if entry["kind"] == "train"]


@pytest.mark.parametrize("config_name", ["2d", "p3d"])
@pytest.mark.parametrize("task_name", TASK_NAMES)
def test_every_task_and_configuration_trains_and_writes_its_results(tiny_dataset, data_roots, task_name, config_name):
    output = train(901, config_name, task_name, fold=0, num_training_steps=3, checkpoint_every=2, validate_every=0,
                   log_every=1, **FAST)

    assert output == data_roots["ldiff_results"] / "Dataset901_Tiny" / f"{task_name}__{config_name}" / "fold_0"
    for name in ("plans.json", "dataset.json", "model.json", "training_settings.json", "checkpoint_latest.pth",
                 "checkpoint_final.pth", "training_log.json", "progress.png"):
        assert (output / name).is_file(), name
    assert (output / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(output.glob(".*tmp*")), "an atomic write left a temporary file behind"

    model_json = json.loads((output / "model.json").read_text())
    conditional = task_name.startswith("cond")
    assert model_json["task"] == task_name and model_json["config_name"] == config_name
    assert model_json["network"]["in_channels"] == (5 if conditional else 2)
    assert model_json["network"]["out_channels"] == 2
    assert model_json["network"]["architecture"] == ("unet2d" if config_name == "2d" else "unet_p3d")
    assert model_json["diffusion"]["num_train_timesteps"] == 1000
    assert model_json["channel_names"] == ["T1w", "FLAIR"]
    assert model_json["training"]["num_training_steps"] == 3 and model_json["training"]["learning_rate"] == 1e-3
    settings = json.loads((output / "training_settings.json").read_text())
    assert settings["world_size"] == 1 and settings["batch_size"] == 2
    # The training cases' mean brain percentiles (fold 0's training cases, not its validation case): what
    # prediction standardises a new scan's intensities to.
    train_ids = json.loads((tiny_dataset / "splits_final.json").read_text())[0]["train"]
    per_case = []
    for case in train_ids:
        with np.load(tiny_dataset / "ldiffPlans_1x1x1mm" / f"{case}.npz") as arrays:
            brain = arrays["brain"].astype(bool)
            per_case.append([np.percentile(channel[brain], LANDMARK_PERCENTILES) for channel in arrays["image"]])
    landmarks = model_json["intensity_landmarks"]
    assert landmarks["cases"] == len(train_ids) == 3 and landmarks["percentiles"] == list(LANDMARK_PERCENTILES)
    np.testing.assert_allclose(landmarks["mean"], np.mean(per_case, axis=0), atol=1e-6)

    # Both checkpoints load without unpickling arbitrary objects.
    latest = torch.load(output / "checkpoint_latest.pth", weights_only=True)
    assert latest["step"] == 3 and latest["task_name"] == task_name and latest["config_name"] == config_name
    assert {"model", "ema", "optimizer", "lr_schedule", "rng", "training_log", "settings"} <= set(latest)
    final = torch.load(output / "checkpoint_final.pth", weights_only=True)
    assert final["model"] == model_json
    network = build_network(final["model"]["network"])
    network.load_state_dict(final["state_dict"])  # strict: the EMA weights fit the described network
    # The EMA moved away from the model's weights only as far as its warm-up allows: not equal, close.
    difference = max((final["state_dict"][k] - latest["model"][k]).abs().max().item() for k in latest["model"])
    assert 0 < difference < 0.1

    log = json.loads((output / "training_log.json").read_text())
    entries = training_entries(log)
    assert [entry["step"] for entry in entries] == [0, 1, 2]
    assert all(np.isfinite(entry["loss"]) and entry["loss"] > 0 for entry in entries)
    assert all(0 <= entry["data_wait_s"] <= entry["step_time_s"] for entry in entries)
    assert entries[0]["lr"] == pytest.approx(1e-3 / 2)  # warm-up: (step + 1) / warmup_steps of the peak
    validations = [entry for entry in log["entries"] if entry["kind"] == "validation"]
    assert len(validations) == 1 and validations[0]["step"] == 2 and validations[0]["num_samples"] >= 1
    assert -1 <= validations[0]["ssim"] <= 1 and validations[0]["psnr"] > 0


def test_sigkilled_run_resumes_exactly(tiny_dataset, data_roots, monkeypatch):
    """kill -9 after the first checkpoint, then --c: same end step and the uninterrupted run's losses."""
    arguments = ["--steps", "60", "--checkpoint-every", "5", "--validation-samples", "0", "--log-every", "1",
                 "--num-workers", "0", "--device", "cpu"]
    output = data_roots["ldiff_results"] / "Dataset901_Tiny" / "cond_fill__2d" / "fold_0"
    command = [sys.executable, "-m", "ldiff.training.command", "901", "2d", "cond_fill", *arguments]
    process = subprocess.Popen(command, cwd=REPOSITORY, env=os.environ.copy(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (output / "checkpoint_latest.pth").is_file():
            assert process.poll() is None, "the training process ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within two minutes"
            time.sleep(0.02)
        process.kill()  # SIGKILL: no clean-up of any kind
    finally:
        process.wait()
    killed_at = torch.load(output / "checkpoint_latest.pth", weights_only=True)["step"]
    assert 5 <= killed_at < 60 and not (output / "checkpoint_final.pth").exists(), "the run was not interrupted"

    train(901, "2d", "cond_fill", continue_training=True)  # settings come back from the checkpoint
    resumed = json.loads((output / "training_log.json").read_text())

    monkeypatch.setenv("ldiff_results", str(data_roots["ldiff_results"].parent / "uninterrupted"))
    # The reference also uses two data workers: the worker count must not change a single number.
    reference_output = train(901, "2d", "cond_fill", num_training_steps=60, checkpoint_every=5, num_validation_samples=0,
                             log_every=1, num_workers=2, device="cpu")
    reference = json.loads((reference_output / "training_log.json").read_text())

    assert torch.load(output / "checkpoint_final.pth", weights_only=True)["step"] == 60
    resumed_entries, reference_entries = training_entries(resumed), training_entries(reference)
    assert [entry["step"] for entry in resumed_entries] == list(range(60))  # continuous, nothing repeated
    assert [entry["loss"] for entry in resumed_entries] == [entry["loss"] for entry in reference_entries]
    resumed_weights = torch.load(output / "checkpoint_final.pth", weights_only=True)["state_dict"]
    reference_weights = torch.load(reference_output / "checkpoint_final.pth", weights_only=True)["state_dict"]
    assert all(torch.equal(resumed_weights[name], reference_weights[name]) for name in reference_weights)


def test_two_gloo_processes_equal_one_process_with_twice_the_batch(tiny_dataset, data_roots, monkeypatch):
    common = dict(num_training_steps=3, checkpoint_every=10, num_validation_samples=0, log_every=1, num_workers=0,
                  learning_rate=1e-4, batch_size=4, device="cpu")
    distributed = train(901, "2d", "cond_fill", num_processes=2, **common)
    monkeypatch.setenv("ldiff_results", str(data_roots["ldiff_results"].parent / "single"))
    single = train(901, "2d", "cond_fill", **common)

    ddp_state = torch.load(distributed / "checkpoint_latest.pth", weights_only=True)
    single_state = torch.load(single / "checkpoint_latest.pth", weights_only=True)
    assert json.loads((distributed / "training_settings.json").read_text())["world_size"] == 2
    initial = build_network(json.loads((single / "model.json").read_text())["network"]).state_dict()
    moved = max((single_state["model"][k] - initial[k].float()).abs().max().item() for k in initial)
    assert moved > 1e-4  # the weights did change, so agreement below means something
    for name, value in single_state["model"].items():
        torch.testing.assert_close(ddp_state["model"][name], value, atol=1e-5, rtol=0)
    ddp_losses = [entry["loss"] for entry in training_entries(ddp_state["training_log"])]
    single_losses = [entry["loss"] for entry in training_entries(single_state["training_log"])]
    assert ddp_losses == pytest.approx(single_losses, abs=1e-6)  # the logged loss is the all-rank mean


def test_loss_falls_on_a_tiny_dataset(tiny_dataset):
    output = train(901, "2d", "cond_fill", num_training_steps=120, batch_size=4, learning_rate=3e-3, warmup_steps=10,
                   checkpoint_every=1000, num_validation_samples=0, log_every=10, num_workers=0, device="cpu")
    losses = [entry["loss"] for entry in training_entries(json.loads((output / "training_log.json").read_text()))]
    assert len(losses) == 12
    # An untrained network outputs 0, so the first losses are about E[w(t)] ~ 0.9; the phantom is
    # simple enough that 120 steps bring the loss to a small fraction of that.
    assert losses[0] > 0.5
    assert np.mean(losses[-3:]) < 0.3 * losses[0]

def run_cli(monkeypatch, capsys, *arguments: str) -> tuple[int, str]:
    """Run ``ldiff_train`` in-process; returns (exit status, stderr)."""
    from ldiff.training.command import main

    monkeypatch.setattr(sys, "argv", ["ldiff_train", *arguments])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


def test_each_bad_argument_is_one_sentence_without_traceback(tiny_dataset, data_roots, monkeypatch, capsys):
    make_preprocessed_dataset(data_roots["ldiff_preprocessed"], "Dataset903_Healthy", with_lesions=False)
    (data_roots["ldiff_raw"] / "Dataset902_OnlyRaw").mkdir()
    stranger = data_roots["ldiff_results"] / "Dataset901_Tiny" / "cond_fill__2d" / "fold_0" / "checkpoint_latest.pth"
    stranger.parent.mkdir(parents=True)
    checkpoints.save_checkpoint({"format_version": checkpoints.CHECKPOINT_FORMAT_VERSION, "dataset_name": "Dataset901_Tiny",
                                 "task_name": "cond_synth", "config_name": "2d", "settings": {}}, stranger)
    cases = [
        (("901", "2d", "fill"), "Unknown task 'fill': choose one of cond_fill, uncond_fill, cond_synth, uncond_synth."),
        (("901", "3d", "cond_fill"), "Unknown configuration '3d' for Dataset901_Tiny: choose one of 2d, p3d."),
        (("902", "2d", "cond_fill"), "Dataset902_OnlyRaw has not been planned and preprocessed: "
                                     "run `ldiff_plan_and_preprocess -d 902` first."),
        (("901", "2d", "cond_fill", "--c"), "belongs to Dataset901_Tiny cond_synth 2d, not Dataset901_Tiny cond_fill 2d"),
        (("903", "2d", "cond_synth"), "cond_synth needs real lesions; Dataset903_Healthy has none."),
        (("903", "p3d", "uncond_synth"), "uncond_synth needs real lesions; Dataset903_Healthy has none."),
        (("901", "2d", "cond_fill", "-f", "7"), "Cannot use fold 7 of Dataset901_Tiny: fold must be an integer from 0 to 3"),
        (("901", "2d", "cond_fill", "--steps", "0"), "num_training_steps must be a positive integer"),
        (("901", "2d", "cond_fill", "--batch-size", "3", "--num-processes", "2"), "cannot be split evenly over 2 processes"),
        (("901", "2d", "cond_synth", "--lesion-shapes-from", "903"), "--lesion-shapes-from is for the filling tasks"),
        (("903", "2d", "cond_fill", "--lesion-shapes-from", "903"), "that dataset has no lesions to borrow"),
        (("901", "2d", "cond_fill", "--lesion-level-cue"), "--lesion-level-cue is for conditional synthesis"),
    ]
    if not torch.cuda.is_available():
        no_cuda = "CUDA was asked for (--device cuda or --num-gpus), but torch sees no CUDA device."
        cases.append((("901", "2d", "cond_fill", "--device", "cuda"), no_cuda))
        cases.append((("901", "2d", "cond_fill", "--num-gpus", "2"), no_cuda))
    for arguments, expected in cases:
        status, error = run_cli(monkeypatch, capsys, *arguments)
        assert status == 1, arguments
        assert expected in error, (arguments, error)
        assert "Traceback" not in error and error.startswith("ldiff: error: ") and error.count("\n") == 1, error


def test_healthy_dataset_fills_with_borrowed_lesion_shapes_on_fold_all(tiny_dataset, data_roots):
    make_preprocessed_dataset(data_roots["ldiff_preprocessed"], "Dataset903_Healthy", with_lesions=False)
    output = train(903, "2d", "cond_fill", fold="all", lesion_shapes_from="901", num_training_steps=2, log_every=1, **FAST)
    assert output.name == "fold_all"
    assert json.loads((output / "model.json").read_text())["training"]["lesion_shapes_from"] == "901"
    # The shapes came from every case of the other dataset, cached beside its data.
    libraries = list((tiny_dataset / "ldiffPlans_1x1x1mm").glob("lesion_library_*.json"))
    assert [json.loads(path.read_text())["case_ids"] for path in libraries] == [[f"case_{i:03d}" for i in range(4)]]
    assert torch.load(output / "checkpoint_final.pth", weights_only=True)["step"] == 2
