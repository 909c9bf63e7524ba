"""seedwise.study: run ablation arms over many seeds and store every run with its provenance.

For your own experiment: `run_study(spec, seeds=5)` (study.api), and `rng(seed, stream)` /
`stream_seed(seed, stream)` (study.seeds) for the random streams that pair arms by seed.
"""

from study.notebook.config import PRESETS, Config
from study.notebook.data import Cifar10, DataError, load_cifar10
from study.notebook.train import EpochRecord, RunResult, train_one
from study.params import ConfigError
from study.seeds import rng, stream_seed
from study.spec import SpecError, StudySpec, load_spec

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
