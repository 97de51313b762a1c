"""The diffusion UNet, 2D or pseudo-3D, in the style of DDPM/ADM (Ho et al. 2020; Dhariwal & Nichol 2021).

Down path: per level ``num_res_blocks`` residual blocks (each optionally followed by self-attention),
then a strided-convolution downsampling except at the deepest level. Middle: residual block,
self-attention, residual block. Up path: per level ``num_res_blocks + 1`` residual blocks, each fed
the concatenation of the running features and one skip connection, then nearest-neighbour
upsampling except at the top level. The output convolution starts at zero, so the untrained network
predicts 0 (the mean of both the noise and v).

The pseudo-3D network has exactly the same 2D layers (same state-dict names) plus slice convolutions
in every residual block; see ``pseudo3d.py``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ldiff.networks.blocks import Downsample, ResidualBlock, SelfAttention, TimestepEmbedding, Upsample, group_norm
from ldiff.networks.config import NetworkConfig
from ldiff.networks.pseudo3d import fold_stacks, unfold_stacks


class UNetLevel(nn.Module):
    """The residual blocks (and optional attentions) of one level on one path, plus its resampling layer."""

    def __init__(self, blocks: list[ResidualBlock], attentions: list[SelfAttention] | None, resample: nn.Module | None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attentions = nn.ModuleList(attentions) if attentions else None
        self.resample = resample


class DiffusionUNet(nn.Module):
    """Noise (or v) prediction network for 2D slices or pseudo-3D slice stacks.

    Args:
        config: a :class:`NetworkConfig` (see ``config.py`` for the keys).

    Forward:
        ``model(x, timesteps)`` with ``x`` of shape ``(B, in_channels, H, W)`` (``unet2d``) or
        ``(B, in_channels, D, H, W)`` (``unet_p3d``, ``D >= 1`` neighbouring slices) and ``timesteps``
        of shape ``(B,)`` (integer or float, in ``[0, T)``); all ``D`` slices of a stack share their
        sample's timestep. ``H`` and ``W`` must be multiples of ``config.downsampling_factor``.
        Returns ``(B, out_channels, H, W)`` or ``(B, out_channels, D, H, W)``.
    """

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        channels = config.channels
        time_dim = config.resolved_time_embedding_dim
        groups, mixing = config.norm_groups, config.is_pseudo3d

        def residual(in_channels: int, out_channels: int) -> ResidualBlock:
            return ResidualBlock(in_channels, out_channels, time_dim, groups, config.dropout, slice_mixing=mixing)

        def attentions(level: int, count: int) -> list[SelfAttention] | None:
            if not config.attention_levels[level]:
                return None
            return [SelfAttention(channels[level], groups, config.attention_head_channels) for _ in range(count)]

        self.time_embedding = TimestepEmbedding(channels[0], time_dim)
        self.input_conv = nn.Conv2d(config.in_channels, channels[0], kernel_size=3, padding=1)

        # Channels of every tensor pushed onto the skip stack, in push order.
        skip_channels = [channels[0]]
        current = channels[0]
        self.down_levels = nn.ModuleList()
        for level, level_channels in enumerate(channels):
            blocks = []
            for _ in range(config.num_res_blocks):
                blocks.append(residual(current, level_channels))
                current = level_channels
                skip_channels.append(current)
            is_deepest = level == config.num_levels - 1
            if not is_deepest:
                skip_channels.append(current)
            downsample = None if is_deepest else Downsample(current)
            self.down_levels.append(UNetLevel(blocks, attentions(level, config.num_res_blocks), downsample))

        self.middle_blocks = nn.ModuleList([residual(current, current), residual(current, current)])
        self.middle_attention = SelfAttention(current, groups, config.attention_head_channels) if config.mid_attention else None

        self.up_levels = nn.ModuleList()
        for level in reversed(range(config.num_levels)):
            blocks = []
            for _ in range(config.num_res_blocks + 1):
                blocks.append(residual(current + skip_channels.pop(), channels[level]))
                current = channels[level]
            upsample = Upsample(current) if level > 0 else None
            self.up_levels.append(UNetLevel(blocks, attentions(level, config.num_res_blocks + 1), upsample))

        self.output_norm = group_norm(current, groups)
        self.output_conv = nn.Conv2d(current, config.out_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.output_conv.weight)
        nn.init.zeros_(self.output_conv.bias)

    def check_input(self, x: torch.Tensor, timesteps: torch.Tensor) -> None:
        """Raise a ``ValueError`` that names the problem when ``x`` or ``timesteps`` has the wrong shape."""
        expected_ndim = 5 if self.config.is_pseudo3d else 4
        layout = "(B, C, D, H, W)" if self.config.is_pseudo3d else "(B, C, H, W)"
        if x.ndim != expected_ndim:
            raise ValueError(f"{self.config.architecture} expects input {layout}, got shape {tuple(x.shape)}.")
        if x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected {self.config.in_channels} input channels, got {x.shape[1]} (shape {tuple(x.shape)}).")
        factor = self.config.downsampling_factor
        height, width = x.shape[-2:]
        if height % factor or width % factor:
            raise ValueError(
                f"slice size {height}x{width} is not a multiple of {factor} (2 ** (levels - 1)); pad it to "
                f"{-(-height // factor) * factor}x{-(-width // factor) * factor}."
            )
        if timesteps.shape != (x.shape[0],):
            raise ValueError(f"timesteps must have shape (B,) = ({x.shape[0]},), one per sample; got {tuple(timesteps.shape)}.")

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        self.check_input(x, timesteps)
        time_embedding = self.time_embedding(timesteps)
        depth = 1
        if self.config.is_pseudo3d:
            depth = x.shape[2]
            x = fold_stacks(x)
            # One timestep per stack: every slice of sample b gets sample b's embedding.
            time_embedding = time_embedding.repeat_interleave(depth, dim=0)

        h = self.input_conv(x)
        skips = [h]
        for level in self.down_levels:
            for index, block in enumerate(level.blocks):
                h = block(h, time_embedding, depth)
                if level.attentions is not None:
                    h = level.attentions[index](h)
                skips.append(h)
            if level.resample is not None:
                h = level.resample(h)
                skips.append(h)

        h = self.middle_blocks[0](h, time_embedding, depth)
        if self.middle_attention is not None:
            h = self.middle_attention(h)
        h = self.middle_blocks[1](h, time_embedding, depth)

        for level in self.up_levels:
            for index, block in enumerate(level.blocks):
                h = block(torch.cat([h, skips.pop()], dim=1), time_embedding, depth)
                if level.attentions is not None:
                    h = level.attentions[index](h)
            if level.resample is not None:
                h = level.resample(h)

        out = self.output_conv(F.silu(self.output_norm(h)))
        return unfold_stacks(out, depth) if self.config.is_pseudo3d else out
