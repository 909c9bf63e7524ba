"""The built-in experiment's Config now lives in study.notebook.config. This module keeps the
old import path working for readers outside `study` (analysis/tables.py reads BN_NAMED from
here); new code imports study.notebook.config."""

from study.notebook.config import BN_NAMED, PRESETS, Config, apply_overrides, preset_config  # noqa: F401
from study.params import ConfigError, parse_assignment, suggest  # noqa: F401
