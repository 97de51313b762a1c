"""Noise schedule and samplers, checked against closed forms derived independently of the code."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ldiff.diffusion import DDIMSampler, DDPMSampler, NoiseSchedule, build_sampler, spaced_timesteps

PREDICTION_TYPES = ("epsilon", "v_prediction")


def oracle(schedule: NoiseSchedule, x0: torch.Tensor):
    """A perfect network for a known clean image: at any ``x_t`` it outputs what implies ``x0``."""

    def model_fn(x_t: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        abar = torch.tensor(schedule.alphas_cumprod.numpy()[timesteps.numpy()], dtype=x_t.dtype)
        abar = abar.reshape(-1, *([1] * (x_t.ndim - 1)))
        epsilon = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
        if schedule.prediction_type == "epsilon":
            return epsilon
        return abar.sqrt() * epsilon - (1 - abar).sqrt() * x0

    return model_fn


# ------------------------------------------------------------------------------------ schedule tables
def test_linear_alphas_cumprod_match_float64_closed_form():
    schedule = NoiseSchedule()
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    expected = np.cumprod(1.0 - betas)
    np.testing.assert_allclose(schedule.alphas_cumprod.numpy(), expected, rtol=1e-12, atol=0)
    assert schedule.alphas_cumprod[0].item() == pytest.approx(1 - 1e-4, rel=1e-15)
    # An explicit product, not a cumulative one, for the last entry; ~4.04e-5 for the DDPM schedule.
    last = math.prod(1.0 - (1e-4 + i * (0.02 - 1e-4) / 999) for i in range(1000))
    assert schedule.alphas_cumprod[-1].item() == pytest.approx(last, rel=1e-12)
    assert 4.03e-5 < last < 4.05e-5


def test_cosine_schedule_is_monotone_in_unit_interval_and_follows_nichol_dhariwal():
    schedule = NoiseSchedule(beta_schedule="cosine")
    abar = schedule.alphas_cumprod.numpy()
    assert np.all(np.diff(abar) < 0)
    assert np.all((abar > 0) & (abar < 1))
    assert schedule.betas.max().item() <= 0.999
    # Before the 0.999 clip bites, abar_t = f(t + 1) / f(0) with f(s) = cos((s/T + 0.008) / 1.008 * pi/2)^2.
    f = lambda s: math.cos((s / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 10, 250, 500, 900):
        assert abar[t] == pytest.approx(f(t + 1) / f(0), rel=1e-10)


def test_config_round_trips_through_json_and_rejects_typos():
    schedule = NoiseSchedule(beta_schedule="cosine", prediction_type="v_prediction", min_snr_gamma=None, clip_sample=False)
    restored = NoiseSchedule.from_dict(json.loads(json.dumps(schedule.to_dict())))
    assert restored.to_dict() == schedule.to_dict()
    assert torch.equal(restored.alphas_cumprod, schedule.alphas_cumprod)
    assert NoiseSchedule.from_dict({}).to_dict() == NoiseSchedule().to_dict()
    with pytest.raises(ValueError, match="beta_shedule"):
        NoiseSchedule.from_dict({"beta_shedule": "linear"})
    with pytest.raises(ValueError):
        NoiseSchedule.from_dict({"prediction_type": "sample"})
    with pytest.raises(ValueError):
        NoiseSchedule.from_dict({"beta_start": 0.03, "beta_end": 0.02})


# ------------------------------------------------------------------------------------ noising
def test_add_noise_of_zero_image_has_std_sqrt_one_minus_abar_over_any_trailing_dims():
    schedule = NoiseSchedule()
    t = torch.tensor([0, 100, 500, 999])
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(4, 1, 4, 64, 64, generator=generator)  # a pseudo-3D batch (B, C, D, H, W)
    x_t = schedule.add_noise(torch.zeros_like(noise), noise, t)
    expected_std = (1 - schedule.alphas_cumprod[t]).sqrt()
    measured_std = x_t.flatten(1).std(dim=1).double()
    torch.testing.assert_close(measured_std, expected_std, rtol=0.03, atol=0)
    # Without noise the image is only scaled, per sample by its own timestep.
    x0 = torch.rand(4, 1, 4, 64, 64, generator=generator) * 2 - 1
    scaled = schedule.add_noise(x0, torch.zeros_like(x0), t)
    torch.testing.assert_close(scaled, x0 * schedule.alphas_cumprod[t].sqrt().float().reshape(4, 1, 1, 1, 1))


def test_add_noise_rejects_bad_timesteps():
    schedule = NoiseSchedule()
    x0 = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError):
        schedule.add_noise(x0, x0, torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError):
        schedule.add_noise(x0, x0, torch.tensor([1.0, 2.0]))


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_predictions_from_the_true_target_invert_the_forward_process(prediction_type):
    schedule = NoiseSchedule(prediction_type=prediction_type)
    generator = torch.Generator().manual_seed(1)
    x0 = torch.rand(5, 2, 8, 8, generator=generator, dtype=torch.float64) * 2 - 1
    noise = torch.randn(5, 2, 8, 8, generator=generator, dtype=torch.float64)
    t = torch.tensor([0, 1, 400, 998, 999])
    x_t = schedule.add_noise(x0, noise, t)
    target = schedule.training_target(x0, noise, t)
    torch.testing.assert_close(schedule.predict_x0(target, x_t, t), x0, rtol=0, atol=1e-10)
    torch.testing.assert_close(schedule.predict_epsilon(target, x_t, t), noise, rtol=0, atol=1e-10)
    if prediction_type == "v_prediction":
        # v of a black image is the scaled noise, and v differs from the noise whenever x0 != 0.
        v_of_zero = schedule.training_target(torch.zeros_like(x0), noise, t)
        torch.testing.assert_close(v_of_zero, noise * schedule.alphas_cumprod[t].sqrt().reshape(5, 1, 1, 1))
        assert not torch.allclose(target, noise)


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_min_snr_weights_cap_the_effective_x0_weight_at_gamma(prediction_type):
    schedule = NoiseSchedule(prediction_type=prediction_type, min_snr_gamma=5.0)
    t = torch.arange(1000)
    abar = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    snr = abar / (1 - abar)
    weights = schedule.loss_weights(t).double().numpy()
    if prediction_type == "epsilon":
        np.testing.assert_allclose(weights, np.minimum(snr, 5) / snr, rtol=1e-6)
        np.testing.assert_allclose(weights[snr <= 5], 1.0, rtol=1e-6)  # noisy steps keep full weight
        effective_x0_weight = weights * snr
    else:
        np.testing.assert_allclose(weights, np.minimum(snr, 5) / (snr + 1), rtol=1e-6)
        effective_x0_weight = weights * (snr + 1)
    assert effective_x0_weight.max() <= 5 * (1 + 1e-6)
    assert weights[0] < 1e-3  # SNR ~ 1e4 at t = 0
    assert torch.equal(NoiseSchedule(min_snr_gamma=None).loss_weights(t), torch.ones(1000))


# ------------------------------------------------------------------------------------ samplers
def test_timestep_spacings():
    assert spaced_timesteps(1000, 50, "trailing")[:2] == [999, 979]
    assert spaced_timesteps(1000, 50, "trailing")[-1] == 19
    assert spaced_timesteps(1000, 50, "leading")[0] == 980
    assert spaced_timesteps(1000, 50, "leading")[-3:] == [40, 20, 0]
    for spacing in ("leading", "trailing"):
        for steps in (1, 7, 50, 1000):
            timesteps = spaced_timesteps(1000, steps, spacing)
            assert len(timesteps) == steps and all(a > b for a, b in zip(timesteps, timesteps[1:]))
            assert 0 <= timesteps[-1] and timesteps[0] <= 999
    with pytest.raises(ValueError):
        spaced_timesteps(1000, 0)
    with pytest.raises(ValueError):
        spaced_timesteps(1000, 10, "linspace")


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
@pytest.mark.parametrize("spacing", ("leading", "trailing"))
def test_deterministic_ddim_with_oracle_stays_on_the_forward_trajectory(prediction_type, spacing):
    schedule = NoiseSchedule(prediction_type=prediction_type)
    sampler = DDIMSampler(schedule, num_inference_steps=20, spacing=spacing, eta=0.0)
    generator = torch.Generator().manual_seed(2)
    x0 = torch.rand(3, 1, 16, 16, generator=generator, dtype=torch.float64) * 2 - 1
    noise = torch.randn(3, 1, 16, 16, generator=generator, dtype=torch.float64)
    model_fn = oracle(schedule, x0)
    x = schedule.add_noise(x0, noise, sampler.timesteps[0])
    for t, t_prev in sampler.timestep_pairs():
        x = sampler.step(model_fn(x, torch.full((3,), t)), t, t_prev, x).prev_sample
        # eta = 0 keeps the noise of x_t: every iterate is the forward process of x0 with that noise.
        expected = x0 if t_prev == -1 else schedule.add_noise(x0, noise, t_prev)
        torch.testing.assert_close(x, expected, rtol=0, atol=1e-9)
    # The loop helper from pure noise recovers x0 too (in float32).
    sample = sampler.sample(oracle(schedule, x0.float()), x0.shape, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(sample, x0.float(), rtol=0, atol=1e-5)


def test_full_ddpm_with_oracle_ends_at_x0():
    schedule = NoiseSchedule()
    sampler = DDPMSampler(schedule)
    assert sampler.timesteps == list(range(999, -1, -1))
    x0 = torch.linspace(-1, 1, 64).reshape(1, 1, 8, 8)
    sample = sampler.sample(oracle(schedule, x0), x0.shape, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(sample, x0, rtol=0, atol=1e-5)


def test_stochastic_samplers_are_reproducible_with_a_seed():
    schedule = NoiseSchedule()
    model_fn = lambda x, t: 0.5 * x  # noqa: E731
    for sampler in (DDIMSampler(schedule, 10, eta=0.7), DDPMSampler(schedule, 10)):
        runs = [sampler.sample(model_fn, (2, 1, 8, 8), generator=torch.Generator().manual_seed(seed)) for seed in (5, 5, 6)]
        assert torch.equal(runs[0], runs[1])
        assert not torch.allclose(runs[0], runs[2])


@pytest.mark.parametrize("t, t_prev", [(1, 0), (500, 499), (999, 998), (999, 979), (60, 40)])
def test_ddpm_posterior_matches_gaussian_conditioning(t, t_prev):
    """Bayes' rule for x_prev ~ N(sqrt(abar_prev) x0, 1 - abar_prev), x_t | x_prev ~ N(sqrt(a) x_prev, 1 - a)."""
    schedule = NoiseSchedule()
    abar = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    alpha = abar[t] / abar[t_prev]
    precision = 1 / (1 - abar[t_prev]) + alpha / (1 - alpha)
    variance = 1 / precision
    coefficient_x0 = variance * math.sqrt(abar[t_prev]) / (1 - abar[t_prev])
    coefficient_xt = variance * math.sqrt(alpha) / (1 - alpha)
    got = DDPMSampler(schedule).posterior_coefficients(t, t_prev)
    assert got == pytest.approx((coefficient_x0, coefficient_xt, variance), rel=1e-9)
    if t_prev == t - 1:  # Ho et al. (2020), eq. 7
        beta = 0.0001 + t * (0.02 - 0.0001) / 999
        assert got[2] == pytest.approx(beta * (1 - abar[t - 1]) / (1 - abar[t]), rel=1e-9)
    assert DDPMSampler(schedule).posterior_coefficients(0, -1) == pytest.approx((1.0, 0.0, 0.0), abs=1e-12)


def test_ddpm_step_adds_noise_of_the_posterior_variance_and_equals_ddim_with_eta_one():
    schedule = NoiseSchedule(clip_sample=False)
    ddpm, ddim = DDPMSampler(schedule, 50), DDIMSampler(schedule, 50, eta=1.0)
    x_t = torch.randn(1, 1, 256, 256, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    model_output = 0.3 * x_t
    t, t_prev = ddpm.timestep_pairs()[10]
    step = lambda sampler: sampler.step(model_output, t, t_prev, x_t, torch.Generator().manual_seed(8))  # noqa: E731
    ddpm_out, ddim_out = step(ddpm), step(ddim)
    torch.testing.assert_close(ddpm_out.prev_sample, ddim_out.prev_sample, rtol=0, atol=1e-10)
    c_x0, c_xt, variance = ddpm.posterior_coefficients(t, t_prev)
    residual = ddpm_out.prev_sample - (c_x0 * ddpm_out.pred_x0 + c_xt * x_t)
    assert residual.std().item() == pytest.approx(math.sqrt(variance), rel=0.02)


@pytest.mark.parametrize("sampler_class", (DDIMSampler, DDPMSampler))
def test_clip_sample_clamps_predicted_x0(sampler_class):
    x_t = torch.zeros(1, 1, 4, 4)
    model_output = torch.full_like(x_t, -3.0)  # epsilon = -3 at x_t = 0 implies a very bright x0
    clipped = sampler_class(NoiseSchedule(clip_sample=True), num_inference_steps=10)
    free = sampler_class(NoiseSchedule(clip_sample=True), num_inference_steps=10, clip_sample=False)
    t = clipped.timesteps[0]
    assert clipped.step(model_output, t, -1, x_t).pred_x0.max().item() == 1.0
    assert free.step(model_output, t, -1, x_t).pred_x0.min().item() > 1.0


def test_build_sampler_round_trip():
    schedule = NoiseSchedule()
    for sampler in (DDIMSampler(schedule, 25, "leading", eta=0.3), DDPMSampler(schedule, 100)):
        rebuilt = build_sampler(schedule, json.loads(json.dumps(sampler.to_dict())))
        assert type(rebuilt) is type(sampler)
        assert rebuilt.to_dict() == sampler.to_dict() and rebuilt.timesteps == sampler.timesteps
    with pytest.raises(ValueError):
        build_sampler(schedule, {"name": "repaint"})
    with pytest.raises(ValueError):
        build_sampler(schedule, {"name": "ddim", "etta": 0.0})


def test_ddim_after_clipping_moves_along_the_trajectory_of_the_clipped_x0():
    schedule = NoiseSchedule()
    sampler = DDIMSampler(schedule, 10, eta=0.0)
    generator = torch.Generator().manual_seed(9)
    x_t = torch.randn(1, 1, 8, 8, generator=generator, dtype=torch.float64)
    model_output = 3 * torch.randn(1, 1, 8, 8, generator=generator, dtype=torch.float64)
    t, t_prev = sampler.timestep_pairs()[6]
    out = sampler.step(model_output, t, t_prev, x_t)
    assert out.pred_x0.abs().max().item() == 1.0  # the prediction really was clipped
    abar, abar_prev = schedule.alphas_cumprod[t].item(), schedule.alphas_cumprod[t_prev].item()
    implied_noise = (x_t - math.sqrt(abar) * out.pred_x0) / math.sqrt(1 - abar)
    expected = math.sqrt(abar_prev) * out.pred_x0 + math.sqrt(1 - abar_prev) * implied_noise
    torch.testing.assert_close(out.prev_sample, expected, rtol=0, atol=1e-10)
