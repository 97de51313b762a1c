"""Diffusion UNets (2D and pseudo-3D) built from a JSON-able config, and their memory estimate."""
from ldiff.networks.config import NetworkConfig
from ldiff.networks.factory import build_network, downsampling_factor
from ldiff.networks.memory import count_parameters, estimate_training_memory_bytes
from ldiff.networks.pseudo3d import SliceConv, load_2d_weights
from ldiff.networks.unet import DiffusionUNet

__all__ = [
    "DiffusionUNet",
    "NetworkConfig",
    "SliceConv",
    "build_network",
    "count_parameters",
    "downsampling_factor",
    "estimate_training_memory_bytes",
    "load_2d_weights",
]
