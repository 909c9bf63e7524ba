"""A tuning study's bookkeeping in the Optuna storage: opening it (the same storage as the
ablation study, with heartbeats), its identity (spec, arm, space: a rerun with other options
never mixes into it), counting finished trials, failing the trials of dead workers, and the
one-line progress of each trial.
"""

from __future__ import annotations

import time
from typing import Any

import optuna
from optuna.trial import TrialState

from analysis.contract import DIVERGED, INTERRUPTED, redact, stable_hash
from study.claims import gone_from_this_host
from study.plan import Plan, UsageError
from study.search import TUNE_SEED_OFFSET
from study.store import StoreError, opening_lock

HEARTBEAT_S = 10  # a worker killed mid-trial leaves a RUNNING trial that is failed after 2 x this


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """RDB storage with heartbeats (stale RUNNING trials of killed workers get failed). SQLite is
    opened under `opening_lock`; a server database is retried, since workers that start together
    race to create its tables."""
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    last: Exception | None = None
    for attempt in range(8):
        try:
            with opening_lock(url):
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S,
                                                  grace_period=2 * HEARTBEAT_S)
        except StoreError:
            raise
        except Exception as e:  # sqlalchemy/optuna raise many types for a bad URL or a race
            last = e
            time.sleep(0.2 * (attempt + 1))
    raise StoreError(f"cannot open storage {redact(url)}: {type(last).__name__}: {str(last).splitlines()[0]}")


def tuning_identity(plan: Plan, arm: str, space: dict[str, Any], objective: str,
                    direction: str = "maximize") -> str:
    blob: dict[str, Any] = {"preset": plan.preset, "arm": arm, "config": plan.config_dict(arm), "objective": objective,
                            "space": {k: optuna.distributions.distribution_to_json(d) for k, d in space.items()},
                            "seed_offset": TUNE_SEED_OFFSET}
    if plan.experiment is not None:  # built-in identities predate these keys: left as they were
        blob.update(experiment=plan.experiment.label, direction=direction)
    return stable_hash(blob)


def open_tuning_study(url: str, name: str, attrs: dict[str, Any], sampler, pruner, *, create: bool,
                      direction: str = "maximize") -> optuna.Study:
    storage = open_storage(url)
    if not create and name not in {s.study_name for s in storage.get_all_studies()}:
        raise UsageError(f"no tuning study {name!r} in {redact(url)}: run `seedwise tune --trials N` "
                         "with the same options first")
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction=direction, sampler=sampler,  # type: ignore[arg-type]  # a DIRECTIONS value
                                    pruner=pruner, load_if_exists=True)
    except Exception as e:
        raise StoreError(f"cannot open study {name!r} in {redact(url)}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    stored = study.user_attrs.get("identity")
    if stored is None:
        for key, value in attrs.items():
            study.set_user_attr(key, value)
    elif stored != attrs["identity"]:
        raise StoreError(
            f"tuning study {name!r} in {redact(url)} was made with a different spec, preset, --set or search "
            f"space (identity {stored} != {attrs['identity']}); nothing was changed. Use --study NEW_NAME, or "
            "rerun with the options that made it")
    optuna.storages.fail_stale_trials(study)  # a killed worker's RUNNING trial must not linger
    fail_dead_trials(study)
    return study


def finished(study: optuna.Study) -> int:
    """Trials that count towards --trials: complete, or pruned (which includes diverged)."""
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """Fail RUNNING trials whose worker process on this host no longer exists (kill -9, OOM
    killer, power loss of a job step): without waiting for the heartbeat grace period, so an
    immediate rerun neither waits nor leaves the dead trial RUNNING. Returns their numbers."""
    dead = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if gone_from_this_host(str(t.user_attrs.get("worker", ""))):
            try:  # what optuna.storages.fail_stale_trials does, through the same storage calls
                study._storage.set_trial_user_attr(t._trial_id, "status", INTERRUPTED)
                study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                dead.append(t.number)
            except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
                pass  # another process finished or failed it first
    return dead


def fmt_params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


PERCENT_VAL = "val_acc"  # shown as 'val 51.70%': the generated specs of committed tuned studies say it so


def score_text(value: float | None, metric: str) -> str:
    """val_acc as 'val 51.70%'; any other metric as 'name 0.1234'."""
    if value is None:  # optuna types every trial's value as optional; complete ones have one
        return f"no {metric} score"
    return f"val {value:.2f}%" if metric == PERCENT_VAL else f"{metric} {value:.4g}"


def trial_line(study: optuna.Study, t: optuna.trial.FrozenTrial, metric: str) -> str:
    status = t.user_attrs.get("status", t.state.name.lower())
    if t.state == TrialState.COMPLETE:
        score = score_text(t.value, metric)
    elif t.intermediate_values:
        step = max(t.intermediate_values)
        score = f"{score_text(t.intermediate_values[step], metric)} at epoch {step}"
    else:
        score = f"no {metric} score"
    if status == DIVERGED:
        score += f", diverged in epoch {t.user_attrs.get('diverged_epoch')}"
    if t.user_attrs.get("error"):
        score += f", {t.user_attrs['error']} (traceback in the trial's user attrs)"
    secs = t.duration.total_seconds() if t.duration else 0.0
    line = f"trial {t.number} {t.state.name} ({status}): {fmt_params(t.params)}: {score} ({secs:.1f}s)"
    try:
        best = study.best_trial
        line += f"; best #{best.number} {score_text(best.value, metric).split(' ', 1)[1]}"
    except ValueError:
        pass
    return line
