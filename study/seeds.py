"""Independent random streams derived from (seed, stream): how arms become paired.

A run's randomness is split into named streams so that two arms run with the same seed see
the same data order and the same augmentation draws, and the same initial weights wherever
their architectures match: arms become *paired* comparisons, which need far fewer seeds.
Any experiment can use this (numpy only; torch is imported only for `generator`):

    from study.seeds import rng
    order = rng(seed, "order").permutation(n)   # same order for this seed in every arm
    torch.manual_seed(stream_seed(seed, "init")) # same initial weights where shapes match

A run may also take a different seed per stream: a `RunSeeds` is the run's seed (an int,
what runs.csv stores) carrying one seed per stream, and every function here honours it, so
experiments written against `rng(seed, stream)` vary one source of randomness at a time
without a change (study.variance does this). A plain int seeds every stream itself, exactly
as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported on first use: parsing a command's options never needs it
    import numpy as np
    import torch

# Fixed stream ids: never renumber, or old results stop being reproducible. "split" draws
# the train/validation split where an experiment makes it per seed (split_seed = -1).
STREAMS = {"init": 1, "order": 2, "augment": 3, "split": 4}
# The config value `split_seed = -1`: the train/validation split is drawn per seed from its
# "split" stream (the built-in experiment and examples/digits; study.variance sets it).
PER_SEED_SPLIT = -1
TRAINING_STREAMS = ("init", "order", "augment")  # what every run of the built-in experiment draws


def _check_seed(seed: object, name: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`{name}` must be an integer >= 0, got {seed!r}")
    return int(seed)


def _check_stream(stream: str) -> None:
    if stream not in STREAMS:
        raise ValueError(f"`stream` must be one of {', '.join(STREAMS)}, got {stream!r}")


class RunSeeds(int):
    """A run's seed with its own seed per stream: `RunSeeds(7, init=41, order=0)`.

    Its int value is the run's seed as the study stores and counts it; `stream_seed(s, name)`
    derives stream `name` from `s.seeds[name]` (from the int value for a stream not given).
    It pickles, so it reaches joblib and Dask workers unchanged."""

    seeds: dict[str, int]

    def __new__(cls, seed: int, seeds: Mapping[str, int] | None = None, **by_stream: int) -> RunSeeds:
        self = super().__new__(cls, _check_seed(seed))
        given = {**(seeds or {}), **by_stream}
        for name, value in given.items():
            _check_stream(name)
            _check_seed(value, f"{name} seed")
        self.seeds = {name: int(given.get(name, seed)) for name in STREAMS}
        return self

    def __reduce__(self):
        return RunSeeds, (int(self), self.seeds)

    def __repr__(self) -> str:
        return f"RunSeeds({int(self)}, {', '.join(f'{k}={v}' for k, v in self.seeds.items())})"

    __str__ = int.__repr__  # f"seed {s}" and command lines show the run's seed, as for an int


def base_seed(seed: int, stream: str) -> int:
    """The seed `stream` is derived from: the run's own seed, or a RunSeeds' seed for it."""
    _check_stream(stream)
    return seed.seeds[stream] if isinstance(seed, RunSeeds) else _check_seed(seed)


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for `stream`, statistically independent of the other streams."""
    import numpy as np

    base = base_seed(seed, stream)
    state = np.random.SeedSequence(base, spawn_key=(STREAMS[stream],)).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))  # torch.Generator.manual_seed wants < 2**63


def rng(seed: int, stream: str) -> np.random.Generator:
    """A numpy Generator for `stream` of `seed`: the same numbers in every arm and process."""
    import numpy as np

    return np.random.default_rng(stream_seed(seed, stream))


def generator(seed: int, stream: str) -> torch.Generator:
    """A CPU generator for `stream` (CPU so that CPU and GPU runs draw identical numbers)."""
    import torch

    return torch.Generator().manual_seed(stream_seed(seed, stream))


def stream_seeds(seed: int) -> dict[str, int]:
    """The seed of each training stream (init, order, augment) of a run."""
    return {name: stream_seed(seed, name) for name in TRAINING_STREAMS}


def seed_columns(seed: int) -> dict[str, int]:
    """runs.csv's `<stream>_seed` columns of a RunSeeds (empty for a plain int seed, whose
    runs.csv keeps the columns it always had)."""
    if not isinstance(seed, RunSeeds):
        return {}
    return {f"{name}_seed": value for name, value in seed.seeds.items()}
