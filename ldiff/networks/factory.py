"""Build a network from its JSON-able config; the only place that maps architecture names to classes."""
from __future__ import annotations

from typing import Any

from torch import nn

from ldiff.networks.config import NetworkConfig
from ldiff.networks.unet import DiffusionUNet


def build_network(network_config: dict[str, Any] | NetworkConfig) -> nn.Module:
    """A freshly initialised network for ``network_config`` (keys: see ``ldiff.networks.config``).

    Both architectures, ``"unet2d"`` and ``"unet_p3d"``, are :class:`DiffusionUNet` instances; the
    pseudo-3D one has slice convolutions in its residual blocks, initialised to the identity.

    Raises:
        ValueError: for an invalid config.
    """
    return DiffusionUNet(NetworkConfig.from_dict(network_config))


def downsampling_factor(network_config: dict[str, Any] | NetworkConfig) -> int:
    """``2 ** (levels - 1)``: slice height and width must be multiples of it (the planner pads to it)."""
    return NetworkConfig.from_dict(network_config).downsampling_factor
