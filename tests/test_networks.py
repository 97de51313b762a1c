"""2D and pseudo-3D diffusion UNets, their config, and the training-memory estimate."""
from __future__ import annotations

import json

import pytest
import torch

from ldiff.networks import (
    NetworkConfig,
    SliceConv,
    build_network,
    count_parameters,
    downsampling_factor,
    estimate_training_memory_bytes,
    load_2d_weights,
)
from ldiff.networks.blocks import SelfAttention, group_count, sinusoidal_embedding

# Odd on purpose: channel counts that 32 does not divide, one residual block, attention mid-way.
ODD = {
    "in_channels": 3,
    "out_channels": 2,
    "channels": [12, 20, 36],
    "num_res_blocks": 1,
    "attention_levels": [False, True, False],
    "norm_groups": 32,
    "attention_head_channels": 10,
}


def config(architecture: str, **overrides) -> dict:
    return {"architecture": architecture, **ODD, **overrides}


def randomize_output_conv(model: torch.nn.Module, seed: int = 0) -> None:
    """The output convolution starts at zero, which would make every comparison of outputs trivial."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.output_conv.parameters():
            parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))


def perturb_slice_convs(model: torch.nn.Module, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, SliceConv):
                module.conv.weight.add_(0.2 * torch.randn(module.conv.weight.shape, generator=generator))


def test_group_count_is_the_largest_divisor_up_to_the_limit():
    assert [group_count(c) for c in (12, 20, 36, 48, 96, 7, 512)] == [12, 20, 18, 24, 32, 7, 32]
    assert group_count(40, max_groups=8) == 8 and group_count(36, max_groups=8) == 6


def test_sinusoidal_embedding_shape_range_and_distinctness():
    embedding = sinusoidal_embedding(torch.tensor([0, 1, 500, 999]), 33)
    assert embedding.shape == (4, 33) and torch.all(embedding[:, -1] == 0)
    assert embedding.abs().max() <= 1
    assert torch.cdist(embedding, embedding)[~torch.eye(4, dtype=torch.bool)].min() > 0.1
    assert torch.allclose(embedding[0, :16], torch.ones(16))  # cos(0) = 1


def test_self_attention_is_global_and_equivariant_to_pixel_permutations():
    torch.manual_seed(0)
    attention = SelfAttention(16, max_groups=4, head_channels=8).double()
    assert attention.num_heads == 2
    with torch.no_grad():
        attention.projection.weight.normal_()  # make the attended term visible next to the residual
        x = torch.randn(2, 16, 6, 6, dtype=torch.float64)
        out = attention(x)
        # No positional code: permuting the pixels permutes the output the same way.
        permutation = torch.randperm(36)
        permuted = x.flatten(2)[:, :, permutation].reshape(x.shape)
        torch.testing.assert_close(attention(permuted).flatten(2), out.flatten(2)[:, :, permutation])
        # Global: a change at one corner pixel reaches the opposite corner.
        changed = x.clone()
        changed[:, :, 0, 0] += 1
        assert not torch.allclose(attention(changed)[:, :, 5, 5], out[:, :, 5, 5])


def test_self_attention_matches_softmax_attention_and_is_residual():
    torch.manual_seed(0)
    attention = SelfAttention(8, max_groups=2, head_channels=64).double()  # 8 < 64: a single head
    x = torch.randn(1, 8, 3, 4, dtype=torch.float64)
    with torch.no_grad():
        attention.projection.weight.normal_()
        tokens = attention.norm(x).flatten(2)[0].T  # (HW, C)
        qkv = tokens @ attention.qkv.weight[:, :, 0, 0].T + attention.qkv.bias  # channels: q, then k, then v
        query, key, value = qkv[:, :8], qkv[:, 8:16], qkv[:, 16:]
        attended = torch.softmax(query @ key.T / 8**0.5, dim=-1) @ value  # (HW, C)
        expected = x + attention.projection(attended.T.reshape(1, 8, 3, 4))
        torch.testing.assert_close(attention(x), expected)
        attention.projection.weight.zero_()
        attention.projection.bias.zero_()
        torch.testing.assert_close(attention(x), x)  # the attended term is added to the input


@pytest.mark.parametrize(
    "architecture, shape",
    [("unet2d", (2, 3, 16, 24)), ("unet_p3d", (2, 3, 5, 16, 24)), ("unet_p3d", (1, 3, 1, 8, 8))],
)
def test_output_shape_and_zero_initial_output(architecture, shape):
    model = build_network(config(architecture))
    out = model(torch.randn(shape), torch.tensor([3, 800][: shape[0]]))
    assert out.shape == (shape[0], 2, *shape[2:])
    assert torch.count_nonzero(out) == 0  # zero-initialised output convolution
    randomize_output_conv(model)
    assert model(torch.randn(shape), torch.full((shape[0],), 5.0)).abs().sum() > 0  # float timesteps work too


def test_fresh_pseudo3d_model_equals_the_2d_model_slice_by_slice():
    torch.manual_seed(0)
    # float64, so that the comparison is not blurred by batch-size-dependent convolution rounding
    model_2d = build_network(config("unet2d")).double()
    randomize_output_conv(model_2d)
    model_p3d = build_network(config("unet_p3d")).double()
    load_2d_weights(model_p3d, model_2d.state_dict())
    stacks = torch.randn(2, 3, 4, 16, 16, dtype=torch.float64)
    timesteps = torch.tensor([10, 700])  # different per stack: checks which slices get which timestep
    with torch.no_grad():
        out_p3d = model_p3d(stacks, timesteps)
        for d in range(4):
            torch.testing.assert_close(out_p3d[:, :, d], model_2d(stacks[:, :, d], timesteps), rtol=0, atol=1e-12)


def test_load_2d_weights_rejects_another_config():
    model_p3d = build_network(config("unet_p3d"))
    with pytest.raises(ValueError, match="same config"):
        load_2d_weights(model_p3d, build_network(config("unet2d", channels=[12, 20, 40])).state_dict())


def test_pseudo3d_mixes_neighbouring_slices_only_once_perturbed_and_2d_never_does():
    torch.manual_seed(0)
    model_p3d = build_network(config("unet_p3d"))
    randomize_output_conv(model_p3d)
    model_2d = build_network(config("unet2d"))
    model_2d.load_state_dict(model_p3d.state_dict(), strict=False)
    stacks = torch.randn(1, 3, 3, 16, 16)
    changed = stacks.clone()
    changed[:, :, 0] += 1.0
    timesteps = torch.tensor([50])

    def slice_one_moves(model, a, b) -> bool:
        with torch.no_grad():
            return not torch.allclose(model(a, timesteps)[:, :, 1], model(b, timesteps)[:, :, 1], atol=1e-6)

    assert not slice_one_moves(model_p3d, stacks, changed)  # identity slice convs: no mixing yet
    perturb_slice_convs(model_p3d)
    assert slice_one_moves(model_p3d, stacks, changed)
    # The 2D model sees the same slices as a batch; a change in one batch element must not leak.
    as_batch = lambda x: x[0].permute(1, 0, 2, 3)  # noqa: E731  (C, D, H, W) -> (D, C, H, W)
    with torch.no_grad():
        before = model_2d(as_batch(stacks), timesteps.repeat(3))
        after = model_2d(as_batch(changed), timesteps.repeat(3))
    torch.testing.assert_close(before[1:], after[1:], rtol=0, atol=0)


def test_one_timestep_per_stack():
    torch.manual_seed(0)
    model = build_network(config("unet_p3d")).double()
    randomize_output_conv(model)
    perturb_slice_convs(model)
    stacks = torch.randn(2, 3, 4, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="one per sample"):
        model(stacks, torch.zeros(8, dtype=torch.long))  # one per slice is refused
    with torch.no_grad():
        together = model(stacks, torch.tensor([20, 900]))
        alone = model(stacks[1:], torch.tensor([900]))
    torch.testing.assert_close(together[1:], alone, rtol=0, atol=1e-12)


def test_attention_sits_where_the_config_says():
    sizes = []
    model = build_network(config("unet2d", num_res_blocks=2, channels=[8, 16, 16, 32], attention_levels=[False, True, False, True]))
    attentions = [m for m in model.modules() if isinstance(m, SelfAttention)]
    for attention in attentions:
        attention.register_forward_hook(lambda module, inputs, _: sizes.append((inputs[0].shape[1], inputs[0].shape[-1])))
    model(torch.randn(1, 3, 32, 32), torch.tensor([1]))
    # Level 1 (16 channels, 16x16): 2 down + 3 up; level 3 (32 channels, 4x4): 2 + 3, plus the middle block.
    assert sorted(sizes) == sorted([(16, 16)] * 5 + [(32, 4)] * 6)
    assert attentions[0].num_heads == 1 and attentions[-1].num_heads == 1  # 64 channels per head by default
    no_middle = build_network(config("unet2d", attention_levels=[False, False, False], mid_attention=False))
    assert not any(isinstance(m, SelfAttention) for m in no_middle.modules())


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = build_network(config("unet_p3d", dropout=0.1))
    randomize_output_conv(model)
    model(torch.randn(2, 3, 3, 8, 8), torch.tensor([5, 500])).square().mean().backward()
    no_gradient = [name for name, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert no_gradient == []


def test_sizes_not_divisible_by_the_downsampling_factor_are_refused():
    assert downsampling_factor(config("unet2d")) == 4
    assert downsampling_factor(config("unet2d", channels=[8] * 6, attention_levels=None)) == 32
    with pytest.raises(ValueError, match="multiple of 4"):
        build_network(config("unet2d"))(torch.randn(1, 3, 16, 18), torch.tensor([1]))
    with pytest.raises(ValueError, match="multiple of 4"):
        estimate_training_memory_bytes(config("unet_p3d"), (3, 2, 10, 16), batch_size=1)
    with pytest.raises(ValueError, match=r"\(B, C, D, H, W\)"):
        build_network(config("unet_p3d"))(torch.randn(1, 3, 16, 16), torch.tensor([1]))


def test_config_round_trip_and_validation():
    parsed = NetworkConfig.from_dict(json.loads(json.dumps(config("unet_p3d"))))
    assert NetworkConfig.from_dict(json.loads(json.dumps(parsed.to_dict()))) == parsed
    assert parsed.resolved_time_embedding_dim == 48
    for bad in ({"channelz": [8]}, {"attention_levels": [True]}, {"architecture": "unet3d"}, {"num_res_blocks": 0}):
        with pytest.raises(ValueError):
            build_network({**config("unet2d"), **bad})
    with pytest.raises(ValueError, match="missing"):
        build_network({"architecture": "unet2d", "channels": [8]})


def test_parameter_count_and_slice_conv_overhead():
    model_2d, model_p3d = build_network(config("unet2d")), build_network(config("unet_p3d"))
    assert count_parameters(model_2d) == sum(p.numel() for p in model_2d.parameters())
    # Two slice convolutions (3 C^2 weights + C biases) per residual block, C = its output channels.
    blocks = [m for m in model_p3d.modules() if type(m).__name__ == "ResidualBlock"]
    extra = sum(2 * (3 * b.conv2.out_channels**2 + b.conv2.out_channels) for b in blocks)
    assert count_parameters(model_p3d) - count_parameters(model_2d) == extra
    model_2d.input_conv.weight.requires_grad_(False)
    assert count_parameters(model_2d, trainable_only=True) == count_parameters(model_2d) - model_2d.input_conv.weight.numel()


def saved_activation_bytes(model: torch.nn.Module, x: torch.Tensor, timesteps: torch.Tensor) -> int:
    """What autograd really keeps for backward on this CPU: distinct non-parameter storages it saves."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(x, timesteps)
    return sum(saved.values())


@pytest.mark.parametrize("architecture, sample_shape", [("unet2d", (3, 32, 32)), ("unet_p3d", (3, 4, 16, 16))])
def test_memory_estimate_is_linear_in_batch_and_close_to_what_autograd_saves(architecture, sample_shape):
    network_config = config(architecture)
    estimates = [estimate_training_memory_bytes(network_config, sample_shape, batch) for batch in (1, 2, 3)]
    per_sample = estimates[1] - estimates[0]
    assert per_sample > 0 and estimates[2] - estimates[1] == per_sample
    model = build_network(network_config)
    # Weights, gradients, two AdamW moments and an EMA copy, 4 bytes each.
    assert estimates[0] - per_sample == 20 * count_parameters(model)
    half = estimate_training_memory_bytes(network_config, sample_shape, 2, dtype_bytes=2)
    assert estimates[1] - half == per_sample  # mixed precision halves the activations only
    randomize_output_conv(model)
    measured = saved_activation_bytes(model, torch.randn(2, *sample_shape), torch.tensor([1, 2])) / 2
    assert 0.6 < per_sample / measured < 1.6


def test_memory_estimate_of_the_thesis_network_is_plausible():
    thesis = {
        "architecture": "unet2d",
        "in_channels": 3,
        "out_channels": 1,
        "channels": [128, 128, 256, 256, 512, 512],
        "num_res_blocks": 2,
        "attention_levels": [False, False, False, False, True, False],
    }
    with torch.device("meta"):
        assert 100e6 < count_parameters(build_network(thesis)) < 130e6
    gigabytes = estimate_training_memory_bytes(thesis, (3, 256, 256), batch_size=8, dtype_bytes=2) / 1e9
    assert 5 < gigabytes < 40
