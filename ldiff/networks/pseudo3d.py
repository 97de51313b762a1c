"""Pseudo-3D pieces: folding slice stacks into a 2D batch and mixing neighbouring slices.

A pseudo-3D network sees a stack of ``D`` neighbouring slices, ``(B, C, D, H, W)``. Every 2D layer
(convolutions, norms, attention) runs on the ``B * D`` slices as one 2D batch, ``(B * D, C, H, W)``,
with slice ``d`` of sample ``b`` at batch index ``b * D + d``. The only layers that see across
slices are the :class:`SliceConv` layers inside the residual blocks, so a 2D network becomes
pseudo-3D by inserting them, and, thanks to their identity initialisation, starts out computing
exactly what the 2D network computes (see :func:`load_2d_weights`).
"""
from __future__ import annotations

import torch
from torch import nn


def fold_stacks(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, D, H, W)`` -> ``(B * D, C, H, W)``, slices of one stack adjacent in the batch."""
    batch, channels, depth, height, width = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(batch * depth, channels, height, width)


def unfold_stacks(x: torch.Tensor, depth: int) -> torch.Tensor:
    """Inverse of :func:`fold_stacks`: ``(B * D, C, H, W)`` -> ``(B, C, D, H, W)``."""
    folded, channels, height, width = x.shape
    return x.reshape(folded // depth, depth, channels, height, width).permute(0, 2, 1, 3, 4)


class SliceConv(nn.Module):
    """A 1D convolution (kernel 3) across the slice axis, applied at every pixel, mixing channels.

    It is a ``Conv3d`` with kernel ``(3, 1, 1)``, which is the same computation as a ``Conv1d`` over
    the slice axis for every pixel, without the reshapes a ``Conv1d`` would need.

    Padding is zero padding: the slices beyond either end of a stack contribute nothing. Unlike
    replicate padding, this lets the network tell the edge slices of a stack from the inner ones
    (an edge slice has only one neighbour), and a stack of depth 1 reduces exactly to the centre tap.

    The weights start as the identity (centre tap = identity matrix, outer taps and bias zero), so
    a freshly inserted layer changes nothing.

    Args:
        channels: number of feature channels ``C`` (input and output).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, kernel_size=(3, 1, 1), padding=(1, 0, 0), padding_mode="zeros")
        self.reset_to_identity()

    @torch.no_grad()
    def reset_to_identity(self) -> None:
        """Centre tap = identity, outer taps and bias = 0."""
        weight = self.conv.weight
        weight.zero_()
        channels = weight.shape[0]
        weight[:, :, 1, 0, 0] = torch.eye(channels, device=weight.device, dtype=weight.dtype)
        self.conv.bias.zero_()

    def forward(self, x: torch.Tensor, depth: int) -> torch.Tensor:
        """Mix neighbouring slices.

        Args:
            x: folded features ``(B * D, C, H, W)``.
            depth: the stack depth ``D`` (any value >= 1).

        Returns:
            ``(B * D, C, H, W)``.
        """
        return fold_stacks(self.conv(unfold_stacks(x, depth)))


def slice_conv_parameter_names(model: nn.Module) -> set[str]:
    """State-dict names of every :class:`SliceConv` parameter in ``model``."""
    return {
        f"{module_name}.{parameter_name}"
        for module_name, module in model.named_modules()
        if isinstance(module, SliceConv)
        for parameter_name, _ in module.named_parameters()
    }


def load_2d_weights(pseudo3d_model: nn.Module, state_dict_2d: dict[str, torch.Tensor]) -> None:
    """Initialise a pseudo-3D network from the weights of the matching 2D network.

    Every 2D weight is copied; the slice convolutions keep their current values (identity when fresh),
    so a fresh pseudo-3D model then computes, slice by slice, exactly what the 2D model computes.

    Raises:
        ValueError: if the state dict holds keys the pseudo-3D model lacks or misses a 2D weight
            (the two networks were built from different configs).
    """
    own = pseudo3d_model.state_dict()
    unexpected = sorted(set(state_dict_2d) - set(own))
    missing = sorted(set(own) - set(state_dict_2d) - slice_conv_parameter_names(pseudo3d_model))
    reshaped = sorted(key for key in set(own) & set(state_dict_2d) if own[key].shape != state_dict_2d[key].shape)
    if unexpected or missing or reshaped:
        raise ValueError(
            "the 2D weights do not match the pseudo-3D network (unexpected: "
            f"{unexpected[:3]}, missing: {missing[:3]}, other shape: {reshaped[:3]}); were both built from the same config?"
        )
    pseudo3d_model.load_state_dict(state_dict_2d, strict=False)
