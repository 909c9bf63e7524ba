"""The report's "Across tasks" section: present only when the runs table has a ``task`` column
with 2 or more tasks (`analysis.tasks.compare`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from analysis._checks import collect_notes
from analysis.formatting import interval, number, percent, significant
from analysis.load import StudyData
from analysis.report.blocks import Heading, Para, Report
from analysis.tasks.compare import (
    TaskStudy,
    across_table,
    compare_tasks,
    has_tasks,
    task_note_lines,
)
from analysis.types import Note


def tasks_report(study: StudyData, *, rng=0, plan: Mapping[str, Any] | None = None) -> Report:
    """The report of a study whose runs have 2 or more tasks: each task's verdicts (Holm over
    arms x tasks), then the across-task section. `plan`: `build_report`'s overrides."""
    from analysis.dashboard.panels import note_text
    from analysis.report.tables import to_markdown

    overrides = dict(plan or {})
    if "population" in overrides:
        overrides["failures"] = overrides.pop("population")
    rep = Report(study=study.name, title=f"Ablation report: {study.name}")
    rep.add(Heading("Per-task verdicts"))
    try:
        computed = _compared(study, rng=rng, **overrides)
    except ValueError as e:  # one task that cannot be compared: said, never a traceback
        rep.add(Para(f"Not computed: {e}"))
        return rep
    ts = computed[0]
    table = per_task_table(ts)
    caption = (f"Each arm minus {ts.plan.baseline} on each task, {ts.plan.metric}: difference "
               f"[95% CI], the primary test's p and its p adjusted over arms x tasks ({ts.correction}), "
               "and the verdict.")
    rep.add_table("per_task", table, caption)
    sequential_tasks_section(rep, study)
    across_tasks_section(rep, study, rng=rng, computed=computed)
    rep.note = note_text(to_markdown(table), caption, [f"**{note_line(ts)}**"] if ts.across else [],
                         name=study.name)
    return rep


def sequential_tasks_section(rep: Report, study: StudyData) -> None:
    """Each task run until decided: the alpha its plan spent and its decisions; nothing otherwise."""
    from analysis.report.blocks import Bullets
    from analysis.report.sequential import task_records, tasks_alpha_lines

    records = task_records(study.path, study.meta)
    if not records:
        return
    rep.add(Heading("Seeds until decided, per task", level=3))
    rep.add(Para("Each task's study was run until decided under its own pre-registered plan (its "
                 "report: `seedwise report` on the task's folder). The study's alpha is split over "
                 "its tasks (Bonferroni), so the sequential claims over arms x tasks keep the "
                 "familywise error at the study's alpha; the table above treats the final seeds "
                 "as a fixed sample."))
    rep.add(Bullets(tuple(tasks_alpha_lines(records, len(study.meta.get("tasks") or {})))))


def _compared(study: StudyData, *, rng=0, **overrides) -> tuple[TaskStudy, list[Note]]:
    """`compare_tasks` and the notes of its across-task block."""
    with collect_notes() as notes:
        ts = compare_tasks(study, rng=rng, **overrides)
    return ts, notes


def per_task_table(ts: TaskStudy) -> pd.DataFrame:
    """One row per (task, arm) comparison, as text cells."""
    from analysis.load import family_frame

    rows = []
    for task, fam in ts.families.items():
        for r in family_frame(fam, ts.plan.metric).itertuples():
            rows.append({"task": task, "arm": r.arm,
                         "difference [CI]": f"{number(r.diff, signed=True)} "
                                            f"{interval(r.ci_low, r.ci_high, signed=True)}",
                         "p": significant(r.p_value), "adjusted p": significant(r.p_adjusted),
                         "verdict": r.verdict})
        rows += [{"task": task, "arm": n.arm, "difference [CI]": "", "p": "", "adjusted p": "",
                  "verdict": f"not judged: {n.reason}"} for n in fam.not_judged]
    return pd.DataFrame(rows)


def across_tasks_section(rep: Report, study: StudyData, *, rng=0,
                         computed: tuple[TaskStudy, list[Note]] | None = None) -> TaskStudy | None:
    """Aggregate table, performance profile and critical-difference diagram; returns the
    analysis (None when the study has no tasks) so the dashboard note can summarise it.
    `computed`: `_compared(study, ...)` already run by the caller."""
    if not has_tasks(study.runs):
        return None
    from analysis.compare import chance_per_task
    from analysis.report.figures.tasks import critical_difference_figure, profile_figure
    from analysis.tasks.aggregates import profile

    rep.add(Heading("Across tasks"))
    try:
        ts, notes = computed or _compared(study, rng=rng)
    except ValueError as e:  # one task that cannot be compared must not cost the report
        rep.add(Para(f"Not computed: {e}"))
        return None
    if ts.across is None:
        rep.add(Para(f"Not computed: {ts.cannot}."))
        return ts
    a = ts.across
    rep.add(Para(
        f"{len(a.tasks)} tasks, {a.runs} runs ({a.failures} did not learn or diverged; they are "
        f"counted, at chance ({chance_per_task(ts.chances())}) or their final value"
        + (f", {a.normalised.filled} with no chance level at their task's worst" if a.normalised.filled
           else "") + f"). Per-task verdicts: {ts.correction}. Scores are normalised per task: "
        f"{a.normalised.description}. Mean and IQM with 95% stratified bootstrap intervals "
        "(runs resampled within each task); P(improvement) over the baseline (rliable); the "
        "per-task paired effect (Hodges-Lehmann) averaged over tasks with a t-test over "
        "tasks, each weighing alike, and its spread from a DerSimonian-Laird random-effects "
        "model: tau (the spread of the true effect across tasks), I^2 and a 95% prediction "
        "interval for a new task." + "".join(f" Note: {line}" for line in [*task_note_lines(ts), *(n.text for n in notes)])))
    rep.add_table("across_tasks", summary_table(across_table(a)),
                  "Across tasks: normalised mean and IQM [95% CI], P(arm > baseline), average "
                  "rank (1 = best), pooled per-task effect in metric units [95% CI], prediction "
                  "interval, tau, I^2 and the verdict.")
    rep.add_figure("performance_profile", profile_figure(profile(a.normalised, list(a.arms), rng=rng)),
                   "Performance profile: fraction of runs over all tasks whose normalised score "
                   "exceeds tau, with 95% stratified bootstrap bands.")
    rep.add_figure("critical_difference", critical_difference_figure(a.ranking),
                   "Critical-difference diagram: average rank over tasks; a bar joins arms whose "
                   "ranks differ by less than Nemenyi's critical difference.")
    return ts


def summary_table(t: pd.DataFrame) -> pd.DataFrame:
    """`across_table` as text cells."""
    def ci(v, digits=2, signed=False):
        return interval(v[0], v[1], digits, signed=signed) if isinstance(v, tuple) else "n/a"
    return pd.DataFrame({
        "arm": t["arm"],
        "mean [CI]": [f"{number(m, 3)} {ci(c, 3)}" for m, c in zip(t["mean"], t["mean_ci"], strict=True)],
        "IQM [CI]": [f"{number(m, 3)} {ci(c, 3)}" for m, c in zip(t["iqm"], t["iqm_ci"], strict=True)],
        "P(> baseline)": [f"{number(p)} {ci(c)}" if isinstance(c, tuple) else "" for p, c in
                          zip(t["p_improvement"], t["p_improvement_ci"], strict=True)],
        "avg rank": [number(r) for r in t["average_rank"]],
        "pooled effect [CI]": [f"{number(e, signed=True)} {ci(c, signed=True)}" if isinstance(c, tuple)
                               else "" for e, c in zip(t["pooled_effect"], t["pooled_ci"], strict=True)],
        "prediction": [ci(p, signed=True) if isinstance(p, tuple) else "" for p in t["prediction"]],
        "tau": [significant(x) if x is not None else "" for x in t["tau"]],
        "I^2": [percent(x) if x is not None else "" for x in t["i2"]],
        "verdict": t["verdict"],
    })


def note_line(ts: TaskStudy | None) -> str:
    """One line for the dashboard note ("" when there is no across-task block)."""
    if ts is None or ts.across is None:
        return ""
    a = ts.across
    parts = [f"{m.arm}: {a.verdict(m.arm)}" for m in a.metas]
    return f"Across {len(a.tasks)} tasks: " + "; ".join(parts) + "."
