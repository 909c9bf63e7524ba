"""The built-in experiment: the course notebook's 7-conv CIFAR-10 ConvNet (BatchNorm and StepLR
ablations), declared like any other by the default spec (study/specs/notebook_ablation.toml:
`experiment = "study.cifar.experiment:train"`, its [base] and [presets]). Its config (config),
data (data), model (model), the user's contract (experiment: train, train_many, check_config,
prepare) and training engine (train for one seed, group for several in one vmapped step). The
runner and the tuner call it through the contract only, as they call any experiment.

This package file imports neither torch nor the data: a spec is resolved without them.
"""

from __future__ import annotations

from study.cifar.config import Config

__all__ = ["Config"]
