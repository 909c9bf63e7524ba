"""Finding a function experiment's code: its module imported (from the spec's folder first:
study.user_modules), its `train` and the optional functions and flags beside it (`train_many`,
`check_config`, `prepare`, `BIT_EXACT`); ExperimentError when it cannot be loaded."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from study.user_modules import use_folder

MANY = "train_many"  # the optional function beside the experiment's that trains several seeds at once
CHECK_CONFIG = "check_config"  # an experiment module's own check of a resolved config (optional)
PREPARE = "prepare"  # an experiment module's once-per-study preparation (optional)
BIT_EXACT = "BIT_EXACT"  # a module attribute: `BIT_EXACT = True` declares CPU runs bit-exact at fixed seeds


class ExperimentError(ValueError):
    """The experiment cannot be loaded (bad module, missing function): a one-line message."""


def experiment_module(reference: str, folder: str | None) -> Any:
    """The module of `reference` ("module:function"), imported; ExperimentError if it cannot be."""
    module_name = reference.partition(":")[0]
    if folder:
        use_folder(folder)  # the spec's folder: its experiment module sits there (never on sys.path)
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # ImportError, or the module itself raising on import
        raise ExperimentError(f"experiment {reference!r}: cannot import {module_name!r} "
                              f"({type(e).__name__}: {e}); it must be importable from {folder or 'sys.path'}") from None
    return module


def config_checker(reference: str, folder: str | None) -> Callable[[dict[str, Any]], Any] | None:
    """The module's `check_config(config)`, when it defines one: it raises ValueError naming the
    key for a value the experiment cannot train, and then replaces [base]'s rule that a value
    keeps its default's type (a key may take a string or a list, say). None when the module
    defines none, or cannot be imported (Experiment.check says so when the study is planned)."""
    try:
        module = experiment_module(reference, folder)
    except ExperimentError:
        return None
    check = getattr(module, CHECK_CONFIG, None)
    return check if callable(check) else None


def load_function(reference: str, folder: str | None) -> Callable[..., Any]:
    module_name, _, attr = reference.partition(":")
    fn = getattr(experiment_module(reference, folder), attr, None)
    if not callable(fn):
        raise ExperimentError(f"experiment {reference!r}: {module_name} has no function {attr!r}")
    return fn


def load_many(reference: str, folder: str | None) -> Callable[..., Any] | None:
    """The module's `train_many`, None if it has none (then a group trains seed by seed)."""
    fn = getattr(experiment_module(reference, folder), MANY, None)
    return fn if callable(fn) else None
