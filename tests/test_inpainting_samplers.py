"""Inpainting samplers (conditional, RePaint), partial-noising synthesis and DPM-Solver++.

The models are exact for known data, so expectations are closed forms: an oracle of one clean image, a
Gaussian prior of smooth images (posterior mean = a projection), and a per-pixel Gaussian (whose
probability-flow ODE keeps standardised values fixed).
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from ldiff.diffusion import (
    PARTIAL_NOISING_DEFAULTS,
    DDIMSampler,
    DDPMSampler,
    DPMSolverSampler,
    NoiseSchedule,
    RePaintSampler,
    build_sampler,
    paint_coarse_lesion,
    renoise,
    resolve_t0,
    synthesise_by_partial_noising,
    validate_mask,
)

PREDICTION_TYPES = ("epsilon", "v_prediction")


# ------------------------------------------------------------------------------------ model helpers
def oracle(schedule: NoiseSchedule, x0: torch.Tensor):
    """A perfect network for a known clean image: at any ``x_t`` it outputs what implies ``x0``."""

    def model_fn(x_t: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        abar = schedule.alphas_cumprod[timesteps].to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))
        epsilon = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
        if schedule.prediction_type == "epsilon":
            return epsilon
        return abar.sqrt() * epsilon - (1 - abar).sqrt() * x0

    return model_fn


def counted(model_fn):
    """``model_fn`` that appends the timestep of each call to the returned list."""
    calls = []
    return (lambda x_t, timesteps: calls.append(int(timesteps[0])) or model_fn(x_t, timesteps)), calls


def smooth_basis(size: int, frequencies: int = 3) -> torch.Tensor:
    """Orthonormal columns: the products of the lowest 2D cosines on a ``size x size`` grid."""
    i = torch.arange(size, dtype=torch.float64) + 0.5
    columns = [
        (torch.cos(math.pi * i[:, None] * a / size) * torch.cos(math.pi * i[None, :] * b / size)).flatten()
        for a in range(frequencies) for b in range(frequencies)
    ]
    return torch.linalg.qr(torch.stack(columns, 1))[0].float()


def smooth_prior_model(schedule: NoiseSchedule, basis: torch.Tensor, coefficient_std: float, detail_std: float = 0.0):
    """The exact epsilon of the prior ``x0 = basis @ c + detail_std * w`` (1 channel), ``c ~ N(0, coefficient_std^2 I)``.

    With orthonormal columns and ``P`` the projection on the basis, ``E[x0 | x_t] = g(v_s) P x_t +
    g(v_d) (I - P) x_t`` with ``g(v) = a v / (a^2 v + sigma^2)``, ``v_s = coefficient_std^2 + detail_std^2``
    and ``v_d = detail_std^2``. The model knows smoothness, not the image.
    """

    def model_fn(x_t: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        abar = schedule.alphas_cumprod[timesteps].float().reshape(-1, 1)
        a, variance = abar.sqrt(), 1 - abar
        gain = lambda v: a * v / (abar * v + variance)  # noqa: E731
        flat = x_t.reshape(x_t.shape[0], -1)
        smooth = (flat @ basis) @ basis.T
        x0 = gain(coefficient_std**2 + detail_std**2) * smooth + gain(detail_std**2) * (flat - smooth)
        return ((flat - a * x0) / variance.sqrt()).reshape(x_t.shape)

    return model_fn


def random_image(shape, seed: int) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 1.6 - 0.8


def box_mask(shape, low: int, high: int) -> torch.Tensor:
    """(B, 1, ...) 0/1 float mask with a box ``[low, high)`` in every spatial dim."""
    mask = torch.zeros((shape[0], 1, *shape[2:]))
    mask[(slice(None), slice(None), *[slice(low, high)] * (len(shape) - 2))] = 1
    return mask


# ------------------------------------------------------------------------------------ conditional inpainting
@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
@pytest.mark.parametrize("make_sampler", [
    lambda s: DDIMSampler(s, 10), lambda s: DDPMSampler(s, 10), lambda s: DPMSolverSampler(s, 10),
], ids=["ddim", "ddpm", "dpm_solver"])
@pytest.mark.parametrize("shape", [(2, 2, 12, 12), (1, 1, 4, 8, 8)], ids=["2d", "p3d"])
@pytest.mark.parametrize("replace_known", [False, True])
def test_inpainting_with_a_conditional_model_recovers_x0_inside_and_pastes_back_outside(prediction_type, make_sampler, shape, replace_known):
    schedule = NoiseSchedule(prediction_type=prediction_type)
    x0 = random_image(shape, seed=1)
    mask = box_mask(shape, 2, 6)
    inside = mask.bool().expand(shape)
    known = x0.clone()
    known[inside] = float("nan")  # values inside the mask must never be read
    # The model believes in another image outside the mask, as a conditional net that regenerates
    # the whole slice does: only the paste-back can make the outside equal the known image.
    believed = torch.where(inside, x0, x0.flip(-1))
    result = make_sampler(schedule).inpaint(oracle(schedule, believed), known, mask,
                                 torch.Generator().manual_seed(0), replace_known=replace_known)
    assert torch.equal(result[~inside], known[~inside])
    torch.testing.assert_close(result[inside], x0[inside], rtol=0, atol=2e-5)


def test_inpainting_with_a_conditional_model_is_reproducible_and_replacement_feeds_the_noised_known_image():
    schedule = NoiseSchedule()
    shape = (1, 1, 64, 64)
    known, mask = random_image(shape, seed=2), box_mask(shape, 20, 44)
    seen = []

    def model_fn(x_t, timesteps):  # a poor model (predicts zero noise) that records its inputs
        seen.append((x_t.clone(), int(timesteps[0])))
        return torch.zeros_like(x_t)

    sampler = DDIMSampler(schedule, 8, eta=0.5)
    runs = [sampler.inpaint(model_fn, known, mask, torch.Generator().manual_seed(seed), replace_known=True)
            for seed in (3, 3, 4)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    outside = ~mask.bool()
    for x_t, t in seen[:8]:
        abar = schedule.alpha_cumprod_at(t)
        residual = (x_t - math.sqrt(abar) * known)[outside] / math.sqrt(1 - abar)
        assert abs(residual.mean().item()) < 0.05 and residual.std().item() == pytest.approx(1.0, rel=0.05)
    # Without replacement the first input is plain noise, whatever the known image.
    seen.clear()
    sampler.inpaint(model_fn, known, mask, torch.Generator().manual_seed(3), replace_known=False)
    sampler.inpaint(model_fn, -known, mask, torch.Generator().manual_seed(3), replace_known=False)
    assert torch.equal(seen[0][0], seen[8][0])


def test_validate_mask_rejects_bad_masks():
    image = torch.zeros(2, 3, 8, 8)
    assert validate_mask(torch.ones(1, 1, 8, 8), image).dtype == torch.bool
    for bad in (torch.ones(2, 3, 8, 8), torch.ones(2, 1, 8, 7), torch.ones(3, 1, 8, 8), torch.ones(2, 1, 1, 8, 8)):
        with pytest.raises(ValueError):
            validate_mask(bad, image)
    with pytest.raises(ValueError, match="0 or 1"):
        validate_mask(torch.full((2, 1, 8, 8), 0.5), image)


# ------------------------------------------------------------------------------------ re-noising
@pytest.mark.parametrize("t_prev, t", [(979, 999), (100, 500), (0, 40), (-1, 300)])
def test_multistep_renoising_has_the_forward_marginal(t_prev, t):
    schedule = NoiseSchedule()
    generator = torch.Generator().manual_seed(5)
    x_prev = schedule.add_noise(torch.zeros(1, 1, 128, 128), torch.randn(1, 1, 128, 128, generator=generator), t_prev) \
        if t_prev >= 0 else torch.zeros(1, 1, 128, 128)
    x_t = renoise(schedule, x_prev, t_prev, t, generator)
    assert x_t.std().item() == pytest.approx(math.sqrt(1 - schedule.alpha_cumprod_at(t)), rel=0.02)
    # A constant clean image keeps its mean scaled by sqrt(abar_t), as q(x_t | x0) requires.
    x_prev = schedule.add_noise(torch.full((1, 1, 128, 128), 0.7), torch.randn(1, 1, 128, 128, generator=generator), max(t_prev, 0))
    mean = renoise(schedule, x_prev, max(t_prev, 0), t, generator).mean().item()
    assert mean == pytest.approx(0.7 * math.sqrt(schedule.alpha_cumprod_at(t)), abs=0.01)
    with pytest.raises(ValueError):
        renoise(schedule, x_prev, t, t_prev, generator)


# ------------------------------------------------------------------------------------ RePaint
@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("shape", [(2, 2, 12, 12), (1, 1, 4, 8, 8)], ids=["2d", "p3d"])
def test_repaint_with_oracle_recovers_x0_inside_and_keeps_known_outside(prediction_type, eta, shape):
    schedule = NoiseSchedule(prediction_type=prediction_type)
    x0 = random_image(shape, seed=6)
    mask = box_mask(shape, 1, 5)
    inside = mask.bool().expand(shape)
    known = torch.where(inside, torch.full_like(x0, float("nan")), x0)
    sampler = RePaintSampler(schedule, num_inference_steps=12, jump_length=3, num_resamplings=3, eta=eta)
    result = sampler.sample(oracle(schedule, x0), known, mask, torch.Generator().manual_seed(7))
    assert torch.equal(result[~inside], known[~inside])
    torch.testing.assert_close(result[inside], x0[inside], rtol=0, atol=2e-5)


@pytest.mark.parametrize("steps, jump, resamplings", [(50, 8, 10), (20, 5, 3), (12, 4, 1), (10, 3, 2), (7, 10, 4), (6, None, 3)])
def test_repaint_network_calls_follow_the_formula_and_the_walk_is_connected(steps, jump, resamplings):
    schedule = NoiseSchedule()
    sampler = RePaintSampler(schedule, steps, jump, resamplings)
    j = steps if jump is None else jump
    expected = steps + (steps // j) * (resamplings - 1) * j
    model_fn, calls = counted(lambda x, t: torch.zeros_like(x))
    sampler.sample(model_fn, torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), torch.Generator().manual_seed(0))
    assert len(calls) == sampler.network_calls == sampler.count_network_calls() == expected
    moves = sampler.moves()
    assert moves[0][0] == sampler.timesteps[0] and moves[-1][1] == -1
    assert all(a[1] == b[0] for a, b in zip(moves, moves[1:]))
    if resamplings == 1:
        assert moves == DDIMSampler(schedule, steps).timestep_pairs()
    if (steps, jump, resamplings) == (50, 8, 10):  # the thesis's setting, "about 480 calls"
        assert expected == 482


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_every_repaint_network_input_has_the_forward_marginal_of_its_timestep(eta):
    # For data x0 = 0, x_t ~ N(0, 1 - abar_t): reverse steps with the exact model, the merge with the
    # noised known region and the jumps back (re-noising) must all keep that law at every timestep.
    schedule = NoiseSchedule()
    shape = (1, 1, 64, 64)
    seen = []
    exact = oracle(schedule, torch.zeros(shape))

    model_fn = lambda x_t, timesteps: seen.append((x_t.std().item(), int(timesteps[0]))) or exact(x_t, timesteps)  # noqa: E731

    sampler = RePaintSampler(schedule, 12, jump_length=4, num_resamplings=3, eta=eta)
    sampler.sample(model_fn, torch.zeros(shape), box_mask(shape, 16, 48), torch.Generator().manual_seed(21))
    assert len(seen) == sampler.network_calls
    for std, t in seen:
        assert std == pytest.approx(math.sqrt(1 - schedule.alpha_cumprod_at(t)), rel=0.05)


def test_repaint_without_resampling_is_replacement_inpainting():
    schedule = NoiseSchedule()
    shape = (2, 1, 10, 10)
    known, mask = random_image(shape, seed=8), box_mask(shape, 3, 7)
    model_fn = lambda x, t: 0.3 * x + 0.1  # noqa: E731
    repaint = RePaintSampler(schedule, 15, jump_length=4, num_resamplings=1, eta=1.0)
    replaced = DDIMSampler(schedule, 15, eta=1.0).inpaint(model_fn, known, mask,
                                   torch.Generator().manual_seed(9), replace_known=True)
    torch.testing.assert_close(repaint.sample(model_fn, known, mask, torch.Generator().manual_seed(9)), replaced)


def test_repaint_and_partial_noising_are_reproducible_with_a_seed():
    schedule = NoiseSchedule()
    shape = (1, 1, 8, 8)
    known, mask = random_image(shape, seed=10), box_mask(shape, 2, 6)
    model_fn = lambda x, t: 0.5 * x  # noqa: E731
    repaint, partial = RePaintSampler(schedule, 10, 3, 3), RePaintSampler.from_dict(schedule, PARTIAL_NOISING_DEFAULTS)
    for run in (lambda seed: repaint.sample(model_fn, known, mask, torch.Generator().manual_seed(seed)),
                lambda seed: synthesise_by_partial_noising(partial, model_fn, known, mask, 0.1, torch.Generator().manual_seed(seed))):
        runs = [run(seed) for seed in (1, 1, 2)]
        assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
        assert runs[0].abs().max().item() <= 1.0  # the schedule clips


def test_repaint_with_a_smooth_prior_fills_a_hole_and_resampling_helps():
    schedule = NoiseSchedule(clip_sample=False)
    size, count = 16, 24
    basis = smooth_basis(size)
    coefficients = torch.randn(count, basis.shape[1], generator=torch.Generator().manual_seed(11)) * 2.5
    images = (coefficients @ basis.T).reshape(count, 1, size, size)
    mask = box_mask(images.shape, 5, 11)
    inside = mask.bool().expand(images.shape)
    model_fn = smooth_prior_model(schedule, basis, 2.5)

    def hole_rmse(resamplings: int) -> float:
        sampler = RePaintSampler(schedule, 50, jump_length=8, num_resamplings=resamplings)
        filled = sampler.sample(model_fn, images, mask, torch.Generator().manual_seed(12))
        assert torch.equal(filled[~inside], images[~inside])
        return (filled - images)[inside].pow(2).mean().sqrt().item()

    # The baseline a filler must beat: every hole voxel set to its image's mean known intensity.
    known_means = (images * (1 - mask)).flatten(1).sum(1) / (1 - mask).flatten(1).sum(1)
    mean_fill_rmse = (images - known_means.reshape(-1, 1, 1, 1))[inside].pow(2).mean().sqrt().item()
    harmonised, replaced = hole_rmse(10), hole_rmse(1)
    # The prior pins the hole down (9 smooth modes, 220 known pixels), yet RePaint is approximate:
    # about 0.1 to 0.2 of the spread in the hole was measured, against 0.2 to 0.35 without resampling.
    assert harmonised < 0.25 * images[inside].std().item()
    assert harmonised < 0.25 * mean_fill_rmse
    assert harmonised < 0.75 * replaced


def test_repaint_config_round_trips_and_rejects_bad_settings():
    schedule = NoiseSchedule()
    sampler = RePaintSampler(schedule, 25, jump_length=None, num_resamplings=4, spacing="leading", eta=0.0)
    rebuilt = RePaintSampler.from_dict(schedule, json.loads(json.dumps(sampler.to_dict())))
    assert rebuilt.to_dict() == sampler.to_dict() and rebuilt.moves() == sampler.moves()
    for bad in ({"jump_length": 0}, {"num_resamplings": 0}, {"jumps": 3}, {"name": "ddim"}, {"eta": -1.0}):
        with pytest.raises(ValueError):
            RePaintSampler.from_dict(schedule, bad)


# ------------------------------------------------------------------------------------ partial noising
def test_partial_noising_thesis_setting_walks_40_20_0_in_9_calls():
    assert resolve_t0(40, 1000) == 40 and resolve_t0(-1, 1000) == -1
    assert resolve_t0(0.041, 1000) == 40 and resolve_t0(0.0, 1000) == -1 and resolve_t0(1.0, 1000) == 999
    for bad in (1000, -2, 1.5, -0.1, True):
        with pytest.raises((ValueError, TypeError)):
            resolve_t0(bad, 1000)
    schedule = NoiseSchedule()
    sampler = RePaintSampler.from_dict(schedule, PARTIAL_NOISING_DEFAULTS)
    assert sampler.levels(40) == [40, 20, 0, -1]
    shape = (1, 1, 8, 8)
    image, mask = random_image(shape, seed=13), box_mask(shape, 2, 6)
    model_fn, calls = counted(oracle(schedule, image))
    result = synthesise_by_partial_noising(sampler, model_fn, image, mask, 40, torch.Generator().manual_seed(0))
    assert calls == [40, 20, 0] * 3 and sampler.count_network_calls(40) == 9
    torch.testing.assert_close(result, image, rtol=0, atol=2e-5)  # an oracle of the input keeps it


def test_partial_noising_without_noise_returns_the_input_and_with_noise_changes_only_the_inside():
    schedule = NoiseSchedule(clip_sample=False)
    size = 16
    basis = smooth_basis(size)
    # A prior of smooth images with a little unstructured detail: a lesion is unlikely, not impossible.
    model_fn = smooth_prior_model(schedule, basis, 2.5, detail_std=0.3)
    healthy = ((torch.randn(2, basis.shape[1], generator=torch.Generator().manual_seed(14)) * 2.5) @ basis.T)
    healthy = healthy.reshape(2, 1, size, size)
    mask = box_mask(healthy.shape, 6, 10)
    inside = mask.bool().expand(healthy.shape)
    image = paint_coarse_lesion(healthy, mask, 1.5, edge_sigma_voxels=0)
    sampler = RePaintSampler.from_dict(schedule, PARTIAL_NOISING_DEFAULTS)

    def synthesise(t0):
        return synthesise_by_partial_noising(sampler, model_fn, image, mask, t0, torch.Generator().manual_seed(15))

    for no_noise in (-1, 0.0):
        assert torch.equal(synthesise(no_noise), image)
    changes = {}
    for t0 in (0, 40, 400):
        result = synthesise(t0)
        assert torch.equal(result[~inside], image[~inside])
        changes[t0] = (result - image)[inside].abs().mean().item()
    assert changes[0] < 0.02  # t = 0 adds noise of std 0.01 only
    assert changes[0] < changes[40] < changes[400]
    assert synthesise(400)[inside].mean().item() < 1.0  # much noise lets the smooth prior erase the lesion


@pytest.mark.parametrize("shape", [(2, 2, 21, 21), (1, 2, 21, 21, 21)], ids=["2d", "3d"])
def test_paint_coarse_lesion_reaches_the_intensity_at_the_centre_with_a_soft_edge_inside_the_mask(shape):
    image = random_image(shape, seed=17)
    mask = box_mask(shape, 4, 17)
    inside = mask.bool().expand(shape)
    intensity = torch.tensor([0.9, -0.6])
    painted = paint_coarse_lesion(image, mask, intensity, edge_sigma_voxels=1.5)
    assert torch.equal(painted[~inside], image[~inside])
    centre = (slice(None), slice(None), *[10] * (len(shape) - 2))
    torch.testing.assert_close(painted[centre], intensity.expand(shape[0], 2), rtol=0, atol=1e-4)
    # On the mask's first row the lesion weight is small but not zero: a soft edge, not a step.
    border = (slice(None), slice(None), *[10] * (len(shape) - 4), 4, 10)
    weight = (painted[border] - image[border]) / (intensity - image[border])
    assert torch.all((weight > 0.05) & (weight < 0.6))
    hard = paint_coarse_lesion(image, mask, intensity, edge_sigma_voxels=0)
    torch.testing.assert_close(hard[inside], intensity.reshape(1, 2, *[1] * (len(shape) - 2)).expand(shape)[inside])
    with pytest.raises(ValueError):
        paint_coarse_lesion(image, mask, torch.ones(3))


# ------------------------------------------------------------------------------------ DPM-Solver++
@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
@pytest.mark.parametrize("spacing", ("leading", "trailing"))
def test_dpm_solver_with_oracle_stays_on_the_forward_trajectory(prediction_type, spacing):
    schedule = NoiseSchedule(prediction_type=prediction_type)
    sampler = DPMSolverSampler(schedule, 15, spacing)
    generator = torch.Generator().manual_seed(18)
    x0 = torch.rand(2, 1, 8, 8, generator=generator, dtype=torch.float64) * 2 - 1
    noise = torch.randn(2, 1, 8, 8, generator=generator, dtype=torch.float64)
    model_fn = oracle(schedule, x0)
    x = schedule.add_noise(x0, noise, sampler.timesteps[0])
    for t, t_prev in sampler.timestep_pairs():
        x = sampler.step(model_fn(x, torch.full((2,), t)), t, t_prev, x).prev_sample
        expected = x0 if t_prev == -1 else schedule.add_noise(x0, noise, t_prev)
        torch.testing.assert_close(x, expected, rtol=0, atol=1e-9)


GAUSS_MEAN, GAUSS_STD = 0.2, 0.5


def gaussian_model(schedule: NoiseSchedule):
    """Exact epsilon when every pixel of x0 is N(GAUSS_MEAN, GAUSS_STD^2), independently."""

    def model_fn(x_t, timesteps):
        abar = schedule.alphas_cumprod[timesteps].to(x_t.dtype).reshape(-1, 1, 1, 1)
        a, variance = abar.sqrt(), 1 - abar
        x0 = GAUSS_MEAN + a * GAUSS_STD**2 / (abar * GAUSS_STD**2 + variance) * (x_t - a * GAUSS_MEAN)
        return (x_t - a * x0) / variance.sqrt()

    return model_fn


def ode_error(sampler, x_start: torch.Tensor, stop_at: int) -> float:
    """Max error (standardised) of the state at the first timestep <= ``stop_at``: for Gaussian data the
    probability-flow ODE keeps ``(x_t - a_t m) / sqrt(a_t^2 s^2 + sigma_t^2)`` fixed."""
    schedule, model_fn = sampler.schedule, gaussian_model(sampler.schedule)

    def standardised(x, t):
        abar = schedule.alpha_cumprod_at(t)
        return (x - math.sqrt(abar) * GAUSS_MEAN) / math.sqrt(abar * GAUSS_STD**2 + 1 - abar)

    x = x_start
    for t, t_prev in sampler.timestep_pairs():
        x = sampler.step(model_fn(x, torch.full((x.shape[0],), t)), t, t_prev, x).prev_sample
        if t_prev <= stop_at:
            break
    return (standardised(x, t_prev) - standardised(x_start, sampler.timesteps[0])).abs().max().item()


def test_dpm_solver_converges_to_the_ode_solution_at_second_order_and_beats_ddim():
    schedule = NoiseSchedule(clip_sample=False)
    x_start = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(19), dtype=torch.float64)
    dpm = {n: ode_error(DPMSolverSampler(schedule, n), x_start, 200) for n in (10, 20, 40, 80)}
    ddim = {n: ode_error(DDIMSampler(schedule, n), x_start, 200) for n in (10, 20, 40, 80)}
    for n in (10, 20, 40):
        assert dpm[n] / dpm[2 * n] > 3.2  # second order: about 4x smaller per doubling
        assert 1.7 < ddim[n] / ddim[2 * n] < 2.3  # DDIM is first order
    assert dpm[20] < ddim[80]
    # Down to the last noisy timestep, for both spacings (the leading grid's 20 -> 0 step falls back
    # to first order, see MIN_STEP_RATIO), DPM-Solver++ is closer to the ODE than DDIM.
    for spacing in ("trailing", "leading"):
        for n in (20, 40):
            solvers = DPMSolverSampler(schedule, n, spacing), DDIMSampler(schedule, n, spacing)
            dpm_error, ddim_error = (ode_error(solver, x_start, solver.timesteps[-1]) for solver in solvers)
            assert dpm_error < 0.7 * ddim_error


def test_first_order_dpm_solver_is_ddim_and_runs_are_reproducible_and_built_from_json():
    schedule = NoiseSchedule(clip_sample=False)
    x_start = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(20), dtype=torch.float64)
    model_fn = gaussian_model(schedule)
    first_order = DPMSolverSampler(schedule, 12, solver_order=1).sample(model_fn, x_start.shape, x_start=x_start, dtype=torch.float64)
    ddim = DDIMSampler(schedule, 12).sample(model_fn, x_start.shape, x_start=x_start, dtype=torch.float64)
    torch.testing.assert_close(first_order, ddim, rtol=0, atol=1e-10)
    sampler = DPMSolverSampler(schedule, 12)
    runs = [sampler.sample(model_fn, x_start.shape, x_start=x_start, dtype=torch.float64) for _ in range(2)]
    assert torch.equal(runs[0], runs[1]) and not torch.allclose(runs[0], ddim)
    sampler = DPMSolverSampler(schedule, 15, "leading", solver_order=1)
    rebuilt = build_sampler(schedule, json.loads(json.dumps(sampler.to_dict())))
    assert isinstance(rebuilt, DPMSolverSampler) and rebuilt.to_dict() == sampler.to_dict()
    with pytest.raises(ValueError):
        build_sampler(schedule, {"name": "dpm_solver", "solver_order": 3})
