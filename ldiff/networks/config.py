"""The JSON-able network config: parsing, defaults and validation.

Example (the keys after ``channels`` are optional)::

    {"architecture": "unet_p3d", "in_channels": 3, "out_channels": 1, "channels": [32, 64, 128],
     "num_res_blocks": 2, "attention_levels": [false, false, true], "norm_groups": 32,
     "dropout": 0.0, "time_embedding_dim": null, "attention_head_channels": 64, "mid_attention": true}

The reference thesis network is ``channels = [128, 128, 256, 256, 512, 512]``, two residual blocks
per level and attention at level 4 (16x16 for 256x256 slices) plus the middle block.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

ARCHITECTURES = ("unet2d", "unet_p3d")
REQUIRED_KEYS = ("architecture", "in_channels", "out_channels", "channels")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class NetworkConfig:
    """Validated network settings.

    Attributes:
        architecture: ``"unet2d"`` (input ``(B, C, H, W)``) or ``"unet_p3d"`` (input ``(B, C, D, H, W)``).
        in_channels: channels of the network input (e.g. 3 for noisy image + voided image + mask).
        out_channels: channels of the output (the predicted noise or v).
        channels: feature channels per resolution level; its length is the number of levels.
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attention_levels: per level, whether its blocks are followed by self-attention.
        norm_groups: upper bound on GroupNorm groups (the largest divisor of the channels below it is used).
        dropout: dropout probability inside the residual blocks.
        time_embedding_dim: size of the timestep embedding; ``None`` means ``4 * channels[0]``.
        attention_head_channels: channels per attention head.
        mid_attention: self-attention in the middle block.
    """

    architecture: str
    in_channels: int
    out_channels: int
    channels: tuple[int, ...]
    num_res_blocks: int = 2
    attention_levels: tuple[bool, ...] | None = None
    norm_groups: int = 32
    dropout: float = 0.0
    time_embedding_dim: int | None = None
    attention_head_channels: int = 64
    mid_attention: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.architecture not in ARCHITECTURES:
            problems.append(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        for key in ("in_channels", "out_channels", "num_res_blocks", "norm_groups", "attention_head_channels"):
            value = getattr(self, key)
            if not _is_int(value) or value < 1:
                problems.append(f"{key} must be a positive integer, got {value!r}")
        if not isinstance(self.channels, tuple) or not self.channels or not all(_is_int(c) and c > 0 for c in self.channels):
            problems.append(f"channels must be a non-empty list of positive integers, got {self.channels!r}")
            object.__setattr__(self, "channels", ())  # keeps the checks below from crashing on a non-list
        if self.attention_levels is None:
            object.__setattr__(self, "attention_levels", (False,) * len(self.channels))
        elif (
            not isinstance(self.attention_levels, tuple)
            or len(self.attention_levels) != len(self.channels)
            or not all(isinstance(a, bool) for a in self.attention_levels)
        ):
            problems.append(
                f"attention_levels must list one true/false per level ({len(self.channels)}), got {self.attention_levels!r}"
            )
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.time_embedding_dim is not None and (not _is_int(self.time_embedding_dim) or self.time_embedding_dim < 1):
            problems.append(f"time_embedding_dim must be a positive integer or null, got {self.time_embedding_dim!r}")
        if not isinstance(self.mid_attention, bool):
            problems.append(f"mid_attention must be true or false, got {self.mid_attention!r}")
        if problems:
            raise ValueError("invalid network config: " + "; ".join(problems) + ".")

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> "NetworkConfig":
        """Parse a config dict (as read from JSON).

        Raises:
            ValueError: for missing required keys, unknown keys (typos must not fall back to defaults)
                or invalid values.
        """
        if isinstance(config, NetworkConfig):
            return config
        missing = [key for key in REQUIRED_KEYS if key not in config]
        unknown = sorted(set(config) - set(cls.__dataclass_fields__))
        if missing or unknown:
            raise ValueError(
                f"invalid network config: missing key(s) {missing}, unknown key(s) {unknown}; "
                f"valid keys are {sorted(cls.__dataclass_fields__)}."
            )
        values = dict(config)
        for key in ("channels", "attention_levels"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form (lists instead of tuples, defaults filled in)."""
        values = asdict(self)
        values["channels"] = list(self.channels)
        values["attention_levels"] = list(self.attention_levels)
        return values

    @property
    def num_levels(self) -> int:
        return len(self.channels)

    @property
    def downsampling_factor(self) -> int:
        """How much the deepest level is smaller than the input; H and W must be multiples of it."""
        return 2 ** (self.num_levels - 1)

    @property
    def is_pseudo3d(self) -> bool:
        return self.architecture == "unet_p3d"

    @property
    def resolved_time_embedding_dim(self) -> int:
        return self.time_embedding_dim if self.time_embedding_dim is not None else 4 * self.channels[0]
