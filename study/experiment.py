"""An experiment: training code run once per (arm, seed), the built-in one's (the default spec
names study.cifar.experiment:train) and a user's alike.

Two forms, named in the spec:

* `experiment = "package.module:function"`: a Python function (its modules are found in the
  spec file's folder first, seedwise's own packages excepted: study.user_modules) with the contract

      def train(config: dict, seed: int, *, report=None, device=None) -> dict

  It returns the run's final metrics as numbers. Optional keyword parameters are passed only
  if the function names them: `report(epoch, **metrics)` records a per-epoch row (curves in
  epochs.csv; the tuner prunes on it), `device` is "cpu" or "cuda[:N]". Two optional keys of the
  returned dict are arrays, not metrics: `predictions` (one predicted class per held-out example)
  and `labels` (the true classes, the same in every run): seedwise stores them as the built-in
  study stores its test predictions, for McNemar and the two-level bootstrap. An optional
  `info` key holds per-run facts that are not metrics, {name: str | int | float | bool} (a data
  fingerprint, the precision used): stored with the run, exported as runs.csv columns, never
  analysed.

  The module may also define `train_many(config, seeds, *, report=None, device=None) -> list`:
  the same runs for several seeds at once (vmapped or batched models), one result per seed in
  the order of `seeds`, each a dict as `train` returns or an exception instance (that seed's
  failure alone); `report(seed, epoch, **metrics)`. `--group N` hands it up to N seeds of an arm.

  Tuning never scores the test set: a tuning run gets `evaluate_test=False` if the function
  names that keyword (a command sees SEEDWISE_EVALUATE_TEST=0 in its environment, every tuning
  run does), and should then skip its test metrics and predictions. Whatever it returns, the
  tuner stores no test metric of a tuning run (study.search).

  Two more optional functions: `check_config(config)` raises ValueError naming the key for a
  config the experiment cannot train, checked when the spec is loaded (it then replaces [base]'s
  rule that a value keeps its default's type: a key may take a name or a list); `prepare()` runs
  once in the runner's process before any run, with the workers' environment ($SEEDWISE_DATA,
  ...), to load or cache what every run reads; an `InputError` it raises is bad input (exit 2).
* `command = "python train.py --lr {lr} --seed {seed}"`: any program. `{key}` is replaced by the
  arm's config value, `{seed}` by the seed; a leading `python` is the interpreter running
  seedwise. Its output goes to a log per run; the final metrics are the last stdout line that
  is a JSON object (its "epoch" key, if any, dropped; its "info", if any, read as a function's),
  and every JSON line with an integer "epoch" is a per-epoch row.

An exception (or a non-zero exit) is a failed run, retried on the next invocation; a non-finite
final metric is a diverged run, an outcome of the recipe, kept like a complete one. A run over
its `timeout` is killed with its process tree (study.lifeline) and fails, "timed out after N s".
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis.contract import COMPLETE, DIVERGED
from study.lifeline import as_run_error, guarded, run_in_child
from study.user_modules import check_shadowing, use_folder

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
# Where a module experiment finds its data: the runner's --data / --data-root, set in every
# worker's environment (joblib processes, forked timeout children, Dask workers, commands).
DATA_ENV, DATA_ROOT_ENV = "SEEDWISE_DATA", "SEEDWISE_DATA_ROOT"
COMPILE_ENV = "SEEDWISE_COMPILE"  # "1" with --compile: the experiment may compile its training step
MANY = "train_many"  # the optional function beside the experiment's that trains several seeds at once
# A tuning run: the keyword a function may take, and the variable every tuning run sees ("0").
EVALUATE_TEST, EVALUATE_TEST_ENV = "evaluate_test", "SEEDWISE_EVALUATE_TEST"


class ExperimentError(ValueError):
    """The experiment cannot be loaded (bad module, missing function): a one-line message."""


class InputError(Exception):
    """What an experiment needs to run is missing or unusable (its data): the command says so
    in one line and exits 2 before anything is trained, whichever experiment raised it."""


def data_environment(data: str | None, data_root: str | None) -> dict[str, str]:
    """The variables that carry --data / --data-root to the workers, as absolute paths (a
    command runs in the spec's folder, a Dask worker wherever it started). A --data that does
    not exist is an InputError, before anything is stored."""
    env: dict[str, str] = {}
    if data is not None:
        path = Path(data).expanduser().resolve()
        if not path.exists():
            raise InputError(f"--data points to {str(path)!r}, which does not exist")
        env[DATA_ENV] = str(path)
    if data_root is not None:
        env[DATA_ROOT_ENV] = str(Path(data_root).expanduser().resolve())
    return env


@contextlib.contextmanager
def environment(env: Mapping[str, str]):
    """`env` set in os.environ while a run executes, the previous values restored after (with
    --jobs 1 the worker is the runner's own process, which may start another study)."""
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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


@dataclass(frozen=True)
class Experiment:
    """Where a user experiment lives: a function reference or a command, and the spec's folder."""
    reference: str | None = None
    command: str | None = None
    folder: str | None = None

    @property
    def label(self) -> str:
        return self.reference or f"command: {self.command}"

    def check(self) -> None:
        """Fail before any run if the function cannot be imported (ExperimentError)."""
        if self.reference:
            if self.folder:
                use_folder(self.folder)
                try:
                    check_shadowing(self.reference.partition(":")[0], self.folder)
                except ValueError as e:
                    raise ExperimentError(f"experiment {self.reference!r}: {e}") from None
            load_function(self.reference, self.folder)

    def check_timed(self) -> None:
        """Fail before any run if a timed run could not find the function: each executes in a
        fresh process (study.lifeline), which never ran the caller's script or notebook."""
        module, _, name = (self.reference or "").partition(":")
        if module == "__main__":
            raise ExperimentError(f"experiment {self.reference!r}: with a timeout each run executes in a fresh "
                                  "process, which cannot see a function defined in your script or notebook; "
                                  f"move {name} into a .py file beside the spec (experiment = \"FILE:{name}\") "
                                  "or drop the timeout")

    def prepare(self, env: Mapping[str, str]) -> None:
        """The module's `prepare()`, if it defines one, in the workers' environment `env`: once,
        before any run. Its InputError is bad input; any other error an ExperimentError."""
        fn = getattr(_module(self.reference, self.folder), PREPARE, None) if self.reference else None
        if not callable(fn):
            return
        try:
            with environment(env):
                fn()
        except InputError:
            raise
        except Exception as e:
            raise ExperimentError(f"experiment {self.reference!r}: prepare() failed: {type(e).__name__}: {e}") from None

    def run(self, config: Mapping[str, Any], seed: int, *, device: str = "cpu",
            on_report: Callable[[int, dict[str, float]], None] | None = None,
            log_path: Path | None = None, timeout: float | None = None, evaluate_test: bool = True) -> Outcome:
        """One run; with a `timeout` (seconds), a function runs in a child process that can be
        killed (so it cannot call `on_report` back), a command in its own process group.
        `evaluate_test=False` (a tuning run) asks the experiment not to score its test set."""
        with guarded(), environment({} if evaluate_test else {EVALUATE_TEST_ENV: "0"}):
            if self.reference:
                reference, folder = self.reference, self.folder
                if timeout is None:
                    return call_function(reference, folder, config, seed, device=device, on_report=on_report,
                                         evaluate_test=evaluate_test)
                assert on_report is None, "a timed function run is a child process: no live reports"
                return run_in_child(_timed_run, (reference, folder, dict(config), seed, device, evaluate_test),
                                    timeout)
            assert self.command is not None, "an Experiment has a reference or a command"
            from study.command import run_command

            return run_command(self.command, self.folder, config, seed, log_path=log_path, on_report=on_report,
                               timeout=timeout)

    def trains_many(self) -> bool:
        """Whether the experiment's module defines `train_many` (a command never does)."""
        return self.reference is not None and load_many(self.reference, self.folder) is not None

    def run_many(self, config: Mapping[str, Any], seeds: Sequence[int], *, device: str = "cpu",
                 timeout: float | None = None) -> list[Outcome | Exception]:
        """Several seeds in one `train_many` call: one Outcome, or that seed's exception, per
        seed. With a `timeout` (seconds) the call runs in a child process, and the limit is the
        whole call's: over it, every seed of the group times out together."""
        reference, folder = self.reference, self.folder
        assert reference is not None, "train_many belongs to a function experiment"
        with guarded():
            if timeout is None:
                return call_many(reference, folder, config, seeds, device=device)
            return run_in_child(_timed_many, (reference, folder, dict(config), list(seeds), device), timeout)


def _timed_run(reference: str, folder: str | None, config: dict[str, Any], seed: int, device: str,
               evaluate_test: bool = True) -> Outcome:
    """A timed run, in its child process (study.lifeline.run_in_child)."""
    return _with_code(call_function(reference, folder, config, seed, device=device, evaluate_test=evaluate_test),
                      folder)


def _timed_many(reference: str, folder: str | None, config: dict[str, Any], seeds: list[int],
                device: str) -> list[Outcome | Exception]:
    """A timed `train_many` call, in its child process; a seed's exception goes back as text (its
    class may be the user's, which the caller, a worker that never imported it, cannot load)."""
    return [_with_code(o, folder) if isinstance(o, Outcome) else as_run_error(o)
            for o in call_many(reference, folder, config, seeds, device=device)]


BIT_EXACT = "BIT_EXACT"  # a module attribute: `BIT_EXACT = True` declares CPU runs bit-exact at fixed seeds


def experiment_of(spec: Any) -> Experiment:
    """The experiment a spec runs (its `experiment` or `command`), checked importable."""
    experiment = Experiment(reference=spec.experiment, command=spec.command, folder=spec.folder)
    experiment.check()
    return experiment


def declares_bit_exact(experiment: Experiment) -> bool:
    """Whether the experiment's module declares `BIT_EXACT = True`: a run alone on a CPU at one
    thread count gives the same numbers bit for bit at a fixed seed (the built-in engine does,
    tests/test_train_exact.py pins it). A command cannot say so: False."""
    return experiment.reference is not None and getattr(_module(experiment.reference, experiment.folder),
                                                        BIT_EXACT, False) is True


def _with_code(outcome: Outcome, folder: str | None) -> Outcome:
    """A timed run's code, recorded in its child: the helpers it imported lazily live only there."""
    from study.provenance import run_code

    return replace(outcome, code=run_code(folder, None))


def _module(reference: str, folder: str | None) -> Any:
    module_name = reference.partition(":")[0]
    if folder:
        use_folder(folder)  # the spec's folder: its experiment module sits there (never on sys.path)
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # ImportError, or the module itself raising on import
        raise ExperimentError(f"experiment {reference!r}: cannot import {module_name!r} "
                              f"({type(e).__name__}: {e}); it must be importable from {folder or 'sys.path'}") from None
    return module


CHECK_CONFIG = "check_config"  # an experiment module's own check of a resolved config (optional)
PREPARE = "prepare"  # an experiment module's once-per-study preparation (optional)


def config_checker(reference: str, folder: str | None) -> Callable[[dict[str, Any]], Any] | None:
    """The module's `check_config(config)`, when it defines one: it raises ValueError naming the
    key for a value the experiment cannot train, and then replaces [base]'s rule that a value
    keeps its default's type (a key may take a string or a list, say). None when the module
    defines none, or cannot be imported (Experiment.check says so when the study is planned)."""
    try:
        module = _module(reference, folder)
    except ExperimentError:
        return None
    check = getattr(module, CHECK_CONFIG, None)
    return check if callable(check) else None


def load_function(reference: str, folder: str | None) -> Callable[..., Any]:
    module_name, _, attr = reference.partition(":")
    fn = getattr(_module(reference, folder), attr, None)
    if not callable(fn):
        raise ExperimentError(f"experiment {reference!r}: {module_name} has no function {attr!r}")
    return fn


def _number(key: str, value: Any) -> float:
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
        metrics = {str(k): _number(k, v) for k, v in returned.items() if k not in (*ARRAY_KEYS, INFO)}
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


def _reporter(epochs: list[dict[str, Any]], on_report):
    def report(epoch: int, **metrics: float) -> None:
        import numpy as np

        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)):
            raise TypeError(f"report(epoch, ...): epoch must be an integer, got {epoch!r}")
        row = {k: _number(k, v) for k, v in metrics.items()}
        epochs.append({"epoch": int(epoch), **row})
        if on_report is not None:
            on_report(int(epoch), row)  # the tuner may raise optuna.TrialPruned from here
    return report


def call_function(reference: str, folder: str | None, config: Mapping[str, Any], seed: int, *,
                  device: str = "cpu", on_report=None, evaluate_test: bool = True) -> Outcome:
    fn = load_function(reference, folder)
    wanted = inspect.signature(fn).parameters
    epochs: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {}
    if "report" in wanted:
        kwargs["report"] = _reporter(epochs, on_report)
    if "device" in wanted:
        kwargs["device"] = device
    if not evaluate_test and EVALUATE_TEST in wanted:  # only a tuning run passes it: older functions run as ever
        kwargs[EVALUATE_TEST] = False
    started = time.perf_counter()
    returned = fn(dict(config), seed, **kwargs)  # a copy: the run cannot change the arm's config
    return finish(returned, epochs, started, device)


def load_many(reference: str, folder: str | None) -> Callable[..., Any] | None:
    """The module's `train_many`, None if it has none (then a group trains seed by seed)."""
    fn = getattr(_module(reference, folder), MANY, None)
    return fn if callable(fn) else None


def call_many(reference: str, folder: str | None, config: Mapping[str, Any], seeds: Sequence[int], *,
              device: str = "cpu") -> list[Outcome | Exception]:
    """One `train_many` call for `seeds`: each seed's result checked on its own, so one seed's
    bad result (or the exception it returned in its place) fails that seed alone. The group's
    wall time is every seed's: study.console divides it by the group's size."""
    fn = load_many(reference, folder)
    if fn is None:
        raise ExperimentError(f"experiment {reference!r}: its module has no function {MANY!r}")
    wanted = inspect.signature(fn).parameters
    seeds = list(seeds)
    epochs: dict[int, list[dict[str, Any]]] = {seed: [] for seed in seeds}
    kwargs: dict[str, Any] = {}
    if "report" in wanted:
        reporters = {seed: _reporter(epochs[seed], None) for seed in seeds}

        def report(seed: int, epoch: int, **metrics: float) -> None:
            if seed not in reporters:
                raise ValueError(f"report(seed, epoch, ...): seed {seed!r} is not one of this call's seeds {seeds}")
            reporters[seed](epoch, **metrics)
        kwargs["report"] = report
    if "device" in wanted:
        kwargs["device"] = device
    started = time.perf_counter()
    returned = fn(dict(config), list(seeds), **kwargs)
    if isinstance(returned, (str, bytes, Mapping)) or not isinstance(returned, Sequence) or len(returned) != len(seeds):
        got = f"{len(returned)} item(s)" if isinstance(returned, Sequence) else type(returned).__name__
        raise ContractError(f"{MANY} must return a list with one result per seed ({len(seeds)}), got {got}")
    outcomes: list[Outcome | Exception] = []
    for seed, item in zip(seeds, returned, strict=True):
        try:
            if isinstance(item, Exception):
                if item.__traceback__ is None:  # returned, never raised: say where it came from
                    item.seedwise_traceback = (f"{type(item).__name__}: {item}\n(returned by {MANY} "  # type: ignore[attr-defined]
                                               f"for seed {seed} of {seeds})\n")
                    outcomes.append(item)
                    continue
                raise item
            outcomes.append(replace(finish(item, epochs[seed], started, device), group=tuple(map(int, seeds))))
        except Exception as e:  # this seed's failure: its traceback kept as text (it crosses processes)
            e.seedwise_traceback = traceback.format_exc()  # type: ignore[attr-defined]
            outcomes.append(e)
    return outcomes


# ---- command experiments ----------------------------------------------------------------
