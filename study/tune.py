"""`python -m study.tune`: tune an arm's config on a validation metric, then confirm on fresh seeds.

    python -m study.tune --trials 40                 # tune lr and step_size for the baseline arm
    python -m study.tune --trials 40 --arm no_bn     # each arm can get its own tuning (fair ablation)
    python -m study.tune --confirm 5                 # re-run the best params on 5 fresh seeds as arm "tuned"
    optuna-dashboard sqlite:///results/<study>/study.db   # browse tuning and ablation side by side
    python -m study.tune --spec my.toml --trials 20  # a user experiment: the space is its spec's [tune]

The search space and objective come from the spec's `[tune]` table (the built-in notebook spec
declares lr in [1e-3, 1] on a log scale and step_size in [1, epochs], on validation accuracy).

Tuning never sees the test set: the objective is the last epoch's *validation* accuracy, the runs
are trained with `score_test=False` (the test tensors are not even read), and tuning seeds
(100000 + trial number) are disjoint from the evaluation seeds 0..N-1 that `--confirm` uses.
The tuning study lives in the ablation study's storage (default
sqlite:///RESULTS/<ablation study>/study.db) as the Optuna study `<ablation study>-tune-<arm>`;
`--confirm` writes the ablation study `<ablation study>-tuned` (`-tuned-<arm>` for other arms)
to the same storage, pairing the tuned params with the untuned arm on the same fresh seeds.

Exit status: 0 done, 1 a trial or run failed (recorded; rerun to retry), 2 bad input,
130 interrupted (rerun the same command to continue).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
import tomllib
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from analysis.contract import config_hash
from study.claims import gone_from_this_host, worker_id
from study.experiment import ExperimentError
from study.notebook.data import DataError
from study.notebook.runner import make_objective
from study.run import (
    Plan,
    UsageError,
    add_study_args,
    device_choice,
    interruptible,
    make_plan,
    run_plan,
)
from study.spec import SpecError, StudySpec
from study.store import StoreError, opening_lock, quiet_optuna, redact

TUNE_SEED_OFFSET = 100_000  # tuning seed = 100000 + trial number; evaluation seeds are 0..N-1
HEARTBEAT_S = 10  # a worker killed mid-trial leaves a RUNNING trial that is failed after 2 x this
LR_RANGE = (1e-3, 1.0)  # the built-in experiment's default space, when its spec has no [tune]
GAMMA_RANGE = (0.1, 0.9)
KIND = "seedwise-tuning"
OBJECTIVE = "val_acc"  # the built-in experiment's objective


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m study.tune", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Several processes may tune one study together (same options, same storage): they share "
               "the target of --trials N finished trials (each may finish one trial beyond it). "
               "Exit status: 0 done, 1 a trial/run failed, 2 bad input, 130 interrupted.")
    add_study_args(p)
    p.add_argument("--arm", help="the arm to tune (default: the spec's analysis baseline)")
    p.add_argument("--threads", type=int, help="torch CPU threads of this process (default: torch's; use 1 "
                                               "when running one tuner per core)")
    p.add_argument("--trials", type=int, metavar="N",
                   help="tune until the tuning study has N finished (complete or pruned) trials: a rerun "
                        "of the same command after a crash or Ctrl-C does the rest, a larger N adds more")
    p.add_argument("--tune-gamma", action="store_true",
                   help=f"also tune StepLR's gamma in [{GAMMA_RANGE[0]}, {GAMMA_RANGE[1]}] (default: keep the arm's)")
    p.add_argument("--sampler-seed", type=int, default=0,
                   help="seed of the TPE sampler (default 0); trial k draws from seed (sampler seed, k)")
    p.add_argument("--confirm", type=int, metavar="N",
                   help="re-run the best trial's params on fresh evaluation seeds 0..N-1 as arm 'tuned', "
                        "paired with the untuned arm (after tuning, if --trials is also given)")
    p.add_argument("--top-k", type=int, default=1, metavar="K",
                   help="with --confirm: confirm the K best trials as tuned, tuned_2, ... (shows the "
                        "winner's curse: the selected validation score overstates the fresh-seed one)")
    return p.parse_args(argv)


# ---- search space and objective ---------------------------------------------------------
def _value(config: Any, key: str) -> Any:
    return config[key] if isinstance(config, dict) else getattr(config, key)


def space_from_ranges(config: Any, ranges: dict[str, dict[str, Any]]) -> dict[str, optuna.distributions.BaseDistribution]:
    """[tune] ranges as Optuna distributions; a bound that names a config key takes the arm's value."""
    space: dict[str, optuna.distributions.BaseDistribution] = {}
    for key, rng in ranges.items():
        if "choices" in rng:
            space[key] = optuna.distributions.CategoricalDistribution(rng["choices"])
            continue
        low, high = (_value(config, b) if isinstance(b, str) else b for b in (rng["low"], rng["high"]))
        integer = rng.get("int", isinstance(_value(config, key), int) and not isinstance(_value(config, key), bool))
        try:
            if integer:
                space[key] = optuna.distributions.IntDistribution(int(low), int(high), log=rng.get("log", False))
            else:
                space[key] = optuna.distributions.FloatDistribution(float(low), float(high), log=rng.get("log", False))
        except ValueError as e:
            raise UsageError(f"[tune] {key}: {e}") from None
    return space


def search_space(config: Any, tune_gamma: bool = False,
                 ranges: dict[str, dict[str, Any]] | None = None) -> dict[str, optuna.distributions.BaseDistribution]:
    if ranges is not None:
        space = space_from_ranges(config, ranges)
    else:
        space = {"lr": optuna.distributions.FloatDistribution(*LR_RANGE, log=True),
                 "step_size": optuna.distributions.IntDistribution(1, config.epochs)}
    if tune_gamma:
        space["gamma"] = optuna.distributions.FloatDistribution(*GAMMA_RANGE)
    return space


def suggest(trial: optuna.trial.BaseTrial, space: dict[str, Any]) -> dict[str, Any]:
    params = {}
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
                trial.set_user_attr("status", "pruned")
                raise optuna.TrialPruned(f"pruned after epoch {epoch} ({metric} {row[metric]:.4g})")

        try:
            outcome = experiment.run(cfg, seed, device=device or "cpu", on_report=on_report)
            if metric not in outcome.metrics:
                raise KeyError(f"the experiment returned no {metric!r} ([tune] metric); it returned: "
                               f"{', '.join(outcome.metrics)}")
        except optuna.TrialPruned:
            raise
        except Exception as e:
            trial.set_user_attr("status", "failed")
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            trial.set_user_attr("traceback", traceback.format_exc()[-8000:])
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("status", "interrupted")
            raise
        trial.set_user_attr("status", outcome.status)
        trial.set_user_attr("wall_time_s", round(outcome.wall_time_s, 3))
        trial.set_user_attr("metrics", outcome.metrics)
        if outcome.status == "diverged":
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


# ---- storage ------------------------------------------------------------------------------
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


def tuning_study_name(plan: Plan, arm: str) -> str:
    return f"{plan.study_name}-tune-{arm}"


def confirm_study_name(plan: Plan, arm: str) -> str:
    return f"{plan.study_name}-tuned" + ("" if arm == plan.spec.analysis.baseline else f"-{arm}")


def tuning_identity(plan: Plan, arm: str, space: dict[str, Any], objective: str = OBJECTIVE,
                    direction: str = "maximize") -> str:
    blob: dict[str, Any] = {"preset": plan.preset, "arm": arm, "config": plan.config_dict(arm), "objective": objective,
                            "space": {k: optuna.distributions.distribution_to_json(d) for k, d in space.items()},
                            "seed_offset": TUNE_SEED_OFFSET}
    if plan.experiment is not None:  # built-in identities predate these keys: left as they were
        blob.update(experiment=plan.experiment.label, direction=direction)
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:12]


def open_tuning_study(url: str, name: str, attrs: dict[str, Any], sampler, pruner, *, create: bool,
                      direction: str = "maximize") -> optuna.Study:
    storage = open_storage(url)
    if not create and name not in {s.study_name for s in storage.get_all_studies()}:
        raise UsageError(f"no tuning study {name!r} in {redact(url)}: run `python -m study.tune --trials N` "
                         "with the same options first")
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction=direction, sampler=sampler,
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
                study._storage.set_trial_user_attr(t._trial_id, "status", "interrupted")
                study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                dead.append(t.number)
            except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
                pass  # another process finished or failed it first
    return dead


# ---- progress -------------------------------------------------------------------------------
def fmt_params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def score_text(value: float, metric: str) -> str:
    """The built-in objective as 'val 51.70%'; any other metric as 'name 0.1234'."""
    return f"val {value:.2f}%" if metric == OBJECTIVE else f"{metric} {value:.4g}"


def trial_line(study: optuna.Study, t: optuna.trial.FrozenTrial, metric: str = OBJECTIVE) -> str:
    status = t.user_attrs.get("status", t.state.name.lower())
    if t.state == TrialState.COMPLETE:
        score = score_text(t.value, metric)
    elif t.intermediate_values:
        step = max(t.intermediate_values)
        score = f"{score_text(t.intermediate_values[step], metric)} at epoch {step}"
    else:
        score = f"no {metric} score"
    if status == "diverged":
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


# ---- confirm ----------------------------------------------------------------------------------
def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"cannot write {v!r} to a spec")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to a spec")


def tuned_arm_names(arm: str, baseline: str, k: int) -> list[str]:
    stem = "tuned" if arm == baseline else f"tuned_{arm}"
    return [stem if i == 0 else f"{stem}_{i + 1}" for i in range(k)]


def confirm_spec_toml(spec: StudySpec, arm: str, chosen: list[optuna.trial.FrozenTrial], names: list[str],
                      seeds: int, tuning_name: str, objective: str = OBJECTIVE) -> str:
    lines = [f"# Generated by python -m study.tune --confirm from tuning study {tuning_name!r}."]
    if not spec.builtin:  # the same experiment, found where the original spec found it
        lines += [f"experiment = {toml_value(spec.experiment)}" if spec.experiment
                  else f"command = {toml_value(spec.command)}", f"folder = {toml_value(spec.folder or '.')}"]
    lines += [f"name = {toml_value(spec.name + '-tuned')}",
             f"description = {toml_value(f'{arm} with tuned params vs untuned, on fresh evaluation seeds')}",
             f"seeds = {seeds}", "first_seed = 0", "", "[base]"]
    lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in spec.base.items()]
    a = spec.analysis
    lines += ["", "[analysis]", f"metric = {toml_value(a.metric)}", f"baseline = {toml_value(arm)}",
              f"alpha = {toml_value(float(a.alpha))}", f"margin = {toml_value(float(a.margin))}"]
    if not spec.builtin:
        lines += [f"direction = {toml_value(a.direction)}"]
        lines += [f"chance = {toml_value(float(a.chance))}"] if a.chance is not None else []
    lines += [""]
    untuned = spec.arm(arm)
    lines += [f"[arms.{json.dumps(arm)}]", f"description = {toml_value(untuned.description or arm)}"]
    lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in untuned.overrides.items()]
    for name, t in zip(names, chosen, strict=True):
        overrides = {**untuned.overrides, **t.params}
        desc = f"{arm} with the params of tuning trial {t.number} (selected {score_text(t.value, objective)})"
        lines += ["", f"[arms.{json.dumps(name)}]", f"description = {toml_value(desc)}"]
        lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in overrides.items()]
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # never hand the runner a spec we cannot read back
    return text


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), (float(arr.std(ddof=1)) if len(arr) > 1 else None)


def confirm(args: argparse.Namespace, plan: Plan, arm: str, study: optuna.Study, url: str,
            objective: str = OBJECTIVE) -> int:
    import pandas as pd

    sign = -1 if study.direction == optuna.study.StudyDirection.MINIMIZE else 1
    complete = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                      key=lambda t: (-sign * t.value, t.number))
    if not complete:
        raise UsageError(f"tuning study {study.study_name!r} has no completed trial yet; run "
                         "`python -m study.tune --trials N` first")
    chosen = complete[: args.top_k]
    if len(chosen) < args.top_k:
        print(f"--top-k {args.top_k}: only {len(chosen)} completed trial(s); confirming those", file=sys.stderr)
    names = tuned_arm_names(arm, plan.spec.analysis.baseline, len(chosen))
    name = confirm_study_name(plan, arm)
    out = Path(args.results) / name
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "spec.toml"
    spec_path.write_text(confirm_spec_toml(plan.spec, arm, chosen, names, args.confirm, study.study_name,
                                           objective))
    options = {"seeds": args.confirm, "results": args.results, "study": name, "storage": url,
               "device": args.device, "data": args.data, "data_root": args.data_root, "set": list(args.set)}
    if plan.preset:
        options["preset"] = plan.preset
    print(f"confirming {len(chosen)} tuned param set(s) of {study.study_name} on seeds 0..{args.confirm - 1}: "
          f"python -m study.run --spec {spec_path} " + " ".join(
              f"--{k.replace('_', '-')} {v}" for k, v in options.items() if v and k != "set"), file=sys.stderr)
    code = run_plan(str(spec_path), **options)
    if code == 2 or not (out / "runs.csv").exists():
        return 2 if code == 2 else code
    runs = pd.read_csv(out / "runs.csv")
    seeds = list(range(args.confirm))
    runs = runs[runs["seed"].isin(seeds) & (runs["status"] == "complete")]

    metric = plan.spec.analysis.metric  # "test": the metric the ablation is judged on

    def column(r, name: str) -> list[float]:
        return r[name].dropna().tolist() if name in r else []

    def fresh(arm_name: str) -> dict[str, Any]:
        r = runs[runs["arm"] == arm_name]
        val, val_sd = _mean_sd(column(r, objective))
        test, test_sd = _mean_sd(column(r, metric))
        return {"n": int(len(r)), "fresh_val_mean": val, "fresh_val_sd": val_sd,
                "fresh_test_mean": test, "fresh_test_sd": test_sd}

    base_cfg = plan.configs[arm]
    rows = [{"arm": arm, "trial": None, "params": {k: _value(base_cfg, k) for k in chosen[0].params},
             "selected_val": None, **fresh(arm), "selection_gap": None}]
    for name_k, t in zip(names, chosen, strict=True):
        row = {"arm": name_k, "trial": t.number, "params": dict(t.params), "selected_val": t.value, **fresh(name_k)}
        row["selection_gap"] = (t.value - row["fresh_val_mean"]) if row["fresh_val_mean"] is not None else None
        rows.append(row)
    selection = {"tuning_study": study.study_name, "confirm_study": name, "tuned_arm": arm, "preset": plan.preset,
                 "seeds": seeds, "objective": objective, "storage": redact(url),
                 "note": f"selection_gap = selected (tuning) {objective} - mean fresh-seed {objective}: the selection bias",
                 "rows": rows}
    (out / "selection.json").write_text(json.dumps(selection, indent=2) + "\n")

    def f(v):
        return "-" if v is None else f"{v:.2f}"

    print(f"\nselection bias ({name}, fresh seeds {seeds[0]}..{seeds[-1]}; accuracies in %)")
    print(f"{'arm':<18}{'trial':>6}  {'selected val':>12}  {'fresh val':>9}  {'fresh test':>10}  {'gap':>6}  params")
    for r in rows:
        print(f"{r['arm']:<18}{'-' if r['trial'] is None else r['trial']:>6}  {f(r['selected_val']):>12}  "
              f"{f(r['fresh_val_mean']):>9}  {f(r['fresh_test_mean']):>10}  {f(r['selection_gap']):>6}  "
              f"{fmt_params(r['params'])}")
    print(f"selection table: {out / 'selection.json'}", file=sys.stderr)
    return code


# ---- main -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    return interruptible(_main, parse_args(argv), "trials")


def _main(args: argparse.Namespace) -> int:
    import torch

    quiet_optuna()
    try:
        device, has_cuda = device_choice(args.device)
        if args.threads is not None:
            if args.threads <= 0:
                raise UsageError(f"--threads must be a positive integer, got {args.threads}")
            torch.set_num_threads(args.threads)
        if args.trials is None and args.confirm is None:
            raise UsageError("nothing to do: give --trials N to tune and/or --confirm N to re-run the best "
                             "params on N fresh seeds")
        for flag, value in (("--trials", args.trials), ("--confirm", args.confirm), ("--top-k", args.top_k)):
            if value is not None and value <= 0:
                raise UsageError(f"{flag} must be a positive integer, got {value}")
        plan = make_plan(args, has_cuda)
        arm = args.arm or plan.spec.analysis.baseline
        plan.spec.arm(arm)  # unknown arm: SpecError naming the closest
        config = plan.configs[arm]
        builtin = plan.experiment is None
        if not builtin and plan.spec.tune is None:
            raise UsageError(f"{plan.spec.source} has no [tune] table: declare the search space there, e.g. "
                             "[tune] metric = \"val_acc\", lr = {low = 0.001, high = 1.0, log = true}")
        if args.tune_gamma and (not builtin or config.scheduler != "step"):
            raise UsageError(f"--tune-gamma: arm {arm!r} has no StepLR schedule (declare gamma in [tune] instead)")
        objective, direction = ((plan.spec.tune.metric, plan.spec.tune.direction) if plan.spec.tune
                                else (OBJECTIVE, "maximize"))
        space = search_space(config, args.tune_gamma, plan.spec.tune.ranges if plan.spec.tune else None)
        if args.storage is None:
            plan.results_dir.mkdir(parents=True, exist_ok=True)
        url = args.storage or f"sqlite:///{plan.results_dir / 'study.db'}"
        name = tuning_study_name(plan, arm)
        attrs = {"kind": KIND, "arm": arm, "preset": plan.preset,
                 "identity": tuning_identity(plan, arm, space, objective, direction),
                 "objective": objective, "direction": direction, "ablation_study": plan.study_name,
                 "ablation_identity": plan.identity, "spec_source": plan.spec.source, "set": plan.extra,
                 "base_config": plan.config_dict(arm),
                 "search_space": {k: repr(d) for k, d in space.items()}, "tuning_seed_offset": TUNE_SEED_OFFSET,
                 "sampler": f"TPE (seed {args.sampler_seed}, per trial number)", "pruner": repr(make_pruner(config))}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study = open_tuning_study(url, name, attrs, TrialSeededTPE(seed=args.sampler_seed, constant_liar=True),
                                      make_pruner(config), create=args.trials is not None, direction=direction)
        if args.trials is None and not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            raise UsageError(f"tuning study {name!r} has no completed trial yet; run "
                             "`python -m study.tune --trials N` first")
        data = None
        if args.trials and builtin:
            from study.notebook.data import load_cifar10

            data = load_cifar10(args.data, args.data_root)
    except (SpecError, UsageError, DataError, StoreError, ExperimentError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    code = 0
    todo = max(0, args.trials - finished(study)) if args.trials else 0
    if args.trials and not todo:
        print(f"nothing to do: {name} already has {finished(study)} finished trial(s) (--trials {args.trials}); "
              "give a larger --trials to tune more", file=sys.stderr)
    if todo:
        what = f"data: {data.source}" if builtin else f"experiment: {plan.experiment.label}"
        goal = "last-epoch val acc" if builtin else f"{direction} {objective}"
        print(f"tuning {arm} ({fmt_params({k: _value(config, k) for k in space})} untuned) in study {name}: "
              f"{todo} trial(s) to reach {args.trials} finished; objective: {goal}; "
              f"device {device}; {what}; storage: {redact(url)}", file=sys.stderr)
        failed = []

        def progress(st: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
            if t.state == TrialState.FAIL:
                failed.append(t.number)
            print(trial_line(st, t, objective), file=sys.stderr, flush=True)

        try:
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat
            # Optuna logs every failed trial with its traceback, Ctrl-C included; our progress line
            # says it in one line and the trial keeps the traceback.
            optuna.logging.set_verbosity(optuna.logging.ERROR)
            # Failed trials (a raise, a killed worker) do not count, so a rerun redoes their work.
            # MaxTrialsCallback stops this process once cooperating workers reached the target.
            target = optuna.study.MaxTrialsCallback(args.trials, states=(TrialState.COMPLETE, TrialState.PRUNED))
            run_trial = (make_objective(config, data, space, device) if builtin else
                         make_user_objective(plan.experiment, config, space, objective, device))
            study.optimize(run_trial, n_trials=todo,
                           callbacks=[progress, target], catch=(Exception,), gc_after_trial=False)
        except KeyboardInterrupt:
            print(f"\ninterrupted: finished trials are stored in {name} ({redact(url)}); rerun the same "
                  "command to continue", file=sys.stderr)
            return 130
        try:
            best = study.best_trial
            print(f"best of {name}: trial {best.number}: {fmt_params(best.params)}: "
                  f"{score_text(best.value, objective)}")
        except ValueError:
            print(f"{name}: no completed trial yet", file=sys.stderr)
        print(f"dashboard: optuna-dashboard --host 127.0.0.1 {redact(url)}", file=sys.stderr)
        code = 1 if failed else 0
    if args.confirm:
        try:
            return max(code, confirm(args, plan, arm, study, url, objective))
        except (UsageError, SpecError, StoreError, DataError, ExperimentError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
