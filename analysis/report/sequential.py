"""The report's section for a study run with `--until-decided`: the pre-registered plan, each
comparison's look history (n, statistic against its boundaries, the decision) and the path of
the statistic against the boundaries, read from the study's sequential.json."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.formatting import significant
from analysis.report.blocks import Bullets, Heading, Para, Report
from analysis.report.figures import new_figure
from analysis.sequential.plan import SequentialPlan
from analysis.sequential.record import read_record


def looks_table(record: dict) -> pd.DataFrame:
    """One row per look of each comparison: what was known then, and what was decided."""
    rows = []
    for c in record["comparisons"]:
        for k in c["looks"]:
            low, high = (significant(x, signed=True) for x in k["ci"])
            rows.append({
                "comparison": f"{c['arm']} vs {c['baseline']}", "seeds per arm": int(k["seeds"]),
                "pairs": int(k["n"]), "Δ": significant(k["diff"], signed=True),
                "repeated CI": f"[{low}, {high}]",
                "t": significant(k["statistic"], signed=True),
                "|t| bound": significant(k["bound"], signed=True),
                "level (Holm)": significant(k["level"]),
                "equivalence t / bound": f"{significant(k['equivalence_statistic'], signed=True)} / "
                                         f"{significant(k['equivalence_bound'], signed=True)}",
                "decision": k["decision"]})
    return pd.DataFrame(rows)


def summary_lines(record: dict) -> list[str]:
    lines = []
    for c in record["comparisons"]:
        lines.append(f"**`{c['arm']}` vs `{c['baseline']}`: {c['decision']}** after {c['n']} paired seeds. "
                     f"{c['reason']}")
    return lines


def path_figure(record: dict) -> Figure:
    """Each comparison's paired t at every look against the boundaries it had to cross."""
    comps = [c for c in record["comparisons"] if c["looks"]]
    fig = new_figure(figsize=(3.2 * max(1, len(comps)), 3.0))
    axes = fig.subplots(1, max(1, len(comps)), squeeze=False)
    for ax, c in zip(axes[0], comps, strict=False):
        n = [k["n"] for k in c["looks"]]
        t = np.clip([k["statistic"] if k["statistic"] is not None else np.nan for k in c["looks"]], -20, 20)
        bound = [k["bound"] for k in c["looks"]]
        ax.fill_between(n, bound, 20, color="0.9", step="mid")
        ax.fill_between(n, -20, np.negative(bound), color="0.9", step="mid")
        ax.plot(n, bound, "k--", lw=1, drawstyle="steps-mid", label="|t| boundary")
        ax.plot(n, np.negative(bound), "k--", lw=1, drawstyle="steps-mid")
        ax.plot(n, t, "o-", color="C0", label="paired t")
        ax.axhline(0, color="0.5", lw=0.5)
        ax.set_ylim(-max(8, np.nanmax(np.abs(t)) * 1.1), max(8, np.nanmax(np.abs(t)) * 1.1))
        ax.set_xticks(n)
        ax.set_title(f"{c['arm']}: {c['decision']}", fontsize=9)
        ax.set_xlabel("paired seeds at the look")
    axes[0][0].set_ylabel("paired t (clipped at ±20)")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def sequential_section(rep: Report, results_dir: Path) -> None:
    """The report's subsection for a study run with ``--until-decided``; nothing otherwise."""
    record = read_record(results_dir)
    if record is None:
        return
    rep.add(Heading("Seeds until decided (pre-registered sequential plan)", level=3))
    deviations = record.get("deviations") or []
    rep.add(Para(record["methods"] + (
        " **Deviations from the pre-registered plan:** " + "; ".join(deviations) + "."
        if deviations else " The plan was not changed after the first run.")))
    rep.add(Bullets(tuple(summary_lines(record))))
    rep.add_table("looks", looks_table(record), "Every look of every comparison: pairs, "
                  "difference with its repeated CI, paired t against the boundary at the Holm "
                  "level then in force, the equivalence statistic against its bound, and the "
                  "decision.")
    rep.add_figure("sequential", path_figure(record), "Paired t of each comparison at every look "
                   "against its boundaries (shaded: reject); a comparison stops at its first "
                   "crossing or when equivalence is shown.")


def task_records(study_dir: Path, meta: Mapping[str, Any]) -> dict[str, dict]:
    """Each task's sequential record in a study of several tasks (study.json's ``tasks``: each
    task's folder); empty when no task was run until decided."""
    out = {}
    for task, about in (meta.get("tasks") or {}).items():
        folder = about.get("folder") if isinstance(about, Mapping) else None
        record = read_record(Path(study_dir) / folder) if isinstance(folder, str) else None
        if record is not None:
            out[task] = record
    return out


def tasks_alpha_lines(records: Mapping[str, dict], tasks: int) -> list[str]:
    """One line per task run until decided (its alpha and decisions), then the bound on the
    familywise error over arms x tasks: the sum of the alphas the tasks' plans spend."""
    lines, spent = [], 0.0
    for task, record in records.items():
        try:
            plan = SequentialPlan.from_dict(record["plan"])
        except (KeyError, TypeError, ValueError) as e:
            lines.append(f"{task}: plan not readable ({e})")
            continue
        spent += plan.alpha
        old = " (registered before alpha was split over tasks)" if tasks > 1 and plan.study_alpha is None else ""
        decided = ", ".join(f"{c['arm']} {c['decision']} at {c['n']} pairs" for c in record["comparisons"])
        lines.append(f"{task}: {plan.alpha_text()}{old}; {decided}")
    if lines and tasks > 1:
        lines.append(f"familywise error of the sequential claims over arms x tasks <= {min(1.0, spent):g}"
                     + ("" if len(records) == tasks else f" (the {len(records)} of {tasks} tasks run until decided)"))
    return lines
