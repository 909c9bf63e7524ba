"""seedwise.study: run ablation arms over many seeds and store every run with its provenance."""

from study.config import PRESETS, Config, ConfigError
from study.data import Cifar10, DataError, load_cifar10
from study.spec import SpecError, StudySpec, load_spec
from study.train import EpochRecord, RunResult, train_one

__all__ = ["PRESETS", "Cifar10", "Config", "ConfigError", "DataError", "EpochRecord", "RunResult",
           "SpecError", "StudySpec", "load_cifar10", "load_spec", "train_one"]
