"""Seeds derived from integer keys, so a random draw depends only on what it is for, not on order."""
from __future__ import annotations

import numpy as np


def keyed_seed(*keys: int) -> int:
    """A 63-bit seed that is a well-mixed function of the integer ``keys`` (numpy's SeedSequence)."""
    low, high = np.random.SeedSequence([int(key) for key in keys]).generate_state(2, dtype=np.uint32)
    return (int(high) << 32 | int(low)) & (2**63 - 1)
