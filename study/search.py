"""What `study.tune` searches and how: the space (the spec's [tune] ranges), the objective (one
for every experiment, through its contract: study.experiment), the sampler and the pruner.

Tuning seeds are TUNE_SEED_OFFSET + trial number, disjoint from the evaluation seeds 0..N-1:
a tuned config is never confirmed on a seed it was selected on.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna

from analysis.contract import DIVERGED, FAILED, INTERRUPTED, PRUNED, config_hash
from study.claims import worker_id
from study.plan import UsageError

if TYPE_CHECKING:
    from study.experiment import Experiment, Outcome

TUNE_SEED_OFFSET = 100_000  # tuning seed = 100000 + trial number; evaluation seeds are 0..N-1


def config_value(config: Any, key: str) -> Any:
    """A config key's value: a dict's item, or a Config's attribute (a built-in plan's configs)."""
    return config[key] if isinstance(config, dict) else getattr(config, key)


def space_from_ranges(config: Any, ranges: Mapping[str, Mapping[str, Any]]) -> dict[str, optuna.distributions.BaseDistribution]:
    """[tune] ranges as Optuna distributions; a bound that names a config key takes the arm's value."""
    space: dict[str, optuna.distributions.BaseDistribution] = {}
    for key, rng in ranges.items():
        if "choices" in rng:
            space[key] = optuna.distributions.CategoricalDistribution(rng["choices"])
            continue
        low, high = (config_value(config, b) if isinstance(b, str) else b for b in (rng["low"], rng["high"]))
        integer = rng.get("int", isinstance(config_value(config, key), int) and not isinstance(config_value(config, key), bool))
        try:
            if integer:
                space[key] = optuna.distributions.IntDistribution(int(low), int(high), log=rng.get("log", False))
            else:
                space[key] = optuna.distributions.FloatDistribution(float(low), float(high), log=rng.get("log", False))
        except ValueError as e:
            raise UsageError(f"[tune] {key}: {e}") from None
    return space


def search_space(config: Any, ranges: Mapping[str, Mapping[str, Any]],
                 also: tuple[str, ...] = ()) -> dict[str, optuna.distributions.BaseDistribution]:
    """The declared ranges ([tune], an arm's own [arms.X.tune] replacing a key's) as Optuna
    distributions; a range declared `optional = true` is searched only when `also` names it."""
    optional = sorted(k for k, r in ranges.items() if r.get("optional"))
    for key in also:
        if key not in optional:
            raise UsageError(f"--tune-also {key}: not an optional range of [tune]"
                             + (f"; its optional ranges: {', '.join(optional)}" if optional else
                                f" (declare it there: {key} = {{low = ..., high = ..., optional = true}})"))
    chosen = {k: {f: v for f, v in r.items() if f != "optional"} for k, r in ranges.items()
              if not r.get("optional") or k in also}
    return space_from_ranges(config, chosen)


def suggest(trial: optuna.trial.BaseTrial, space: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, d in space.items():
        if isinstance(d, optuna.distributions.IntDistribution):
            params[name] = trial.suggest_int(name, d.low, d.high, log=d.log)
        elif isinstance(d, optuna.distributions.CategoricalDistribution):
            params[name] = trial.suggest_categorical(name, d.choices)
        else:
            params[name] = trial.suggest_float(name, d.low, d.high, log=d.log)
    return params


def tuning_run(experiment: Experiment, config: Mapping[str, Any], seed: int, *, device: str | None = None,
               timeout: float | None = None, on_report=None) -> Outcome:
    """One tuning run through the experiment contract: the test set is not scored
    (`evaluate_test=False`), the run is killed past `timeout` seconds, and its code recorded in
    the process that ran it. A timed function run is a forked child that cannot report back
    live: `on_report` then sees its rows after it ended (the curve is kept, nothing is pruned)."""
    from study.provenance import run_code

    live = on_report if timeout is None or experiment.command else None
    outcome = experiment.run(config, seed, device=device or "cpu", on_report=live, timeout=timeout,
                             evaluate_test=False)
    if on_report is not None and live is None:
        for row in outcome.epochs:
            on_report(row["epoch"], {k: v for k, v in row.items() if k != "epoch"})
    return outcome if outcome.code else replace(outcome, code=run_code(experiment.folder, experiment.command))


def outcome_attrs(outcome: Outcome, test_metric: str | None) -> dict[str, Any]:
    """What a tuning trial stores of its run: status, wall time, the metrics except the study's
    test metric (`test_metric`, its [analysis] metric: a tuning run's test score is never kept,
    whatever the experiment returned), its `info` and its code."""
    attrs: dict[str, Any] = {"status": outcome.status, "wall_time_s": round(outcome.wall_time_s, 3),
                             "metrics": {k: v for k, v in outcome.metrics.items() if k != test_metric},
                             **outcome.code}
    if outcome.info:
        attrs["info"] = dict(outcome.info)
    if outcome.status == DIVERGED:
        attrs["diverged_epoch"] = outcome.diverged_epoch
    return attrs


def make_objective(experiment: Experiment, config: Mapping[str, Any], space: dict[str, Any], metric: str, *,
                   device: str | None = None, test_metric: str | None = None, timeout: float | None = None,
                   attrs: Mapping[str, Any] | None = None):
    """The tuning objective, one for every experiment: run it (`tuning_run`) with the trial's
    params on a tuning seed and return its final `metric` ([tune] metric). Each report row that
    holds `metric` is an intermediate value for the pruner; a non-finite metric is pruned as
    diverged; a failure is recorded on the trial with its traceback. `attrs` (the invocation's
    code provenance) are stored on every trial."""
    from study import params as config_params

    last_epoch = config.get("epochs") if isinstance(config.get("epochs"), int) else None
    live = timeout is None or experiment.command is not None  # a timed function's rows come after it ended

    def objective(trial: optuna.trial.BaseTrial) -> float:
        cfg = config_params.apply(config, suggest(trial, space), where="[tune]")
        seed = TUNE_SEED_OFFSET + trial.number
        for key, value in {"seed": seed, "worker": worker_id(), "config_hash": config_hash(cfg),
                           **(attrs or {})}.items():
            trial.set_user_attr(key, value)

        def on_report(epoch: int, row: dict[str, float]) -> None:
            if metric not in row or not math.isfinite(row[metric]):
                return
            trial.report(row[metric], epoch)
            if live and epoch != last_epoch and trial.should_prune():  # never throw away a finished run
                trial.set_user_attr("status", PRUNED)
                raise optuna.TrialPruned(f"pruned after epoch {epoch} ({metric} {row[metric]:.4g})")

        try:
            outcome = tuning_run(experiment, cfg, seed, device=device, timeout=timeout, on_report=on_report)
            if outcome.status != DIVERGED:  # a diverged run may lack it
                from study.experiment import check_metric

                check_metric(outcome.metrics, metric, role="[tune] metric")
        except optuna.TrialPruned:
            raise
        except Exception as e:
            trial.set_user_attr("status", FAILED)
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            trial.set_user_attr("traceback", getattr(e, "seedwise_traceback", None) or traceback.format_exc()[-8000:])
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("status", INTERRUPTED)
            raise
        for key, value in outcome_attrs(outcome, test_metric).items():
            trial.set_user_attr(key, value)
        if outcome.status == DIVERGED:
            raise optuna.TrialPruned(f"diverged (non-finite {metric})")
        return outcome.metrics[metric]

    return objective


class TrialSeededTPE(optuna.samplers.TPESampler):
    """TPE whose random state is re-seeded from (seed, trial number) before every trial.

    A plain seeded sampler restarts its random stream in every process: a resumed run or a second
    cooperating worker would replay the first trials' startup samples. Seeding per trial number
    (unique across processes) keeps a single-process run reproducible and workers distinct."""

    def __init__(self, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(seed=seed, **kwargs)
        self._base_seed = seed

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        s = int(np.random.SeedSequence([self._base_seed, trial.number]).generate_state(1)[0])
        for owner in (self, getattr(self, "_random_sampler", None)):  # Optuna internals, guarded
            rng = getattr(getattr(owner, "_rng", None), "rng", None)
            if rng is not None:
                rng.seed(s)
        super().before_trial(study, trial)


def make_pruner(config: Any) -> optuna.pruners.BasePruner:
    # Median, not Hyperband: a run is only `epochs` (10) steps long and a study a few dozen
    # trials, too few for Hyperband's brackets to pay off, and the median rule is easy to explain
    # in a report. 5 startup trials give a median worth comparing to; 2 warm-up epochs because a
    # small step_size decays the lr early and looks better early than it ends (pruning at
    # epoch 1 would favour it). Never prunes before epoch 2 of 10 (smoke: epoch 1 of 2).
    epochs = config.get("epochs") if isinstance(config, dict) else config.epochs
    warmup = 2 if not isinstance(epochs, int) else max(0, min(2, epochs - 1))
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup)
