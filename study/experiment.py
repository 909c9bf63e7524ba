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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from study.experiment_call import (
    COMPILE_ENV,
    DATA_ENV,
    DATA_ROOT_ENV,
    EVALUATE_TEST,
    EVALUATE_TEST_ENV,
    InputError,
    call_function,
    call_many,
    data_environment,
    environment,
)
from study.experiment_loader import (
    BIT_EXACT,
    CHECK_CONFIG,
    MANY,
    PREPARE,
    ExperimentError,
    config_checker,
    experiment_module,
    load_function,
    load_many,
)
from study.experiment_outcome import (
    ARRAY_KEYS,
    GROUP_COLUMN,
    INFO,
    INFO_FILLS,
    RESERVED,
    USER_RUN_COLUMNS,
    ContractError,
    Outcome,
    RunFailed,
    check_info,
    check_metric,
    finish,
)
from study.lifeline import as_run_error, guarded, run_in_child
from study.user_modules import check_shadowing, use_folder

# The contract's parts live in study.experiment_loader (finding the code), study.experiment_call
# (calling it) and study.experiment_outcome (checking what it returned); the names users and
# modules import from here stay importable from here.
__all__ = ["ARRAY_KEYS", "BIT_EXACT", "CHECK_CONFIG", "COMPILE_ENV", "DATA_ENV", "DATA_ROOT_ENV", "EVALUATE_TEST",
           "EVALUATE_TEST_ENV", "GROUP_COLUMN", "INFO", "INFO_FILLS", "MANY", "PREPARE", "RESERVED",
           "USER_RUN_COLUMNS", "ContractError", "Experiment", "ExperimentError", "InputError", "Outcome",
           "RunFailed", "call_function", "call_many", "check_info", "check_metric", "config_checker",
           "data_environment", "declares_bit_exact", "environment", "experiment_of", "finish",
           "load_function", "load_many"]


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
        fn = getattr(experiment_module(self.reference, self.folder), PREPARE, None) if self.reference else None
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


def experiment_of(spec: Any) -> Experiment:
    """The experiment a spec runs (its `experiment` or `command`), checked importable."""
    experiment = Experiment(reference=spec.experiment, command=spec.command, folder=spec.folder)
    experiment.check()
    return experiment


def declares_bit_exact(experiment: Experiment) -> bool:
    """Whether the experiment's module declares `BIT_EXACT = True`: a run alone on a CPU at one
    thread count gives the same numbers bit for bit at a fixed seed (the built-in engine does,
    tests/test_train_exact.py pins it). A command cannot say so: False."""
    return experiment.reference is not None and getattr(experiment_module(experiment.reference, experiment.folder),
                                                        BIT_EXACT, False) is True


def _with_code(outcome: Outcome, folder: str | None) -> Outcome:
    """A timed run's code, recorded in its child: the helpers it imported lazily live only there."""
    from study.provenance import run_code

    return replace(outcome, code=run_code(folder, None))
