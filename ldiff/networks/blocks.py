"""Building blocks of the diffusion UNet: timestep embedding, residual block, attention, resampling.

All blocks work on 2D feature maps ``(N, C, H, W)``. In a pseudo-3D network ``N = B * D`` (slices of
a stack folded into the batch, see ``pseudo3d.py``) and the residual blocks receive the stack depth
``D`` so that their slice convolutions can mix neighbouring slices.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ldiff.networks.pseudo3d import SliceConv


def group_count(channels: int, max_groups: int = 32) -> int:
    """The largest number of groups ``<= max_groups`` that divides ``channels`` (GroupNorm needs a divisor)."""
    for groups in range(min(max_groups, channels), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


def group_norm(channels: int, max_groups: int) -> nn.GroupNorm:
    """GroupNorm over ``channels`` with :func:`group_count` groups."""
    return nn.GroupNorm(group_count(channels, max_groups), channels)


def sinusoidal_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style sinusoidal embedding of (possibly fractional) timesteps.

    Args:
        timesteps: shape ``(N,)``, integer or float, in ``[0, T)``.
        dim: embedding size; odd sizes get one zero column.
        max_period: longest period, in timesteps.

    Returns:
        float32 tensor ``(N, dim)``: ``[cos(t * f_k), sin(t * f_k)]`` for ``dim // 2`` frequencies
        ``f_k = max_period ** (-k / (dim // 2))``, values in ``[-1, 1]``.
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    angles = timesteps.float()[:, None] * torch.exp(exponent)[None, :]
    embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


class TimestepEmbedding(nn.Module):
    """Sinusoidal embedding followed by a two-layer MLP: ``(N,)`` -> ``(N, embedding_dim)``.

    Args:
        sinusoid_dim: size of the sinusoidal code.
        embedding_dim: size of the learned embedding fed to every residual block.
    """

    def __init__(self, sinusoid_dim: int, embedding_dim: int) -> None:
        super().__init__()
        self.sinusoid_dim = sinusoid_dim
        self.mlp = nn.Sequential(nn.Linear(sinusoid_dim, embedding_dim), nn.SiLU(), nn.Linear(embedding_dim, embedding_dim))

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        first_layer = self.mlp[0]
        # The code is computed in float32 (timesteps up to 1000 need its precision) and then cast to
        # the weights' dtype so that a float64 or bfloat16 model gets matching inputs.
        return self.mlp(sinusoidal_embedding(timesteps, self.sinusoid_dim).to(first_layer.weight.dtype))


class ResidualBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the timestep embedding added in between, plus a skip connection.

    With ``slice_mixing`` a :class:`SliceConv` follows each of the two 3x3 convolutions (identity at
    initialisation), which is what makes the network pseudo-3D.

    Args:
        in_channels: input channels.
        out_channels: output channels; a 1x1 convolution adapts the skip path when they differ.
        time_dim: size of the timestep embedding.
        max_groups: upper bound on GroupNorm groups (see :func:`group_count`).
        dropout: dropout probability before the second convolution.
        slice_mixing: insert slice convolutions (pseudo-3D).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        time_dim: int,
        max_groups: int = 32,
        dropout: float = 0.0,
        slice_mixing: bool = False,
    ) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels, max_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.slice_mix1 = SliceConv(out_channels) if slice_mixing else None
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, out_channels))
        self.norm2 = group_norm(out_channels, max_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.slice_mix2 = SliceConv(out_channels) if slice_mixing else None
        self.skip = nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, time_embedding: torch.Tensor, depth: int = 1) -> torch.Tensor:
        """Args: ``x`` ``(N, C_in, H, W)``; ``time_embedding`` ``(N, time_dim)``; ``depth`` the stack depth ``D``
        (``N = B * D``; ignored without slice mixing). Returns ``(N, C_out, H, W)``."""
        h = self.conv1(F.silu(self.norm1(x)))
        if self.slice_mix1 is not None:
            h = self.slice_mix1(h, depth)
        h = h + self.time_projection(time_embedding)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if self.slice_mix2 is not None:
            h = self.slice_mix2(h, depth)
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the pixels of each 2D feature map, with a residual connection.

    Args:
        channels: feature channels ``C``.
        max_groups: upper bound on GroupNorm groups.
        head_channels: channels per head; ``C // head_channels`` heads when it divides ``C``, else one head.
    """

    def __init__(self, channels: int, max_groups: int = 32, head_channels: int = 64) -> None:
        super().__init__()
        self.num_heads = channels // head_channels if channels % head_channels == 0 and channels >= head_channels else 1
        self.norm = group_norm(channels, max_groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, kernel_size=1)
        self.projection = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, C, H, W)``."""
        n, channels, height, width = x.shape
        qkv = self.qkv(self.norm(x)).reshape(n, 3, self.num_heads, channels // self.num_heads, height * width)
        query, key, value = (qkv[:, i].transpose(-1, -2) for i in range(3))  # each (N, heads, HW, head_channels)
        attended = F.scaled_dot_product_attention(query, key, value)
        attended = attended.transpose(-1, -2).reshape(n, channels, height, width)
        return x + self.projection(attended)


class Downsample(nn.Module):
    """Halve height and width with a strided 3x3 convolution: ``(N, C, H, W)`` -> ``(N, C, H/2, W/2)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double height and width (nearest neighbour, then a 3x3 convolution against checkerboard artefacts)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
