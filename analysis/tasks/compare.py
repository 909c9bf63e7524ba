"""A runs table with a ``task`` column: per-task verdicts, Holm over arms x tasks, then the
across-task block (`analysis.tasks.aggregates`, `analysis.tasks.meta`).

Each task is compared as a study of its own (`load.compare_arms`: pairs by seed within the task,
failures counted), then the primary-test p-values of every (arm, task) comparison form one Holm
family, so the familywise error over all arms x tasks is at most alpha (docs/statistics.md,
"Across tasks"). The across-task aggregates use every run that ran: a run that did not learn at
its final value, a diverged one at chance (or, with no chance level, at its task's worst).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import pandas as pd

from analysis._checks import collect_notes
from analysis.load import StudyData, compare_arms
from analysis.stats.family import Family, _holm_judged
from analysis.stats.metric_plan import MetricPlan
from analysis.tasks.aggregates import (
    Aggregate,
    Improvement,
    Normalised,
    aggregates,
    check_tasks,
    improvement,
    normalise,
    warn_few_tasks,
)
from analysis.tasks.meta import MetaAnalysis, Ranking, generalises, meta_family, rank_arms
from analysis.types import Note

TASK = "task"
RAN = ("learned", "not_learned", "diverged")  # outcomes of the recipe; "failed" is infrastructure


def has_tasks(runs: pd.DataFrame) -> bool:
    """Is this a table of several tasks (a ``task`` column with 2 or more values)?"""
    return TASK in runs.columns and runs[TASK].dropna().nunique() >= 2


@dataclass(frozen=True)
class AcrossTasks:
    tasks: tuple[str, ...]
    arms: tuple[str, ...]
    baseline: str
    normalised: Normalised
    aggregates: tuple[Aggregate, ...]
    improvements: tuple[Improvement, ...]  # each arm vs the baseline
    ranking: Ranking
    metas: tuple[MetaAnalysis, ...]
    runs: int  # runs the aggregates use
    failures: int  # of which did not learn or diverged
    alpha: float

    def verdict(self, arm: str) -> str:
        return generalises(next(m for m in self.metas if m.arm == arm), self.alpha)


@dataclass(frozen=True)
class TaskStudy:
    families: dict[str, Family]  # task -> its comparisons, p-values Holm over arms x tasks
    correction: str
    plan: MetricPlan
    across: AcrossTasks | None
    cannot: str | None  # why there is no across-task block
    notes: dict[str, tuple[Note, ...]] = field(default_factory=dict)  # task -> notes it raised

    def chances(self) -> dict[str, float | None]:
        """Each task's chance level (its own plan's: declared per task, or the study's)."""
        return {t: f.plan.chance if f.plan is not None else None for t, f in self.families.items()}


def compare_tasks(study: StudyData, *, rng=0, **kwargs) -> TaskStudy:
    """Per-task `compare_arms` (same keywords), Holm over all arms x tasks, and the across-task
    aggregates. Raises ValueError when a task cannot be compared (naming the task)."""
    runs = study.runs[study.runs[TASK].notna()]
    tasks = [str(t) for t in dict.fromkeys(runs[TASK].astype(str))]
    families: dict[str, Family] = {}
    declared = task_declarations(study.meta, tasks)
    notes: dict[str, tuple[Note, ...]] = {}
    for task in tasks:
        sub = replace(study, runs=runs[runs[TASK].astype(str) == task].drop(columns=TASK),
                      meta=_task_meta(study.meta, declared.get(task, {})))
        try:
            with collect_notes() as raised:  # kept per task: a note must say which task raised it
                families[task] = compare_arms(sub, rng=rng, **kwargs)
        except ValueError as exc:
            raise ValueError(f"task {task!r}: {exc}") from exc
        notes[task] = tuple(raised)
    plan = next(iter(families.values())).plan
    assert plan is not None  # compare_arms records the plan it used
    pooled = [c for f in families.values() for c in f.comparisons]
    planned = sum(f.planned for f in families.values())
    judged = iter(_holm_judged(pooled, alpha=plan.alpha, margin=plan.margin, planned=len(pooled)))
    correction = (f"Holm over the {len(pooled)} primary-test p-values of all arms x tasks "
                  f"({len(pooled)} judged of {planned} planned, {len(tasks)} tasks); TOST "
                  f"p-values likewise; familywise error <= {plan.alpha:g}; confidence intervals "
                  "unadjusted")
    families = {t: replace(f, comparisons=tuple(next(judged) for _ in f.comparisons),
                           correction=correction) for t, f in families.items()}
    frame = _scored(families)
    cannot = check_tasks(frame)
    chances = {t: f.plan.chance for t, f in families.items() if f.plan is not None}
    levels = set(chances.values())  # each task's own; one chance level for all only if they agree
    chance = levels.pop() if len(levels) == 1 else None if None in levels else chances
    reference = {t: d["reference"] for t, d in declared.items() if "reference" in d} or None
    across = None if cannot else across_tasks(frame, plan, rng=rng, chance=chance, reference=reference)
    return TaskStudy(families=families, correction=correction, plan=plan, across=across,
                     cannot=cannot, notes=notes)


def task_note_lines(ts: TaskStudy) -> list[str]:
    """The per-task comparisons' notes, each once with the tasks that raised it ("tasks d0, d2:
    ..."), in order of first appearance. A comparison not judged is left out: its task's
    verdicts list it."""
    tasks_of: dict[Note, list[str]] = {}
    for task, notes in ts.notes.items():
        for n in notes:
            if n.kind != "not_judged":
                tasks_of.setdefault(n, []).append(task)
    return [f"task{'s' if len(tasks) > 1 else ''} {', '.join(tasks)}: {n.text}"
            for n, tasks in tasks_of.items()]


def task_declarations(meta: dict, tasks: list[str]) -> dict[str, dict]:
    """study.json's per-task analysis declarations (`chance`, `reference`) of a study run with
    [tasks.NAME] tables (study.tasks); {} for a plain runs table."""
    declared = {t: (meta.get("tasks") or {}).get(t, {}).get("analysis") or {} for t in tasks}
    return {t: d for t, d in declared.items() if d}


def _task_meta(meta: dict, declared: dict) -> dict:
    """study.json as one task's study sees it: the task's chance level over the study's."""
    if "chance" not in declared:
        return meta
    return {**meta, "analysis": {**(meta.get("analysis") or {}), "chance": declared["chance"]}}


def _scored(families: dict[str, Family]) -> pd.DataFrame:
    """task, arm, seed, score, outcome of every run that ran (NaN score: diverged, unscored)."""
    parts = []
    for task, fam in families.items():
        c = fam.outcomes
        assert isinstance(c, pd.DataFrame)
        c = c[c["outcome"].isin(RAN)]
        parts.append(pd.DataFrame({"task": task, "arm": c["arm"].astype(str), "seed": c["seed"],
                                   "score": c["score"].astype(float), "outcome": c["outcome"]}))
    return pd.concat(parts, ignore_index=True)


def across_tasks(frame: pd.DataFrame, plan: MetricPlan, *, rng=0, chance=None,
                 reference=None) -> AcrossTasks:
    """The across-task aggregates of the scored runs under `plan` (baseline, direction, chance);
    `chance` (task -> value) and `reference` (task -> value), when given, are each task's own."""
    tasks = tuple(dict.fromkeys(frame["task"]))
    arms = tuple(dict.fromkeys([plan.baseline, *frame["arm"]]))
    warn_few_tasks(len(tasks))
    norm = normalise(frame, baseline=plan.baseline, direction=plan.direction,
                     chance=plan.chance if chance is None else chance, reference=reference)
    filled = norm.frame  # failures without a score are at their task's worst from here on
    return AcrossTasks(
        tasks=tasks, arms=arms, baseline=plan.baseline, normalised=norm,
        aggregates=tuple(aggregates(norm, arms, rng=rng)),
        improvements=tuple(improvement(norm, a, plan.baseline, rng=rng)
                           for a in arms if a != plan.baseline),
        ranking=rank_arms(filled, direction=plan.direction, alpha=plan.alpha, arms=arms),
        metas=tuple(meta_family(filled, arms, plan.baseline, direction=plan.direction)),
        runs=len(frame), failures=int((frame["outcome"] != "learned").sum()), alpha=plan.alpha)


def across_table(a: AcrossTasks) -> pd.DataFrame:
    """One row per arm: normalised mean and IQM (95% CIs), P(improvement) vs the baseline,
    average rank, the pooled per-task effect (CI, prediction interval), tau and I^2, verdict."""
    imp = {i.arm: i for i in a.improvements}
    meta = {m.arm: m for m in a.metas}
    rows = []
    for g in a.aggregates:
        m, i = meta.get(g.arm), imp.get(g.arm)
        rows.append({
            "arm": g.arm, "runs": g.runs, "mean": g.mean, "mean_ci": g.mean_ci, "iqm": g.iqm,
            "iqm_ci": g.iqm_ci, "p_improvement": i.probability if i else None,
            "p_improvement_ci": i.ci if i else None, "average_rank": a.ranking.average_rank[g.arm],
            "pooled_effect": m.pooled if m else None, "pooled_ci": m.ci if m else None,
            "p_adjusted": m.p_adjusted if m else None,
            "prediction": m.prediction if m else None,
            "tau": math.sqrt(m.tau2) if m and m.tau2 is not None else None,
            "i2": m.i2 if m else None, "q_pvalue": m.q_pvalue if m else None,
            "verdict": a.verdict(g.arm) if m else "baseline"})
    return pd.DataFrame(rows)

