"""`python -m study.tune --confirm N`: the best trial(s) of a tuning study re-run on fresh
evaluation seeds 0..N-1 as arms `tuned`, `tuned_2`, ... beside the untuned arm, as an ablation
study of their own (`<ablation study>-tuned`, through the runner's Python API), and the
selection table: how much the selected validation score overstates the fresh-seed one.

`python -m study.tune --arm A,B,... --confirm N` (`confirm_per_arm`): every listed arm at the
params of its *own* best tuning trial, on the same fresh seeds, as the study
`<ablation study>-tuned-per-arm` with the spec's baseline: the fair ablation, tuned vs tuned.
"""

from __future__ import annotations

import json
import math
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from analysis.contract import (
    COMPLETE,
    PER_ARM_FILE,
    PER_ARM_SUFFIX,
    TUNED_SUFFIX,
    confirm_study_name,
    per_arm_study_name,
    read_table,
    redact,
)
from analysis.formatting import number
from study.plan import Plan, UsageError
from study.run import run_plan
from study.search import config_value
from study.spec import StudySpec, parse_spec
from study.trials import fmt_params, score_text


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
    if isinstance(v, Mapping):  # an inline table
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to a spec")


def tuned_arm_names(arm: str, baseline: str, k: int) -> list[str]:
    stem = "tuned" if arm == baseline else f"tuned_{arm}"
    return [stem if i == 0 else f"{stem}_{i + 1}" for i in range(k)]


def _spec_head(spec: StudySpec, name: str, description: str, seeds: int, baseline: str) -> list[str]:
    """A generated spec's experiment, name, seeds, [base] and [analysis] (baseline: `baseline`)."""
    lines = []
    if spec.experiment or spec.command:  # the same experiment, found where the original spec found it
        lines += [f"experiment = {toml_value(spec.experiment)}" if spec.experiment
                  else f"command = {toml_value(spec.command)}", f"folder = {toml_value(spec.folder or '.')}"]
    lines += [f"name = {toml_value(name)}", f"description = {toml_value(description)}",
              f"seeds = {seeds}", "first_seed = 0"]
    lines += [f"seed_streams = {toml_value(dict(spec.seed_streams))}"] if spec.seed_streams else []
    lines += [f"timeout = {toml_value(float(spec.timeout))}"] if spec.timeout is not None else []
    # a task's study (study.tasks) runs [base] under its task's overrides: the generated spec,
    # which has no tasks, takes them into [base], or its runs would train on the base's task
    base = {**spec.base, **(spec.tasks[spec.task].overrides if spec.task is not None else {})}
    lines += ["", "[base]"] + [f"{json.dumps(k)} = {toml_value(v)}" for k, v in base.items()]
    # the original's sizes and device defaults: --preset means the same in the generated spec
    for table, entries in (("defaults", spec.defaults), ("presets", spec.presets)):
        for key, values in entries.items():
            lines += ["", f"[{table}.{json.dumps(key)}]"] + [f"{json.dumps(k)} = {toml_value(v)}" for k, v in values.items()]
    a = spec.analysis
    lines += ["", "[analysis]", f"metric = {toml_value(a.metric)}", f"baseline = {toml_value(baseline)}",
              f"alpha = {toml_value(float(a.alpha))}", f"margin = {toml_value(float(a.margin))}"]
    # only what was declared: an undeclared direction stays the name's
    lines += [f"direction = {toml_value(a.direction)}"] if a.direction is not None else []
    lines += [f"chance = {toml_value(float(a.chance))}"] if a.chance is not None else []
    for metric, declared in a.metrics.items():
        lines += ["", f"[analysis.metrics.{json.dumps(metric)}]"]
        lines += [f"{k} = {toml_value(v)}" for k, v in declared.items()]
    return lines


def _arm_table(name: str, description: str, overrides: Mapping[str, Any]) -> list[str]:
    return (["", f"[arms.{json.dumps(name)}]", f"description = {toml_value(description)}"]
            + [f"{json.dumps(k)} = {toml_value(v)}" for k, v in overrides.items()])


def trial_label(t: optuna.trial.FrozenTrial) -> int | str:
    """How a selection names a chosen trial: a race's candidate (`default`, `t12`), which is what
    the race's report names; its first stored run's number would say nothing. Else the trial's number."""
    return t.user_attrs.get("race_candidate", t.number)


def _checked(text: str) -> str:
    tomllib.loads(text)  # never hand the runner a spec we cannot read back
    return text


def confirm_spec_toml(spec: StudySpec, arm: str, chosen: list[optuna.trial.FrozenTrial], names: list[str],
                      seeds: int, tuning_name: str, objective: str) -> str:
    lines = [f"# Generated by python -m study.tune --confirm from tuning study {tuning_name!r}."]
    lines += _spec_head(spec, spec.name + TUNED_SUFFIX,
                        f"{arm} with tuned params vs untuned, on fresh evaluation seeds", seeds, arm)
    untuned = spec.arm(arm)
    lines += _arm_table(arm, untuned.description or arm, untuned.overrides)
    for name, t in zip(names, chosen, strict=True):
        desc = f"{arm} with the params of tuning trial {t.number} (selected {score_text(t.value, objective)})"
        lines += _arm_table(name, desc, {**untuned.overrides, **t.params})
    return _checked("\n".join(lines) + "\n")


def per_arm_spec_toml(spec: StudySpec, best: dict[str, optuna.trial.FrozenTrial], seeds: int,
                      objective: str) -> str:
    """Each arm of `best` under its own name, at the params of its own best tuning trial."""
    lines = ["# Generated by python -m study.tune --arm A,B,... --confirm: every arm at its own tuned params."]
    lines += _spec_head(spec, spec.name + PER_ARM_SUFFIX,
                        f"{', '.join(best)}, each at its own tuned params, on fresh evaluation seeds",
                        seeds, spec.analysis.baseline)
    for arm, t in best.items():
        untuned = spec.arm(arm)
        desc = (f"{untuned.description or arm}; params of its tuning trial {t.number} "
                f"(selected {score_text(t.value, objective)})")
        lines += _arm_table(arm, desc, {**untuned.overrides, **t.params})
    return _checked("\n".join(lines) + "\n")


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), (float(arr.std(ddof=1)) if len(arr) > 1 else None)


def best_trials(study: optuna.Study, top_k: int) -> list[optuna.trial.FrozenTrial]:
    """The `top_k` best completed trials, best first (ties: the earlier trial); of a race
    study, the race's winner (study.racing), never its best single run."""
    if study.user_attrs.get("race"):
        from study.racing import winner_trials

        return winner_trials(study, top_k)
    sign = -1 if study.direction == optuna.study.StudyDirection.MINIMIZE else 1
    complete = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                      key=lambda t: (-sign * t.value, t.number))  # type: ignore[operator]  # complete: has a value
    if not complete:
        raise UsageError(f"tuning study {study.study_name!r} has no completed trial yet; run "
                         "`seedwise tune --trials N` first")
    chosen = complete[:top_k]
    if len(chosen) < top_k:
        print(f"--top-k {top_k}: only {len(chosen)} completed trial(s); confirming those", file=sys.stderr)
    return chosen


def at_default(chosen: list[optuna.trial.FrozenTrial], config: Any) -> int | None:
    """The position in `chosen` of the first trial whose params are the arm's untuned values
    (a race's `default` winning, or a trial that drew them), else None: that trial's arm would
    rerun the untuned one exactly, so the untuned arm stands for it."""
    return next((i for i, t in enumerate(chosen)
                 if all(config_value(config, k) == v for k, v in t.params.items())), None)


def confirm(plan: Plan, arm: str, study: optuna.Study, url: str, *, seeds: int, top_k: int,
            results: str | Path, run_options: dict[str, Any], objective: str) -> int:
    """Re-run the `top_k` best trials' params of `arm` on seeds 0..seeds-1 (the runner's
    `run_options`: device, data, data_root, set), then write and print the selection table.
    A chosen trial at the untuned params is not run twice: the untuned arm is its fresh-seed
    measure, and when it is the winner there is nothing to compare."""
    chosen = best_trials(study, top_k)
    default_at = at_default(chosen, plan.configs[arm])
    names = tuned_arm_names(arm, plan.spec.analysis.baseline, len(chosen))
    name = confirm_study_name(plan.study_name, None if arm == plan.spec.analysis.baseline else arm)
    out = Path(results) / name
    spec_path = out / "spec.toml"
    legacy = confirm_spec_toml(plan.spec, arm, chosen, names, seeds, study.study_name, objective)
    if default_at is not None and ran(spec_path) and not confirmed_elsewise(plan, spec_path, legacy):
        default_at = None  # begun when the default also ran as `tuned`: it resumes as it began
    run_names = [n for i, n in enumerate(names) if i != default_at]
    run_chosen = [t for i, t in enumerate(chosen) if i != default_at]
    out.mkdir(parents=True, exist_ok=True)
    text = confirm_spec_toml(plan.spec, arm, run_chosen, run_names, seeds, study.study_name, objective)
    if not write_confirm_spec(plan, spec_path, url, text):
        return 2
    if default_at is not None:
        print(f"{'the winner' if default_at == 0 else f'--top-k: choice {default_at + 1}'} "
              f"({trial_label(chosen[default_at])}) is the default configuration of {arm}"
              + (f": {'its runner-ups are compared with it' if run_chosen else 'nothing to compare'}; its "
                 "untuned params run once on the fresh seeds, which measures how much the selection "
                 "overstated it" if default_at == 0 else
                 f": not run twice, the untuned {arm} stands for it"), file=sys.stderr)
    what = (f"{len(run_chosen)} tuned param set(s) of {study.study_name}" if run_chosen
            else f"the default configuration of {arm}, winner of {study.study_name}")
    code = run_confirmation(plan, spec_path, name, url, seeds=seeds, results=results, run_options=run_options,
                            what=what)
    if code == 2 or not (out / "runs.csv").exists():
        return 2 if code == 2 else code
    runs = read_table(out / "runs.csv")
    fresh = list(range(seeds))
    runs = runs[runs["seed"].isin(fresh) & (runs["status"] == COMPLETE)]
    rows = selection_rows(plan, arm, chosen, names, runs, objective, default_at)
    selection: dict[str, Any] = {
        "tuning_study": study.study_name, "confirm_study": name, "tuned_arm": arm, "preset": plan.preset,
        "seeds": fresh, "objective": objective, "storage": redact(url),
        "note": f"selection_gap = selected (tuning) {objective} - mean fresh-seed {objective}: the selection bias",
        "rows": rows}
    if default_at == 0:  # only then: older selection.json files read back as they were written
        selection["winner_is_default"] = True
    (out / "selection.json").write_text(json.dumps(selection, indent=2) + "\n")
    print_selection(name, fresh, rows, objective=objective, metric=plan.spec.analysis.metric)
    if default_at == 0:
        print("the winner is the default configuration: "
              + (f"the other choices are compared with it (the row {arm} is the winner on fresh seeds)"
                 if run_chosen else f"nothing to compare (the row {arm} is the winner on fresh seeds)"))
    print(f"selection table: {out / 'selection.json'}", file=sys.stderr)
    return code


def selection_rows(plan: Plan, arm: str, chosen: list[optuna.trial.FrozenTrial], names: list[str], runs,
                   objective: str, default_at: int | None = None) -> list[dict[str, Any]]:
    """One row for the untuned arm, then one per confirmed trial: its selected (tuning) score,
    its fresh-seed means and the gap between them. A chosen trial at the untuned params
    (`default_at`) has no row of its own: the untuned arm's row carries its selection."""
    metric = plan.spec.analysis.metric  # "test": the metric the ablation is judged on

    def column(r, name: str) -> list[float]:
        return r[name].dropna().tolist() if name in r else []

    def fresh(arm_name: str) -> dict[str, Any]:
        r = runs[runs["arm"] == arm_name]
        val, val_sd = _mean_sd(column(r, objective))
        test, test_sd = _mean_sd(column(r, metric))
        return {"n": int(len(r)), "fresh_val_mean": val, "fresh_val_sd": val_sd,
                "fresh_test_mean": test, "fresh_test_sd": test_sd}

    def row(arm_name: str, t: optuna.trial.FrozenTrial | None, params: dict[str, Any]) -> dict[str, Any]:
        out = {"arm": arm_name, "trial": None if t is None else trial_label(t), "params": params,
               "selected_val": None if t is None else t.value, **fresh(arm_name)}
        out["selection_gap"] = (t.value - out["fresh_val_mean"]
                                if t is not None and out["fresh_val_mean"] is not None else None)
        return out

    base_cfg = plan.configs[arm]
    untuned = {k: config_value(base_cfg, k) for k in chosen[0].params}
    rows = [row(arm, None if default_at is None else chosen[default_at], untuned)]
    rows += [row(name_k, t, dict(t.params)) for i, (name_k, t) in enumerate(zip(names, chosen, strict=True))
             if i != default_at]
    return rows


def print_selection(name: str, seeds: list[int], rows: list[dict[str, Any]], *, objective: str, metric: str) -> None:
    def f(v):
        return number(v, missing="-")

    # in the experiment's own units (a loss is no percentage); the gap's sign is the raw difference
    print(f"\nselection bias ({name}, fresh seeds {seeds[0]}..{seeds[-1]}; val = {objective}, test = {metric}; "
          f"gap = selected - fresh {objective})")
    print(f"{'arm':<18}{'trial':>6}  {'selected val':>12}  {'fresh val':>9}  {'fresh test':>10}  {'gap':>6}  params")
    for r in rows:
        print(f"{r['arm']:<18}{'-' if r['trial'] is None else r['trial']:>6}  {f(r['selected_val']):>12}  "
              f"{f(r['fresh_val_mean']):>9}  {f(r['fresh_test_mean']):>10}  {f(r['selection_gap']):>6}  "
              f"{fmt_params(r['params'])}")


def confirm_per_arm(plan: Plan, studies: dict[str, optuna.Study], url: str, *, seeds: int,
                    results: str | Path, run_options: dict[str, Any], objective: str) -> int:
    """Every arm of `studies` (arm -> its tuning study) at its own best params on seeds
    0..seeds-1, in one study paired by seed: the tuned-vs-tuned ablation. Writes per_arm.json
    (which trial each arm got) and prints the tuned params."""
    best = {arm: best_trials(study, 1)[0] for arm, study in studies.items()}
    name = per_arm_study_name(plan.study_name)
    out = Path(results) / name
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "spec.toml"
    if not write_confirm_spec(plan, spec_path, url, per_arm_spec_toml(plan.spec, best, seeds, objective)):
        return 2
    arms: list[dict[str, Any]] = [
        {"arm": arm, "tuning_study": studies[arm].study_name, "trial": trial_label(t), "selected": t.value,
         "params": dict(t.params), "untuned": {k: config_value(plan.configs[arm], k) for k in t.params}}
        for arm, t in best.items()]
    record = {"ablation_study": plan.study_name, "preset": plan.preset, "objective": objective,
              "seeds": list(range(seeds)), "storage": redact(url), "arms": arms}
    (out / PER_ARM_FILE).write_text(json.dumps(record, indent=2) + "\n")
    print(f"\neach arm at its own tuned params ({name}; selected on {objective}):")
    for row in arms:  # an arm whose best is its default runs it once, as it is: nothing doubled
        print(f"  {row['arm']:<18} trial {row['trial']:>4}  {score_text(row['selected'], objective):>24}  "
              f"{fmt_params(row['params'])}  "
              + ("(its default configuration)" if row["params"] == row["untuned"]
                 else f"(untuned {fmt_params(row['untuned'])})"))
    return run_confirmation(plan, spec_path, name, url, seeds=seeds, results=results, run_options=run_options,
                            what="every arm at its own tuned params")


def ran(spec_path: Path) -> bool:
    """Whether a confirmation spec's folder holds a confirmation that ran (its study.json)."""
    return spec_path.exists() and (spec_path.parent / "study.json").exists()


def confirmed_elsewise(plan: Plan, spec_path: Path, text: str) -> bool:
    """Whether `spec_path`'s folder holds a confirmation that ran (study.json) of another study
    than the spec `text` describes (another identity: other arms or params)."""
    if not ran(spec_path):
        return False

    def identity(spec_text: str) -> str:
        return parse_spec(tomllib.loads(spec_text), str(spec_path)).identity(plan.preset, plan.extra)

    return identity(spec_path.read_text()) != identity(text)


def write_confirm_spec(plan: Plan, spec_path: Path, url: str, text: str) -> bool:
    """Write a generated confirmation spec, unless its folder already holds a confirmation of
    other runs (the tuning's best changed since: more trials, a longer race, a changed spec).
    That confirmation is a record of what ran: its spec is left as it is, and the message says
    how to drop it, since the runner's own advice (--study NEW_NAME) would, for `tune`, start a
    new tuning as well. More seeds of the same params change no identity and go on."""
    if confirmed_elsewise(plan, spec_path, text):
        name = spec_path.parent.name
        print(f"error: {spec_path.parent} already confirms other params than the tuning's best now "
              f"(its spec.toml says which); the tuning has moved on since. It is kept as it ran. To "
              f"confirm the new best, drop the old confirmation first: optuna delete-study --study-name "
              f"{name} --storage {redact(url)} && rm -r {spec_path.parent}", file=sys.stderr)
        return False
    spec_path.write_text(text)
    return True


def run_confirmation(plan: Plan, spec_path: Path, name: str, url: str, *, seeds: int, results: str | Path,
                     run_options: dict[str, Any], what: str) -> int:
    """Run a generated confirmation spec through the runner on seeds 0..seeds-1, after printing
    the equivalent `study.run` command line (a rerun of it resumes the confirmation)."""
    options = {"seeds": seeds, "results": results, "study": name, "storage": url, **run_options}
    if plan.preset:
        options["preset"] = plan.preset
    print(f"confirming {what} on seeds 0..{seeds - 1}: seedwise run --spec {spec_path} " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in options.items() if v and k != "set"), file=sys.stderr)
    return run_plan(str(spec_path), **options)
