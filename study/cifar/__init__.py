"""The built-in experiment: the course notebook's 7-conv CIFAR-10 ConvNet (BatchNorm and StepLR
ablations), with its own Config (config; its sizes are the default spec's [presets] tables),
data (data), model (model), the user's contract (experiment), training engine (train for one seed, group for several in one vmapped step), storage layout (records)
and its place in the runner and tuner (runner). A spec without `experiment` or `command` runs it.

This package file imports neither torch nor the data: a spec is resolved without them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from study.cifar.config import Config, apply_overrides

METRICS = ("test_acc", "val_acc")  # the final metrics a run records
CONFIG_KEYS = tuple(Config().to_dict())

__all__ = ["CONFIG_KEYS", "METRICS", "Config", "resolve"]


def resolve(layers: Iterable[tuple[Mapping[str, Any], str]]) -> Config:
    """The default Config with each (overrides, where) layer applied in order ([base], the
    preset, --set, the arm); a bad key or value raises ConfigError naming `where`."""
    cfg = Config()
    for overrides, where in layers:
        cfg = apply_overrides(cfg, overrides, where=where)
    return cfg
