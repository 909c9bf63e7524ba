"""`python -m analysis.compare` on a runs table with a ``task`` column: text and ``--json``."""

from __future__ import annotations

import json
import sys

from analysis._checks import collect_notes
from analysis.formatting import interval, number, percent, significant
from analysis.load import StudyData, family_frame, family_records
from analysis.tasks.compare import (
    AcrossTasks,
    TaskStudy,
    across_table,
    compare_tasks,
    task_note_lines,
)


def print_tasks(study: StudyData, args) -> int:
    with collect_notes() as notes:  # those of the across-task block; per task: `ts.notes`
        ts = compare_tasks(study, metric=args.metric, baseline=args.baseline, pairs=args.pairs,
                           alpha=args.alpha, margin=args.margin, rng=args.seed,
                           direction=args.direction, chance=args.chance, failures=args.failures)
    for line in [*task_note_lines(ts), *(n.text for n in notes)]:
        print(f"warning: {line}", file=sys.stderr)
    if args.json:
        for record in json_records(ts):
            print(json.dumps(record))
        return 0
    from analysis.compare import comparison_lines, plan_terms

    plan = ts.plan
    print(f"{study.name}: {plan.metric} over {len(ts.families)} tasks ({plan_terms(plan, ts.chances())})")
    print(f"Multiplicity: {ts.correction}.")
    for task, fam in ts.families.items():
        print(f"\n== task {task}: {fam.size_text()}")
        print("\n".join(comparison_lines(family_frame(fam, plan.metric), fam)))
    print()
    for line in across_lines(ts):
        print(line)
    return 0


def across_lines(ts: TaskStudy) -> list[str]:
    """The across-task block of the text output."""
    if ts.across is None:
        return [f"Across tasks: not computed: {ts.cannot}."]
    a = ts.across
    lines = [f"== Across {len(a.tasks)} tasks ({a.runs} runs, {a.failures} of them did not learn or "
             f"diverged, counted{_filled(a)}); normalised score: {a.normalised.description}"]
    for row in across_table(a).itertuples():
        pi_ci = row.p_improvement_ci
        lines.append(f"{row.arm}: mean {number(row.mean, 3)} {_ci(row.mean_ci, 3)}, IQM "
                     f"{number(row.iqm, 3)} {_ci(row.iqm_ci, 3)}, average rank "
                     f"{number(row.average_rank)}"
                     + (f"; P({row.arm} > {a.baseline}) = {number(row.p_improvement)} "
                        f"{_ci(pi_ci)}" if isinstance(pi_ci, tuple) else ""))
        if row.arm == a.baseline:
            continue
        m = next(x for x in a.metas if x.arm == row.arm)
        if m.cannot:
            lines.append(f"  meta-analysis: cannot: {m.cannot}")
        else:
            pi = _ci(m.prediction, signed=True) if m.prediction else "n/a (< 3 tasks)"
            lines.append(
                f"  per-task effect {row.arm} - {a.baseline} (Hodges-Lehmann), mean over tasks (t): "
                f"{number(m.pooled, signed=True)} {_ci(m.ci, signed=True)}, Holm p = "
                f"{significant(m.p_adjusted)}; prediction interval for a new task {pi}; "
                f"tau = {significant(row.tau)}, I^2 = {percent(m.i2)}, Q p = {significant(m.q_pvalue)}")
        for note in m.notes:
            lines.append(f"  note: {note}")
        lines.append(f"  across tasks: {a.verdict(row.arm)}")
    r = a.ranking
    if r.cannot:
        lines.append(f"Ranking (Friedman + Nemenyi): {r.cannot}.")
    else:
        lines.append(f"Ranking over {r.tasks} tasks: Friedman chi2 = {number(r.statistic)}, p = "
                     f"{significant(r.pvalue)}; Nemenyi critical difference {number(r.critical_difference)} "
                     f"(arms whose average ranks differ by less are not told apart)")
    return lines


def _ci(bounds, digits: int = 2, *, signed: bool = False) -> str:
    low, high = bounds
    return interval(low, high, digits, signed=signed)


def _filled(a: AcrossTasks) -> str:
    n = a.normalised.filled
    return f"; {n} diverged with no chance level, set to their task's worst" if n else ""


def json_records(ts: TaskStudy) -> list[dict]:
    """Per-task comparison objects (with ``task``), then one ``across_tasks`` object per arm
    and one for the ranking."""
    out = []
    for task, fam in ts.families.items():
        out += [{"task": task, **r, "correction": ts.correction}
                for r in family_records(fam, ts.plan.metric)]
    if ts.across is None:
        return [*out, {"across_tasks": True, "cannot": ts.cannot}]
    a = ts.across
    for row in across_table(a).to_dict(orient="records"):
        m = next((x for x in a.metas if x.arm == row["arm"]), None)
        out.append({"across_tasks": True, "baseline": a.baseline, "tasks": list(a.tasks),
                    "normalised": a.normalised.description, "failures": a.failures,
                    "failures_filled": a.normalised.filled, **_plain(row),
                    "notes": list(m.notes) if m else [], "cannot": m.cannot if m else None})
    r = a.ranking
    out.append({"ranking": True, "tasks": r.tasks, "average_rank": r.average_rank,
                "friedman": r.statistic, "p_value": r.pvalue,
                "critical_difference": r.critical_difference, "cannot": r.cannot,
                "nemenyi": None if r.nemenyi is None else r.nemenyi.to_dict()})
    return out


def _plain(row: dict) -> dict:
    """JSON-ready values: tuples as lists, NaN as None."""
    def one(v):
        if isinstance(v, tuple):
            return [one(x) for x in v]
        if isinstance(v, float) and v != v:
            return None
        return v
    return {k: one(v) for k, v in row.items()}
