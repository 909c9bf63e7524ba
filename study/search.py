"""What `study.tune` searches and how: the space (a spec's [tune] ranges, or the built-in
experiment's lr and step_size), a user experiment's objective, the sampler and the pruner.

Tuning seeds are TUNE_SEED_OFFSET + trial number, disjoint from the evaluation seeds 0..N-1:
a tuned config is never confirmed on a seed it was selected on.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna

from analysis.contract import DIVERGED, FAILED, INTERRUPTED, PRUNED, config_hash
from study.cifar.config import GAMMA_RANGE
from study.claims import worker_id
from study.plan import UsageError

TUNE_SEED_OFFSET = 100_000  # tuning seed = 100000 + trial number; evaluation seeds are 0..N-1
LR_RANGE = (1e-3, 1.0)  # the built-in experiment's default space, when its spec has no [tune]
OBJECTIVE = "val_acc"  # the built-in experiment's objective


def config_value(config: Any, key: str) -> Any:
    """A config key's value: a user experiment's config is a dict, the built-in one a Config."""
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


def search_space(config: Any, tune_gamma: bool = False,
                 ranges: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, optuna.distributions.BaseDistribution]:
    if ranges is not None:
        space = space_from_ranges(config, ranges)
    else:
        space = {"lr": optuna.distributions.FloatDistribution(*LR_RANGE, log=True),
                 "step_size": optuna.distributions.IntDistribution(1, config.epochs)}
    if tune_gamma:
        space["gamma"] = optuna.distributions.FloatDistribution(*GAMMA_RANGE)
    return space


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


def make_user_objective(experiment, config: dict[str, Any], space: dict[str, Any], metric: str,
                        device: str | None = None):
    """The tuning objective of a user experiment: run it with the trial's params on a tuning
    seed and return its final `metric` ([tune] metric). Each `report(epoch, ...)` row that holds
    `metric` is an intermediate value for the pruner; a non-finite metric is pruned as diverged."""
    from study import params as config_params

    last_epoch = config.get("epochs") if isinstance(config.get("epochs"), int) else None

    def objective(trial: optuna.trial.BaseTrial) -> float:
        cfg = config_params.apply(config, suggest(trial, space), where="[tune]")
        seed = TUNE_SEED_OFFSET + trial.number
        trial.set_user_attr("seed", seed)
        trial.set_user_attr("worker", worker_id())
        trial.set_user_attr("config_hash", config_hash(cfg))

        def on_report(epoch: int, row: dict[str, float]) -> None:
            if metric not in row or not math.isfinite(row[metric]):
                return
            trial.report(row[metric], epoch)
            if epoch != last_epoch and trial.should_prune():  # never throw away a finished run
                trial.set_user_attr("status", PRUNED)
                raise optuna.TrialPruned(f"pruned after epoch {epoch} ({metric} {row[metric]:.4g})")

        try:
            outcome = experiment.run(cfg, seed, device=device or "cpu", on_report=on_report)
            if metric not in outcome.metrics:
                raise KeyError(f"the experiment returned no {metric!r} ([tune] metric); it returned: "
                               f"{', '.join(outcome.metrics)}")
        except optuna.TrialPruned:
            raise
        except Exception as e:
            trial.set_user_attr("status", FAILED)
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            trial.set_user_attr("traceback", traceback.format_exc()[-8000:])
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("status", INTERRUPTED)
            raise
        trial.set_user_attr("status", outcome.status)
        trial.set_user_attr("wall_time_s", round(outcome.wall_time_s, 3))
        trial.set_user_attr("metrics", outcome.metrics)
        if outcome.status == DIVERGED:
            trial.set_user_attr("diverged_epoch", outcome.diverged_epoch)
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
