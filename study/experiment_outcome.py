"""What one run of an experiment produced, checked against the contract (study.experiment's
docstring): the returned dict's metrics are numbers, its `predictions` / `labels` integer
arrays, its `info` JSON scalars under names seedwise does not write; a non-finite final metric
makes the run diverged. The Outcome, and the errors of a run that broke the contract or failed."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from analysis.contract import COMPLETE, DIVERGED

if TYPE_CHECKING:  # numpy is imported by the functions that check a run's numbers, not to parse options
    import numpy as np

ARRAY_KEYS = ("predictions", "labels")
INFO = "info"  # the returned dict's key for per-run facts that are not metrics
# A user experiment's runs.csv: arm, seed, status, <its metrics>, then these.
USER_RUN_COLUMNS = ["epochs_run", "diverged_epoch", "wall_time_s", "device", "threads", "config_hash",
                    "data_fingerprint", "git_commit", "code_hash", "user_git_commit", "worker", "trial_number",
                    "error"]
GROUP_COLUMN = "group"  # runs.csv: the seeds trained together with this one (only where any were)
RESERVED = {"arm", "seed", "status", "epoch", GROUP_COLUMN, *USER_RUN_COLUMNS}  # names a metric cannot take
# runs.csv columns seedwise leaves empty for a user experiment, which its `info` may fill.
INFO_FILLS = {"data_fingerprint"}


class ContractError(ValueError):
    """What the experiment returned breaks the contract (a metric missing or not a number); the
    message names the keys it did return."""


def check_metric(metrics: Mapping[str, float], metric: str, role: str = "[analysis] metric") -> None:
    """The analysed (or tuned: `role`) metric must be among a run's metrics: without it the
    study cannot use the run. The message names what was returned and the closest key."""
    if metric not in metrics:
        from study.params import suggest

        raise ContractError(f"the experiment returned no {metric!r} ({role}); it returned: "
                            f"{', '.join(metrics) or 'no metric'}{suggest(metric, metrics)}")


class RunFailed(RuntimeError):
    """A command exited non-zero, or returned no metrics; the message carries the log's tail,
    `cause` the failure in one line without what differs from run to run (the log's path)."""

    def __init__(self, message: str, cause: str | None = None):
        super().__init__(message)
        self.cause = cause or message


@dataclass(frozen=True)
class Outcome:
    """What one run of a user experiment produced."""
    status: str  # COMPLETE or DIVERGED (analysis.contract)
    metrics: dict[str, float]
    epochs: list[dict[str, Any]] = field(default_factory=list)
    diverged_epoch: int | None = None
    predictions: np.ndarray | None = field(default=None, repr=False)
    labels: np.ndarray | None = field(default=None, repr=False)
    wall_time_s: float = 0.0
    device: str = "cpu"
    threads: int = 1
    log: str | None = None
    code: dict[str, Any] = field(default_factory=dict)  # study.provenance.run_code: its files, packages
    group: tuple[int, ...] = ()  # the seeds trained together in one `train_many` call, this one included
    info: dict[str, str | int | float | bool] = field(default_factory=dict)  # the returned `info`: not metrics



def metric_value(key: str, value: Any) -> float:
    """A metric's value as a float; TypeError naming the metric for anything but a number."""
    import numpy as np

    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"metric {key!r} must be a number, got {value!r} ({type(value).__name__})")
    return float(value)


def _scalar(key: str, value: Any) -> str | int | float | bool:
    """One `info` value as the JSON scalar it is stored as (numpy scalars become Python's)."""
    import numpy as np

    if isinstance(value, (np.bool_, np.integer, np.floating)):
        value = value.item()
    if not isinstance(value, (str, int, float, bool)):
        raise ContractError(f"info {key!r} must be a str, int, float or bool (a JSON scalar), got "
                            f"{value!r} ({type(value).__name__})")
    return value


def check_info(info: Any, metrics: Mapping[str, float]) -> dict[str, str | int | float | bool]:
    """The returned `info`: a dict of JSON scalars whose names are neither metrics nor runs.csv
    columns seedwise writes (except those it leaves to the experiment: INFO_FILLS)."""
    if not isinstance(info, Mapping):
        raise ContractError(f"'info' must be a dict of name: str | int | float | bool, got {type(info).__name__}")
    checked: dict[str, str | int | float | bool] = {}
    for key, value in info.items():
        if not isinstance(key, str) or not key:
            raise ContractError(f"info name {key!r} must be a non-empty string")
        if key in metrics:
            raise ContractError(f"info {key!r} is also a metric the experiment returned; rename one")
        if key in RESERVED - INFO_FILLS or key in (INFO, *ARRAY_KEYS):
            raise ContractError(f"info {key!r} is a runs.csv column seedwise writes; rename it")
        checked[key] = _scalar(key, value)
    return checked


def finish(returned: Any, epochs: list[dict[str, Any]], started: float, device: str) -> Outcome:
    """Turn what the experiment returned into an Outcome: numbers checked, arrays and `info`
    kept apart, non-finite final metrics = diverged (at the first epoch whose row was
    non-finite, if any)."""
    import numpy as np

    if not isinstance(returned, Mapping):
        raise TypeError(f"the experiment must return a dict of metrics, got {type(returned).__name__}")
    arrays = {k: np.asarray(returned[k]) for k in ARRAY_KEYS if returned.get(k) is not None}
    try:
        metrics = {str(k): metric_value(k, v) for k, v in returned.items() if k not in (*ARRAY_KEYS, INFO)}
    except TypeError as e:
        raise ContractError(f"{e}; the experiment returned: {', '.join(map(str, returned))}") from None
    if not metrics:
        raise ValueError("the experiment returned no metrics")
    clash = sorted(set(metrics) & RESERVED)
    if clash:
        raise ValueError(f"metric name(s) {', '.join(clash)} are runs.csv columns seedwise writes; rename them")
    info = check_info(returned[INFO], metrics) if returned.get(INFO) is not None else {}
    for key, arr in arrays.items():
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{key!r} must be a 1-D array of integer classes, got shape {arr.shape} {arr.dtype}")
    if set(arrays) == set(ARRAY_KEYS) and arrays["predictions"].shape != arrays["labels"].shape:
        raise ValueError(f"'predictions' {arrays['predictions'].shape} and 'labels' {arrays['labels'].shape} differ in length")
    diverged = not all(math.isfinite(v) for v in metrics.values())
    bad_epoch = next((e["epoch"] for e in epochs
                      if not all(math.isfinite(v) for k, v in e.items() if k != "epoch")), None)
    threads = _threads()
    return Outcome(status=DIVERGED if diverged else COMPLETE, metrics=metrics, epochs=epochs,
                   diverged_epoch=(bad_epoch or (len(epochs) or None)) if diverged else None,
                   predictions=None if diverged else arrays.get("predictions"),
                   labels=arrays.get("labels"), wall_time_s=time.perf_counter() - started,
                   device=device, threads=threads, info=info)


def _threads() -> int:
    torch = sys.modules.get("torch")  # only if the experiment uses it: never import it for a numpy one
    return torch.get_num_threads() if torch is not None else 1

