"""`python -m study.run --until-decided`: add seeds, look after look, only where the answer is open.

The statistics (a group-sequential paired t with alpha spending, Holm across comparisons, and
why) are `analysis.sequential.decide`'s; this module only drives the runner with them:

1. The plan (first look, looks every k seeds, maximum, alpha, margin, spending) is fixed
   before the first run and stored in the Optuna study (user attr ``sequential_plan``), so
   every worker, on any machine, and every rerun uses the pre-registered plan. A rerun asking
   for another plan keeps the stored one and says how it differs: a deviation is reported,
   never silently adopted (`--replan` adopts it and records the deviation in sequential.json).
   In a study of several tasks each task's plan spends its share of the study's alpha
   (`analysis.sequential.plan.task_share`), recorded in the plan (``tasks``, ``study_alpha``).
2. Look by look: train the seeds the open comparisons need (the baseline while any of its
   comparisons is open), wait until every run of the look is final, then decide. A failed
   run (an exception, retried on the next invocation) holds its look: deciding without it,
   and with it after a retry, could differ, so the command stops with exit 1 and the rerun
   goes on from the same look. Runs other workers hold are waited for.
3. `analysis.sequential.decide` reads only the first n_k seeds of each arm at look k, so the
   decisions are a function of the stored runs alone: a killed and resumed study, or several
   workers, reach exactly the decisions of one uninterrupted process.

Values are scored as the fixed-n analysis scores them (`analysis.stats.failures`): a run that did
not learn counts with its value, a diverged run at chance, so failures are outcomes here too.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from analysis.contract import SEQUENTIAL_FILE
from analysis.formatting import significant
from analysis.load import load_study
from analysis.sequential.decide import SequentialResult, decide, next_seeds, paired_differences
from analysis.sequential.plan import SequentialPlan, plan_deviations, task_share
from analysis.stats import failures
from study.plan import UsageError
from study.spec import SpecError
from study.store import write_if_changed

PLAN_ATTR = "sequential_plan"  # the pre-registered plan, as a user attr of the Optuna study
DEVIATIONS_ATTR = "sequential_deviations"  # every adopted change of it, in order
WAIT_SECONDS = 2.0  # how often to look again while other workers finish a look's runs


def requested_plan(plan, first_look: int, look_every: int | None, max_seeds: int | None) -> SequentialPlan:
    """The plan asked for by the spec's `[analysis] sequential` table and the options, checked
    before anything is stored: a bad value is a UsageError naming the option or spec key."""
    analysis, spec_seq = plan.spec.analysis, dict(plan.spec.sequential or {})
    baseline = analysis.baseline
    if baseline not in plan.arms:
        raise UsageError(f"--until-decided needs the baseline {baseline!r} among --arms")
    arms = tuple(a for a in plan.arms if a != baseline)
    if not arms:
        raise UsageError("--until-decided needs at least one arm besides the baseline")
    looks = {}  # key: (value, where it came from), the option winning over the spec over the default
    for key, given, option, default in (("first_look", None, "--seeds", first_look),
                                        ("look_every", look_every, "--look-every", 5),
                                        ("max_seeds", max_seeds, "--max-seeds", 40)):
        if given is not None:
            looks[key] = (given, option)
        elif key in spec_seq:
            looks[key] = (spec_seq[key], f"{plan.spec.source}: [analysis] sequential {key}")
        else:
            looks[key] = (default, option if key == "first_look" else f"{option} (default {default})")
    minimum = {"first_look": 2, "look_every": 1, "max_seeds": looks["first_look"][0]}
    for key, (value, where) in looks.items():
        if type(value) is not int or value < minimum[key]:
            why = " (the first look's seeds per arm)" if key == "max_seeds" else ""
            raise UsageError(f"{where} must be an integer >= {minimum[key]}{why} for --until-decided, got {value!r}")
    # One of several tasks' studies: its share of the study's alpha (task_share owns the rule).
    share = task_share(analysis.alpha, len(plan.spec.tasks) if plan.spec.task is not None else 1)
    try:
        return SequentialPlan(
            baseline=baseline, arms=arms, metric=analysis.metric, direction=analysis.direction_of(),
            alpha=share.alpha, tasks=share.tasks, study_alpha=share.study_alpha, margin=analysis.margin, first_look=looks["first_look"][0],
            look_every=looks["look_every"][0], max_seeds=looks["max_seeds"][0],
            spending=spec_seq.get("spending", "power"), spending_param=spec_seq.get("spending_param", 1.0))
    except ValueError as e:  # the spec's spending, or its [analysis] values
        raise SpecError(f"{plan.spec.source}: [analysis] sequential: {e}") from None


def pre_register(store, requested: SequentialPlan, replan: bool) -> tuple[SequentialPlan, list[str]]:
    """The plan in force: the stored one (stored now if there is none), and how the requested
    plan deviates from it."""
    stored = store.study.user_attrs.get(PLAN_ATTR)
    if stored is None:
        store.study.set_user_attr(PLAN_ATTR, requested.to_dict())
        return requested, []
    stored_plan = SequentialPlan.from_dict(stored)
    deviations = plan_deviations(stored_plan, requested)
    if deviations and replan:
        history = list(store.study.user_attrs.get(DEVIATIONS_ATTR, [])) + deviations
        store.study.set_user_attr(DEVIATIONS_ATTR, history)
        store.study.set_user_attr(PLAN_ATTR, requested.to_dict())
        return requested, deviations
    return stored_plan, deviations


def alpha_lines(seq: SequentialPlan, requested: SequentialPlan) -> list[str]:
    """What the end of a task's run says about its alpha: the split over the study's tasks, or
    that its plan was registered spending the whole alpha (before the split) and keeps it."""
    if seq.study_alpha is not None:
        return [f"sequential: {seq.alpha_text()} (Bonferroni: familywise error over arms x tasks "
                f"<= {seq.study_alpha:g})"]
    if requested.study_alpha is not None:
        return [f"warning: this task's sequential plan was registered spending the whole alpha "
                f"{seq.alpha:g} (before alpha was split over tasks) and keeps it: the familywise error "
                f"over arms x tasks is bounded by the sum of the {requested.tasks} tasks' alphas, not "
                f"{requested.study_alpha:g}; --replan adopts {requested.alpha_text()}"]
    return []


def stored_values(results_dir: Path, seq: SequentialPlan, first_seed: int) -> dict[str, dict[int, float]]:
    """{arm: {seed position: scored value}} from the exported runs.csv, failures scored as the
    fixed-n analysis scores them (did not learn: its value; diverged: chance)."""
    study = load_study(results_dir)
    if seq.metric not in study.runs.columns:  # nothing stored yet: the first look is still to come
        return {}
    _, classified = study.analysed(study.metric_plan())
    values = {}
    for arm in (seq.baseline, *seq.arms):
        series = failures.scored(classified, arm, "all")
        values[arm] = {int(s) - first_seed: float(v) for s, v in series.items() if int(s) >= first_seed}
    return values


def look_todo(targets: dict[str, int], first_seed: int, done: set[tuple[str, int]]) -> list[tuple[str, int]]:
    return [(arm, first_seed + i) for i in range(max(targets.values(), default=0))
            for arm, n in targets.items() if i < n and (arm, first_seed + i) not in done]


def run_until_decided(plan, store, runner, jobs: int, seq: SequentialPlan, run_all, export) -> tuple[int, SequentialResult]:
    """Run looks until every comparison is decided or at its maximum; returns (failed runs,
    the last decision). `run_all` and `export` are the runner's (passed in to avoid a cycle)."""
    first = plan.spec.first_seed
    last_look = None
    while True:
        export(store)
        result = decide(seq, paired_differences(seq, stored_values(plan.results_dir, seq, first)))
        write_record(plan.results_dir, seq, store.study.user_attrs.get(DEVIATIONS_ATTR, []), result)
        if result.next_look != last_look and result.next_look is not None:
            print_look(result, seq)
        last_look = result.next_look
        targets = next_seeds(result)
        if not targets:
            return 0, result
        todo = look_todo(targets, first, store.done())
        if todo:
            look_plan = dataclasses.replace(plan, seeds=tuple(range(first, first + max(targets.values()))))
            failed = run_all(look_plan, store, todo, runner, jobs)
            if failed:
                print(f"look at {result.next_look} seeds per arm: {failed} run(s) failed; the look waits for "
                      "them (rerun the same command to retry, and the study goes on from this look)",
                      file=sys.stderr)
                return failed, result
            if any(r not in store.done() for r in todo):
                time.sleep(WAIT_SECONDS)  # held by other workers: wait for them to store the look
        else:  # every run of the look is stored, yet the look is not reached: never spin
            print(f"look at {result.next_look} seeds per arm: every run is stored but the look cannot be "
                  f"made (see {plan.results_dir / 'runs.csv'}); stopping", file=sys.stderr)
            return 0, result


def print_look(result: SequentialResult, seq: SequentialPlan) -> None:
    lines = [f"look: {c.arm} vs {c.baseline}: {c.decision} at {c.n} pairs"
             + (f", diff {significant(c.diff, signed=True)} [{significant(c.ci.low, signed=True)}, "
                f"{significant(c.ci.high, signed=True)}]" if c.diff is not None and c.ci else "")
             for c in result.comparisons if c.n]
    if result.next_look is not None:
        lines.append(f"next look at {result.next_look} seeds per arm (max {seq.max_seeds}) for "
                     f"{', '.join(a for a in next_seeds(result))}")
    for line in lines:
        print(line, file=sys.stderr)


def comparison_record(c) -> dict[str, Any]:
    looks = [{"seeds": k.seeds, "n": k.n, "diff": k.diff, "statistic": k.statistic, "bound": k.bound,
              "level": k.level, "equivalence_statistic": k.equivalence_statistic,
              "equivalence_bound": k.equivalence_bound, "ci": [k.ci.low, k.ci.high], "decision": str(k.decision)}
             for k in c.looks]
    return {"arm": c.arm, "baseline": c.baseline, "decision": str(c.decision), "reason": c.reason,
            "seeds": c.seeds, "n": c.n, "diff": c.diff, "ci": [c.ci.low, c.ci.high] if c.ci else None,
            "p_value": c.pvalue, "p_adjusted": c.p_adjusted, "equivalence_p_adjusted": c.equivalence_p_adjusted,
            "alpha_spent": c.alpha_spent, "looks": looks, "notes": list(c.notes)}


def write_record(results_dir: Path, seq: SequentialPlan, deviations: list[str], result: SequentialResult) -> None:
    """sequential.json: what the report shows (plan, deviations, each comparison's looks)."""
    record = {"plan": seq.to_dict(), "methods": seq.methods_text(), "deviations": deviations,
              "next_look": result.next_look, "comparisons": [comparison_record(c) for c in result.comparisons]}
    write_if_changed(results_dir / SEQUENTIAL_FILE, (json.dumps(record, indent=2, default=_json_default) + "\n").encode())


def _json_default(value):
    if hasattr(value, "item"):  # numpy scalars
        return float(value)
    raise TypeError(f"cannot store {type(value).__name__} in {SEQUENTIAL_FILE}")
