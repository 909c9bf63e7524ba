"""Independent random streams derived from (seed, stream): how arms become paired.

A run's randomness is split into named streams so that two arms run with the same seed see
the same data order and the same augmentation draws, and the same initial weights wherever
their architectures match: arms become *paired* comparisons, which need far fewer seeds.
Any experiment can use this (numpy only; torch is imported only for `generator`):

    from study.seeds import rng
    order = rng(seed, "order").permutation(n)   # same order for this seed in every arm
    torch.manual_seed(stream_seed(seed, "init")) # same initial weights where shapes match
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# Fixed stream ids: never renumber, or old results stop being reproducible.
STREAMS = {"init": 1, "order": 2, "augment": 3}


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for `stream`, statistically independent of the other streams."""
    if stream not in STREAMS:
        raise ValueError(f"`stream` must be one of {', '.join(STREAMS)}, got {stream!r}")
    if type(seed) is not int or seed < 0:
        raise ValueError(f"`seed` must be an integer >= 0, got {seed!r}")
    state = np.random.SeedSequence(seed, spawn_key=(STREAMS[stream],)).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))  # torch.Generator.manual_seed wants < 2**63


def rng(seed: int, stream: str) -> np.random.Generator:
    """A numpy Generator for `stream` of `seed`: the same numbers in every arm and process."""
    return np.random.default_rng(stream_seed(seed, stream))


def generator(seed: int, stream: str) -> torch.Generator:
    """A CPU generator for `stream` (CPU so that CPU and GPU runs draw identical numbers)."""
    import torch

    return torch.Generator().manual_seed(stream_seed(seed, stream))


def stream_seeds(seed: int) -> dict[str, int]:
    return {name: stream_seed(seed, name) for name in STREAMS}
