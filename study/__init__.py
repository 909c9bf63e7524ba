"""seedwise.study: run ablation arms over many seeds and store every run with its provenance.

For your own experiment: `run_study(spec, seeds=5)` (study.api), and `rng(seed, stream)` /
`stream_seed(seed, stream)` (study.seeds) for the random streams that pair arms by seed.
"""

from study.config import PRESETS, Config, ConfigError
from study.data import Cifar10, DataError, load_cifar10
from study.seeds import rng, stream_seed
from study.spec import SpecError, StudySpec, load_spec
from study.train import EpochRecord, RunResult, train_one

__all__ = ["PRESETS", "Cifar10", "Config", "ConfigError", "DataError", "EpochRecord", "RunResult",
           "SpecError", "StudyResult", "StudySpec", "load_cifar10", "load_spec", "rng", "run_study",
           "stream_seed", "train_one"]


def __getattr__(name: str):
    # Imported on first use, not with the package: `python -m study.run` must not import
    # study.run twice (once through this package, once as __main__).
    if name in ("run_study", "StudyResult"):
        from study import api

        return getattr(api, name)
    raise AttributeError(f"module 'study' has no attribute {name!r}")
