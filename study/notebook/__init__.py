"""The built-in experiment: the course notebook's 7-conv CIFAR-10 ConvNet (BatchNorm and StepLR
ablations), with its own Config and presets (config), data (data), model (model), training
engine (train for one seed, group for several in one vmapped step), storage layout (records)
and its place in the runner and tuner (runner). A spec without `experiment` or `command` runs it.

This package file imports neither torch nor the data: a spec is resolved without them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from study.notebook.config import PRESETS, Config, apply_overrides, preset_config

METRICS = ("test_acc", "val_acc")  # the final metrics a run records
CONFIG_KEYS = tuple(Config().to_dict())

__all__ = ["CONFIG_KEYS", "METRICS", "PRESETS", "Config", "resolve"]


def resolve(preset: str, layers: Iterable[tuple[Mapping[str, Any], str]]) -> Config:
    """The preset's Config with each (overrides, where) layer applied in order; a bad key or
    value raises ConfigError naming `where`."""
    cfg = preset_config(preset)
    for overrides, where in layers:
        cfg = apply_overrides(cfg, overrides, where=where)
    return cfg
