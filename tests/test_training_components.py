"""The parts of the training loop, each on its own: LR schedule, EMA, RNG states, keyed noise, loss,
training log, validation metrics and replacement inpainting."""
from __future__ import annotations

import io
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from ldiff.diffusion import DDIMSampler, NoiseSchedule
from ldiff.errors import LdiffError
from ldiff.tasks import get_task
from ldiff.training.checkpoints import capture_rng_state, check_checkpoint_matches, restore_rng_state
from ldiff.training.ema import ExponentialMovingAverage
from ldiff.training.lr_schedule import WarmupCosineSchedule, warmup_cosine_factor
from ldiff.training.progress import TrainingLog
from ldiff.training.trainer import diffusion_loss, keyed_noise_and_timesteps
from ldiff.training.validation import masked_psnr, masked_ssim


def weights_only_round_trip(value):
    buffer = io.BytesIO()
    torch.save(value, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


# ---- learning rate -------------------------------------------------------------------------------
def test_learning_rate_warms_up_linearly_then_decays_by_a_cosine_to_zero():
    factors = [warmup_cosine_factor(step, 10, 111) for step in range(111)]  # decay: steps 10..110
    assert factors[:10] == pytest.approx([(step + 1) / 10 for step in range(10)])
    assert factors[9] == 1.0 and factors[10] == 1.0
    assert factors[60] == pytest.approx(0.5)  # half-way through the decay
    assert factors[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(later <= earlier for earlier, later in zip(factors[10:], factors[11:]))
    parameter = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=123.0)
    schedule = WarmupCosineSchedule(optimizer, 1e-3, 10, 110)
    assert schedule.apply(4) == pytest.approx(5e-4) and optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)
    assert weights_only_round_trip(schedule.state_dict()) == schedule.state_dict()


# ---- EMA -----------------------------------------------------------------------------------------
def test_ema_decay_warms_up_and_averages_with_it():
    model = nn.Linear(3, 2)
    ema = ExponentialMovingAverage(model, decay=0.999)
    initial = {name: value.clone() for name, value in model.state_dict().items()}
    assert ema.current_decay() == pytest.approx(0.1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    ema.update(model)
    for name, value in ema.averaged_state_dict().items():
        torch.testing.assert_close(value, 0.1 * initial[name] + 0.9 * model.state_dict()[name])
    ema.num_updates = 8
    assert ema.current_decay() == pytest.approx(0.5)
    ema.num_updates = 100_000
    assert ema.current_decay() == pytest.approx(0.999)
    assert ExponentialMovingAverage(model, decay=0.9, warmup=False).current_decay() == 0.9

    restored = ExponentialMovingAverage(nn.Linear(3, 2), decay=0.5)
    restored.load_state_dict(weights_only_round_trip(ema.state_dict()))
    assert restored.num_updates == ema.num_updates and restored.decay == ema.decay
    target = nn.Linear(3, 2)
    restored.copy_to(target)
    for name, value in target.state_dict().items():
        torch.testing.assert_close(value, ema.averaged_state_dict()[name])


# ---- RNG states ----------------------------------------------------------------------------------
def test_rng_states_survive_a_weights_only_round_trip():
    torch.manual_seed(3), np.random.seed(4), random.seed(5)
    np.random.standard_normal()  # leaves a cached Gaussian in numpy's state
    state = weights_only_round_trip(capture_rng_state())
    first = (torch.rand(3), np.random.standard_normal(3), random.random())
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    restore_rng_state(state)
    second = (torch.rand(3), np.random.standard_normal(3), random.random())
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1]) and first[2] == second[2]


# ---- keyed noise and the loss --------------------------------------------------------------------
def test_noise_and_timesteps_depend_only_on_seed_step_and_global_index():
    shape, cpu = (2, 8, 8), torch.device("cpu")
    whole_noise, whole_t = keyed_noise_and_timesteps(shape, 0, 4, seed=7, step=3, num_train_timesteps=1000, device=cpu)
    first_noise, first_t = keyed_noise_and_timesteps(shape, 0, 2, seed=7, step=3, num_train_timesteps=1000, device=cpu)
    second_noise, second_t = keyed_noise_and_timesteps(shape, 2, 2, seed=7, step=3, num_train_timesteps=1000, device=cpu)
    assert torch.equal(whole_noise, torch.cat([first_noise, second_noise]))  # what DDP's ranks draw
    assert torch.equal(whole_t, torch.cat([first_t, second_t]))
    assert whole_t.dtype == torch.long and bool(((whole_t >= 0) & (whole_t < 1000)).all())
    other_step, _ = keyed_noise_and_timesteps(shape, 0, 4, seed=7, step=4, num_train_timesteps=1000, device=cpu)
    other_seed, _ = keyed_noise_and_timesteps(shape, 0, 4, seed=8, step=3, num_train_timesteps=1000, device=cpu)
    assert not torch.allclose(whole_noise, other_step) and not torch.allclose(whole_noise, other_seed)
    assert abs(float(whole_noise.mean())) < 0.2 and abs(float(whole_noise.std()) - 1) < 0.2


class ScaledInput(nn.Module):
    """A stand-in network: the first C input channels (the noisy image) times a learnable scale."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.scale = nn.Parameter(torch.tensor(0.5))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return self.scale * x[:, : self.channels]


def random_batch(batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    image = torch.rand((batch_size, 2, 8, 8), generator=generator) * 2 - 1
    paint = (torch.rand((batch_size, 1, 8, 8), generator=generator) > 0.7).float()
    loss = (torch.rand((batch_size, 1, 8, 8), generator=generator) > 0.2).float()
    return {"image": image, "paint_mask": paint, "loss_mask": loss}


def test_loss_is_the_weighted_masked_mse_and_splits_over_ranks_exactly():
    schedule, task = NoiseSchedule(), get_task("cond_fill")
    generator = torch.Generator().manual_seed(0)
    batch = random_batch(4, generator)
    noise = torch.randn((4, 2, 8, 8), generator=generator)
    timesteps = torch.tensor([5, 300, 700, 999])

    class Zero(nn.Module):
        def forward(self, x, t):
            return torch.zeros_like(x[:, :2])

    # With a zero output the per-sample error is the noise's mean square over the loss mask.
    expected = torch.stack([
        (noise[i] ** 2 * batch["loss_mask"][i]).sum() / (2 * batch["loss_mask"][i].sum()) for i in range(4)
    ])
    loss = diffusion_loss(Zero(), task, schedule, batch, noise, timesteps)
    torch.testing.assert_close(loss, (schedule.loss_weights(timesteps) * expected).mean())

    # DDP: the mean of the two half-batch losses, and of their gradients, is the whole batch's.
    model = ScaledInput(2)
    whole = diffusion_loss(model, task, schedule, batch, noise, timesteps)
    whole_gradient = torch.autograd.grad(whole, model.scale)[0]
    halves = [diffusion_loss(model, task, schedule, {k: v[part] for k, v in batch.items()}, noise[part], timesteps[part])
              for part in (slice(0, 2), slice(2, 4))]
    torch.testing.assert_close(whole, (halves[0] + halves[1]) / 2)
    half_gradients = [torch.autograd.grad(half, model.scale)[0] for half in halves]
    torch.testing.assert_close(whole_gradient, (half_gradients[0] + half_gradients[1]) / 2)


def test_loss_ignores_voxels_outside_the_loss_mask():
    schedule, task = NoiseSchedule(), get_task("uncond_fill")
    generator = torch.Generator().manual_seed(1)
    batch = random_batch(3, generator)
    noise, timesteps = torch.randn((3, 2, 8, 8), generator=generator), torch.tensor([10, 500, 900])
    outside = 1 - batch["loss_mask"]

    class Offset(nn.Module):
        def __init__(self, offset):
            super().__init__()
            self.offset = offset

        def forward(self, x, t):
            return x * 0.3 + self.offset

    plain = diffusion_loss(Offset(0.0), task, schedule, batch, noise, timesteps)
    disturbed = diffusion_loss(Offset(50.0 * outside), task, schedule, batch, noise, timesteps)
    inside = diffusion_loss(Offset(0.5 * batch["loss_mask"]), task, schedule, batch, noise, timesteps)
    torch.testing.assert_close(plain, disturbed)
    assert not torch.allclose(plain, inside)
    empty = {**batch, "loss_mask": torch.zeros_like(batch["loss_mask"])}
    assert float(diffusion_loss(Offset(0.0), task, schedule, empty, noise, timesteps)) == 0.0


# ---- training log ----------------------------------------------------------------------------------
def test_training_log_averages_windows_and_resumes_mid_window():
    log = TrainingLog(log_every=3)
    for step in range(4):
        log.record_step(step, loss=float(step), lr=0.1, step_time_s=1.0, data_wait_s=0.25)
    assert [(entry["step"], entry["loss"]) for entry in log.training_entries()] == [(2, 1.0)]
    assert log.data_wait_fraction() == pytest.approx(0.25)
    resumed = TrainingLog()
    resumed.load_state_dict(weights_only_round_trip(log.state_dict()))
    for log_ in (log, resumed):
        for step in (4, 5):
            log_.record_step(step, loss=float(step), lr=0.1, step_time_s=1.0, data_wait_s=0.0)
    assert resumed.entries == log.entries and log.entries[-1]["loss"] == pytest.approx(4.0)


def test_resuming_another_tasks_checkpoint_is_refused(tmp_path):
    checkpoint = {"dataset_name": "Dataset001_X", "task_name": "cond_synth", "config_name": "2d"}
    check_checkpoint_matches(checkpoint, tmp_path, "Dataset001_X", "cond_synth", "2d")
    with pytest.raises(LdiffError, match="belongs to Dataset001_X cond_synth 2d, not Dataset001_X cond_fill p3d"):
        check_checkpoint_matches(checkpoint, tmp_path, "Dataset001_X", "cond_fill", "p3d")


# ---- validation --------------------------------------------------------------------------------------
def test_masked_metrics():
    rng = np.random.default_rng(0)
    reference = rng.uniform(-1, 1, (2, 3, 16, 16))
    mask = np.zeros((1, 3, 16, 16))
    mask[0, 1, 4:12, 4:12] = 1
    assert masked_ssim(reference, reference, mask) == pytest.approx(1.0)
    assert masked_psnr(reference, reference, mask) == 100.0
    prediction = reference.copy()
    prediction[:, mask[0] > 0] += 0.1  # MSE 0.01 in the mask -> 10 log10(400)
    prediction[:, mask[0] == 0] = 0.0  # changes outside the mask do not count
    assert masked_psnr(reference, prediction, mask) == pytest.approx(10 * math.log10(400))
    unrelated = rng.uniform(-1, 1, reference.shape)
    assert abs(masked_ssim(reference, unrelated, mask)) < 0.2
    # Only the mask counts: wrong inside scores far lower than wrong outside (7x7 windows straddle
    # the 8x8 mask border, so wrong outside still lowers it).
    wrong_outside = np.where(mask > 0, reference, unrelated)
    wrong_inside = np.where(mask > 0, unrelated, reference)
    assert masked_ssim(reference, wrong_outside, mask) > masked_ssim(reference, wrong_inside, mask) + 0.25
    assert math.isnan(masked_ssim(reference, prediction, np.zeros_like(mask)))


def test_replacement_inpainting_keeps_the_known_region_and_changes_the_mask():
    schedule = NoiseSchedule()
    sampler = DDIMSampler(schedule, num_inference_steps=5)
    image = torch.rand((2, 2, 32, 32)) * 2 - 1
    mask = torch.zeros((2, 1, 32, 32))
    mask[:, :, 8:20, 10:22] = 1
    known = mask[0, 0] == 0
    seen = []

    def model_fn(x, timesteps):
        seen.append((int(timesteps[0]), x.clone()))
        return torch.zeros_like(x)

    result = sampler.inpaint(model_fn, image, mask, torch.Generator().manual_seed(0))  # replacement by default
    assert torch.equal(result[:, :, known], image[:, :, known])
    assert not torch.allclose(result[:, :, ~known], image[:, :, ~known])
    assert [t for t, _ in seen] == sampler.timesteps
    # Before every call the known region is the truth noised to that call's t: the standardised
    # residual is standard normal.
    for t, x in seen:
        signal = schedule.alpha_cumprod_at(t) ** 0.5
        residual = (x[:, :, known] - signal * image[:, :, known]) / (1 - signal**2) ** 0.5
        assert abs(float(residual.mean())) < 0.1 and abs(float(residual.std()) - 1) < 0.1, t


class Oracle(nn.Module):
    """Predicts the exact noise of ``x_t`` from the true clean images (one batch holding all of them)."""

    def __init__(self, truth: torch.Tensor, schedule: NoiseSchedule):
        super().__init__()
        self.truth, self.schedule = truth, schedule

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        noisy = x[:, : self.truth.shape[1]]
        return self.schedule.epsilon_from_x0(self.truth.to(noisy.dtype), noisy, timesteps)


@pytest.mark.parametrize("task_name", ["cond_fill", "uncond_fill", "cond_synth", "uncond_synth"])
def test_validator_scores_a_perfect_model_perfectly_and_a_blind_one_poorly(task_name):
    from ldiff.training.validation import Validator

    schedule = NoiseSchedule()
    generator = torch.Generator().manual_seed(2)
    truth = torch.rand((3, 2, 4, 16, 16), generator=generator) * 2 - 1  # p3d-shaped stacks
    paint = torch.zeros((3, 1, 4, 16, 16))
    paint[:, :, 1:3, 4:11, 5:12] = 1
    loss = torch.ones_like(paint)
    loss[:, :, 1, 4:6, 5:7] = 0  # e.g. a real lesion inside a fill mask: painted but not scored
    samples = {"image": truth.numpy(), "paint_mask": paint.numpy(), "loss_mask": loss.numpy()}
    validator = Validator(samples, get_task(task_name), schedule, {"name": "ddim", "num_inference_steps": 4},
                          batch_size=3)

    perfect = validator.evaluate(Oracle(truth, schedule))
    assert perfect["num_samples"] == 3
    assert perfect["ssim"] > 0.999 and perfect["psnr"] > 50

    class Blind(nn.Module):
        def forward(self, x, timesteps):
            return torch.zeros_like(x[:, :2])

    blind = validator.evaluate(Blind())
    assert blind["ssim"] < 0.5 and blind["psnr"] < perfect["psnr"] - 20


@pytest.mark.parametrize("task_name, highest_timestep", [("cond_fill", 999), ("uncond_fill", 999), ("cond_synth", 999),
                                                         ("uncond_synth", 40)])
def test_validation_samples_each_task_the_way_prediction_does(task_name, highest_timestep):
    """uncond_synth starts from a coarse lesion noised to t0 = 40 (partial noising), the others from noise;
    uncond_fill walks RePaint (timesteps visited more than once when it jumps back)."""
    from ldiff.training.validation import Validator

    schedule = NoiseSchedule()
    truth = torch.rand((2, 1, 16, 16), generator=torch.Generator().manual_seed(0)) * 2 - 1
    paint = torch.zeros((2, 1, 16, 16))
    paint[:, :, 4:10, 5:11] = 1
    samples = {"image": truth.numpy(), "paint_mask": paint.numpy(), "loss_mask": torch.ones_like(paint).numpy()}
    seen: list[int] = []

    class Recorder(nn.Module):
        def forward(self, x, timesteps):
            seen.extend(int(t) for t in timesteps.unique())
            return torch.zeros_like(x[:, :1])

    task = get_task(task_name)
    Validator(samples, task, schedule, batch_size=2).predict(Recorder())
    assert highest_timestep - 40 <= max(seen) <= highest_timestep
