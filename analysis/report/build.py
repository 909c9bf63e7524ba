"""`python -m analysis.report results/<study>`: the study's report, from its stored results.

    python -m analysis.report results/notebook-ablation-quick            # -> paper/<study>/
    python -m analysis.report results/notebook-ablation-quick --out DIR  # elsewhere
    python -m analysis.report results/my-study --no-note                 # leave Optuna alone

Writes ``report.md``, a self-contained ``report.html`` (figures embedded as base64 PNG),
``figures/*.png`` and ``tables/*.tex`` (booktabs) + ``tables/*.md``, and, when the study's Optuna
storage can be opened, refreshes what optuna-dashboard shows for it (`analysis.dashboard.panels`: the
verdict note, the metric name and the per-arm figures).
Every number in the text is computed here from the stored runs, never typed by hand.

`build_report` computes everything and returns a `Report` (figures, tables, text) without
touching the disk; only `write_report` and `main` write. Exit status: 0 written, 2 bad input
(one line on stderr).

The parts (this package): `context` computes the statistics once (`StudyAnalysis`), `sections`,
`methods`, `sequential`, `tuning`, `variance` and `tasks` turn them into the report's blocks
(`blocks`), `render` writes those as Markdown and HTML.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from analysis.invocation import usage_name

if TYPE_CHECKING:
    from analysis.dashboard.panels import DashboardData
    from analysis.load import StudyData
    from analysis.report.blocks import Report
    from analysis.report.context import StudyAnalysis

__all__ = ["build_report", "main", "write_report"]


def build_report(study: StudyData, *, rng=0, plan: Mapping | None = None) -> Report:
    """Compute every table, figure and sentence of the report (nothing is written).

    `plan` overrides the study's analysis plan: metric, baseline, alpha, margin, direction,
    chance, population (see `analysis.stats.metric_plan.resolve_plan`)."""
    from analysis.report.blocks import Report
    from analysis.report.context import analyse
    from analysis.report.sections import (
        design_section,
        figures_section,
        integrity_section,
        introduction,
        methods_section,
        provenance_section,
        results_section,
    )
    from analysis.report.sequential import sequential_section
    from analysis.report.tasks import tasks_report
    from analysis.report.tuning import tuning_section
    from analysis.report.variance import variance_section
    from analysis.tasks.compare import has_tasks

    if has_tasks(study.runs):  # per-task verdicts, then across tasks
        return tasks_report(study, rng=rng, plan=plan)
    analysis = analyse(study, rng=rng, plan=plan)
    rep = Report(study=study.name, title=f"Ablation report: {study.name}",
                 integrity=analysis.integrity)
    if analysis.family:
        rep.families["baseline"] = analysis.family
    if analysis.family_all:
        rep.families["all"] = analysis.family_all
    introduction(rep, analysis)
    design_section(rep, analysis)
    results_section(rep, analysis)
    sequential_section(rep, analysis.study.path)
    variance_section(rep, analysis.study.path)
    figures_section(rep, analysis)
    tuning_section(rep, analysis.study)
    methods_section(rep, analysis)
    integrity_section(rep, analysis)
    provenance_section(rep, analysis)
    rep.dashboard = _dashboard_data(analysis)
    rep.note = _note(rep, analysis)
    return rep


def _dashboard_data(analysis: StudyAnalysis) -> DashboardData:
    """What optuna-dashboard's per-arm figures are drawn from."""
    import pandas as pd

    from analysis.dashboard.panels import DashboardData
    from analysis.report.figures import metric_label

    plan = analysis.plan
    return DashboardData(runs=analysis.study.runs,
                         comparisons=(analysis.frame if analysis.family is not None
                                      else pd.DataFrame()),
                         arms=analysis.arms, baseline=plan.baseline, metric=plan.metric,
                         metric_label=metric_label(plan.metric), margin=plan.margin,
                         palette=analysis.palette)


def _note(rep: Report, analysis: StudyAnalysis) -> str:
    """The Optuna study note: the results table, its caption and the verdicts."""
    from analysis.dashboard.panels import note_text
    from analysis.report.tables import to_markdown

    df, caption = rep.tables["results"]
    verdicts = [f"**{c.arm_name}: {c.verdict.label}.** {c.verdict.reason}"
                for c in analysis.family.comparisons] if analysis.family is not None else []
    verdicts += [f"**{a}: not judged.** {why}" for a, why in analysis.unjudged.items()
                 if a != analysis.plan.baseline]
    return note_text(to_markdown(df), caption, verdicts, name=analysis.study.name,
                     flags=rep.integrity.get("flags", ()))


def write_report(results_dir: str | Path, out: str | Path | None = None, *, note: bool = True,
                 dpi: int = 150, rng=0, log=print, plan: Mapping | None = None) -> list[Path]:
    """Build the report of `results_dir` and write it to `out` (default ``paper/<study>/``).

    Returns the paths written. With `note`, also writes the verdict note and the per-arm
    figures into the study's Optuna storage (`analysis.dashboard.panels.publish`; skipped, with a
    message through `log`, when unavailable).
    Raises `StudyNotFound` when `results_dir` holds no runs.csv.
    """
    from analysis.dashboard.panels import publish
    from analysis.load import load_study
    from analysis.report.render import render_html, render_markdown
    from analysis.report.tables import to_latex, to_markdown

    study = load_study(results_dir)
    rep = build_report(study, rng=rng, plan=plan)
    out = Path(out) if out is not None else Path("paper") / rep.study
    (out / "figures").mkdir(parents=True, exist_ok=True)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    pngs = {}
    for key, (fig, _) in rep.figures.items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        pngs[key] = buf.getvalue()
        path = out / "figures" / f"{key}.png"
        path.write_bytes(pngs[key])
        written.append(path)
    for key, (df, caption) in rep.tables.items():
        tex = out / "tables" / f"{key}.tex"
        tex.write_text(to_latex(df, caption=caption, label=f"tab:{key}"), encoding="utf-8")
        md = out / "tables" / f"{key}.md"
        md.write_text(f"*{caption}*\n\n" + to_markdown(df), encoding="utf-8")
        written += [tex, md]
    md = out / "report.md"
    md.write_text(render_markdown(rep), encoding="utf-8")
    page = out / "report.html"
    page.write_text(render_html(rep, pngs), encoding="utf-8")
    written += [md, page]
    if note and study.meta.get("tasks"):  # study.json of a study of several tasks
        log("skipped the Optuna note: each task of this study is an Optuna study of its own "
            "(report on tasks/<task>/ to note one)")
    elif note:
        log(publish(study.storage_url, study.meta.get("study", study.path.name), rep.note,
                    rep.dashboard))
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=usage_name("analysis.report"),
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Exit status: 0 written, 2 bad input.")
    p.add_argument("results", help="the study's results directory (results/<study>/), its runs.csv, "
                   "or any CSV with columns arm, seed, <metric> (status optional)")
    p.add_argument("--metric", help="column to analyse (default: the study's plan, test_acc)")
    p.add_argument("--baseline", help="reference arm (default: the study's plan)")
    p.add_argument("--alpha", type=float, help="significance level (default: the plan's, 0.05)")
    p.add_argument("--margin", type=float, help="equivalence margin in the metric's units")
    p.add_argument("--direction", choices=["maximize", "minimize"], help="is higher better?")
    p.add_argument("--chance", type=float, help="the metric's value at chance, in its units")
    p.add_argument("--failures", choices=["all", "learned"],
                   help="mean over all runs (default) or only runs that learned")
    p.add_argument("--out", help="output directory (default: paper/<study>/)")
    p.add_argument("--no-note", action="store_true",
                   help="leave the Optuna study alone (no verdict note, no dashboard figures)")
    p.add_argument("--dpi", type=int, default=150, help="resolution of the PNG figures")
    args = p.parse_args(argv)
    from analysis.load import StudyNotFound

    try:
        plan = {k: getattr(args, k) for k in ("metric", "baseline", "alpha", "margin",
                                              "direction", "chance")}
        plan["population"] = args.failures
        paths = write_report(args.results, args.out, note=not args.no_note, dpi=args.dpi,
                             plan={k: v for k, v in plan.items() if v is not None})
    except StudyNotFound as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:  # unreadable files, malformed study.json or CSVs
        print(f"error: {args.results}: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
