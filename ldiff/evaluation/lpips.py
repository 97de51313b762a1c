"""LPIPS v0.1 with the AlexNet backbone, in plain torch, with weights shipped in the package.

The official ``lpips`` package needs torchvision and downloads the AlexNet backbone at run time; we
need neither. The network below is torchvision's AlexNet ``features`` (conv1..conv5, ReLUs, the two
max-pools between conv1/conv2 and conv2/conv3), tapped after relu1..relu5, followed by the LPIPS
recipe: scaling layer, channel-unit normalisation, squared difference, 1x1 linear heads, spatial mean,
sum over the five layers. Weights come from ``weights/lpips_alexnet_v0.1.npz`` (written by
``scripts/convert_lpips_weights.py``), loaded with ``allow_pickle=False``.

Inputs are images in [-1, 1] (the convention of the LPIPS paper's ``normalize=False`` path).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

DEFAULT_WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "lpips_alexnet_v0.1.npz"

# The LPIPS "scaling layer": moves [-1, 1] inputs to the ImageNet statistics AlexNet was trained on.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_NORMALISATION_EPS = 1e-10
# Smallest side for which the relu5 feature map is still non-empty (conv1 stride 4, two 3x3/2 pools).
MIN_IMAGE_SIZE = 31
# Inputs a little outside [-1, 1] (e.g. unclipped network outputs) are accepted; far outside means
# the caller passed [0, 255] or raw intensities, which would give meaningless distances.
_RANGE_TOLERANCE = 0.05
_FEATURE_CHANNELS = (64, 192, 384, 256, 256)


class AlexNetFeatures(nn.Module):
    """torchvision-compatible AlexNet convolutional trunk returning the relu1..relu5 activations.

    Input: (B, 3, H, W) float32, already passed through the LPIPS scaling layer.
    Output: five tensors of shape (B, C_k, H_k, W_k) with C = 64, 192, 384, 256, 256.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2)
        self.conv2 = nn.Conv2d(64, 192, kernel_size=5, padding=2)
        self.conv3 = nn.Conv2d(192, 384, kernel_size=3, padding=1)
        self.conv4 = nn.Conv2d(384, 256, kernel_size=3, padding=1)
        self.conv5 = nn.Conv2d(256, 256, kernel_size=3, padding=1)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        relu1 = F.relu(self.conv1(images))
        relu2 = F.relu(self.conv2(F.max_pool2d(relu1, kernel_size=3, stride=2)))
        relu3 = F.relu(self.conv3(F.max_pool2d(relu2, kernel_size=3, stride=2)))
        relu4 = F.relu(self.conv4(relu3))
        relu5 = F.relu(self.conv5(relu4))
        return [relu1, relu2, relu3, relu4, relu5]


def _unit_normalise_channels(features: torch.Tensor) -> torch.Tensor:
    """Divide each spatial position's feature vector by its L2 norm (over channels, dim 1)."""
    norm = torch.sqrt(torch.sum(features * features, dim=1, keepdim=True))
    return features / (norm + _NORMALISATION_EPS)


class LPIPS(nn.Module):
    """Learned Perceptual Image Patch Similarity, v0.1 linear heads on AlexNet; evaluation only.

    ``forward(image_a, image_b)`` takes two (B, C, H, W) tensors with C = 1 (grayscale, repeated to 3
    channels) or C = 3 (RGB), values in [-1, 1], H and W >= 31, and returns (B,) distances >= 0
    (0 for identical images; roughly 0-1 in practice).
    """

    def __init__(self, weights_path: str | Path = DEFAULT_WEIGHTS_PATH) -> None:
        super().__init__()
        self.features = AlexNetFeatures()
        self.heads = nn.ModuleList(nn.Conv2d(channels, 1, kernel_size=1, bias=False) for channels in _FEATURE_CHANNELS)
        self.register_buffer("shift", torch.tensor(_SHIFT, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE, dtype=torch.float32).view(1, 3, 1, 1))
        self.load_state_dict(self._state_dict_from_npz(Path(weights_path)), strict=False)
        self.requires_grad_(False)
        self.eval()

    def _state_dict_from_npz(self, path: Path) -> dict[str, torch.Tensor]:
        """Read the shipped .npz and return a state dict for every parameter (buffers stay as built)."""
        if not path.is_file():
            raise FileNotFoundError(
                f"LPIPS weights not found at {path}; regenerate them with scripts/convert_lpips_weights.py"
            )
        state: dict[str, torch.Tensor] = {}
        with np.load(path, allow_pickle=False) as archive:
            for layer in range(1, 6):
                state[f"features.conv{layer}.weight"] = torch.from_numpy(archive[f"alexnet_conv{layer}_weight"].copy())
                state[f"features.conv{layer}.bias"] = torch.from_numpy(archive[f"alexnet_conv{layer}_bias"].copy())
                state[f"heads.{layer - 1}.weight"] = torch.from_numpy(archive[f"lpips_head{layer}_weight"].copy())
        expected = {name for name, _ in self.named_parameters()}
        if set(state) != expected:
            raise ValueError(f"{path} does not match the LPIPS AlexNet layout")
        for name, parameter in self.named_parameters():
            if state[name].shape != parameter.shape:
                raise ValueError(
                    f"{path}: {name} has shape {tuple(state[name].shape)}, expected {tuple(parameter.shape)}"
                )
            state[name] = state[name].to(torch.float32)
        return state

    @staticmethod
    def _as_rgb(images: torch.Tensor, name: str) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"{name} must be (B, 1, H, W) or (B, 3, H, W), got {tuple(images.shape)}")
        if min(images.shape[-2:]) < MIN_IMAGE_SIZE:
            raise ValueError(f"{name} is {tuple(images.shape[-2:])}; LPIPS-AlexNet needs H, W >= {MIN_IMAGE_SIZE}")
        largest = float(images.abs().max()) if images.numel() else 0.0
        if largest > 1.0 + _RANGE_TOLERANCE:
            raise ValueError(f"{name} must be scaled to [-1, 1]; its largest magnitude is {largest:.3g}")
        images = images.to(torch.float32)
        return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images

    def forward(self, image_a: torch.Tensor, image_b: torch.Tensor) -> torch.Tensor:
        image_a = self._as_rgb(image_a, "image_a")
        image_b = self._as_rgb(image_b, "image_b")
        if image_a.shape != image_b.shape:
            raise ValueError(f"image shapes differ: {tuple(image_a.shape)} vs {tuple(image_b.shape)}")
        # One pass over both images halves the number of conv calls.
        both = (torch.cat([image_a, image_b]) - self.shift) / self.scale
        distance = image_a.new_zeros(image_a.shape[0])
        for features, head in zip(self.features(both), self.heads):
            features_a, features_b = _unit_normalise_channels(features).chunk(2)
            per_position = head((features_a - features_b) ** 2)  # (B, 1, h, w)
            distance = distance + per_position.mean(dim=(1, 2, 3))
        return distance


@functools.lru_cache(maxsize=4)
def _cached_model(device: str) -> LPIPS:
    return LPIPS().to(device)


def _to_batch(image: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Return a (B, C, H, W) float tensor and whether the input was a single image."""
    # ascontiguousarray: torch cannot wrap numpy views with negative strides (e.g. after np.flip).
    tensor = image if isinstance(image, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(image))
    if tensor.ndim == 2:
        return tensor[None, None], True
    if tensor.ndim == 3:
        return tensor[None], True
    if tensor.ndim == 4:
        return tensor, False
    raise ValueError(f"expected (H, W), (C, H, W) or (B, C, H, W), got shape {tuple(tensor.shape)}")


@torch.no_grad()
def lpips_distance(
    image_a: np.ndarray | torch.Tensor,
    image_b: np.ndarray | torch.Tensor,
    device: str = "cpu",
    batch_size: int = 32,
) -> float | np.ndarray:
    """LPIPS (AlexNet, v0.1) between two images or two batches, with a model cached per device.

    Shapes: (H, W) grayscale or (C, H, W) with C in {1, 3} give a float; (B, C, H, W) gives a (B,)
    float64 array. Values must be in [-1, 1]; H, W >= 31. Batches are processed ``batch_size`` at a
    time to bound memory.
    """
    batch_a, single = _to_batch(image_a)
    batch_b, _ = _to_batch(image_b)
    if batch_a.shape != batch_b.shape:
        raise ValueError(f"image shapes differ: {tuple(batch_a.shape)} vs {tuple(batch_b.shape)}")
    model = _cached_model(device)
    distances = [
        model(batch_a[start : start + batch_size].to(device), batch_b[start : start + batch_size].to(device)).cpu()
        for start in range(0, batch_a.shape[0], batch_size)
    ]
    values = torch.cat(distances).to(torch.float64).numpy() if distances else np.zeros(0)
    return float(values[0]) if single else values
