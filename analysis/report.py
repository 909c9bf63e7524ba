"""`python -m analysis.report results/<study>`: the study's report, from its stored results.

    python -m analysis.report results/notebook-ablation-quick            # -> paper/<study>/
    python -m analysis.report results/notebook-ablation-quick --out DIR  # elsewhere
    python -m analysis.report results/my-study --no-note                 # leave Optuna alone

Writes ``report.md``, a self-contained ``report.html`` (figures embedded as base64 PNG),
``figures/*.png`` and ``tables/*.tex`` (booktabs) + ``tables/*.md``, and, when the study's Optuna
storage can be opened, refreshes what optuna-dashboard shows for it (`analysis.dashboard`: the
verdict note, the metric name and the per-arm figures).
Every number in the text is computed here from the stored runs, never typed by hand.

`build_report` computes everything and returns a `Report` (figures, tables, text) without
touching the disk; only `write_report` and `main` write. Exit status: 0 written, 2 bad input
(one line on stderr).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import failures as FL  # noqa: E402
from . import figures as F  # noqa: E402
from . import sequential_report as SR  # noqa: E402
from . import tables as T  # noqa: E402
from .dashboard import DashboardData, note_text, publish  # noqa: E402
from .family import Family, omnibus  # noqa: E402
from .integrity import integrity_checks, outcome_flags  # noqa: E402
from .load import StudyData, StudyNotFound, arm_frame, compare_arms, family_frame, load_study  # noqa: E402
from .notes import group_notes  # noqa: E402
from .provenance import provenance_table, shown_path  # noqa: E402
from .sections import failures_paragraph, omitted_sections  # noqa: E402
from .testset import binomial_ci, two_level_bootstrap  # noqa: E402

__all__ = ["Report", "build_report", "integrity_checks", "main", "render_html",
           "render_markdown", "write_report"]

ACCURACY_SIZE = {"test_acc": "test_size", "val_acc": "val_size"}  # metric -> config key of n
LR_KEYS = ("lr", "scheduler", "step_size", "gamma", "epochs")


# --- report structure -------------------------------------------------------------------------


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Para:
    text: str  # inline Markdown: **bold**, `code`


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class TableRef:
    name: str


@dataclass(frozen=True)
class FigureRef:
    name: str


@dataclass
class Report:
    """Everything the report shows; `render_markdown` / `render_html` turn it into text."""

    study: str
    title: str
    blocks: list = field(default_factory=list)
    figures: dict[str, tuple[plt.Figure, str]] = field(default_factory=dict)  # name -> (fig, caption)
    tables: dict[str, tuple[pd.DataFrame, str]] = field(default_factory=dict)  # name -> (df, caption)
    note: str = ""  # Markdown for the Optuna study note
    families: dict[str, Family] = field(default_factory=dict)
    integrity: dict = field(default_factory=dict)
    dashboard: DashboardData | None = None  # what optuna-dashboard's figures are drawn from

    def close(self) -> None:
        for fig, _ in self.figures.values():
            plt.close(fig)


# --- the computation --------------------------------------------------------------------------


def _finite(x) -> bool:
    return x is not None and isinstance(x, int | float | np.floating) and math.isfinite(x)


def _unique(items) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


def _compare(study, **kw) -> tuple[Family | None, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fam = compare_arms(study, **kw)
        except ValueError as e:
            return None, [str(e)]
    return fam, _unique(str(w.message) for w in caught)


def _testset_table(study: StudyData, fam: Family | None, baseline: str, rng) -> pd.DataFrame | None:
    """Per comparison with the baseline: the seed-only t CI next to the two-level bootstrap CI
    (seeds, then the test images), from the stored per-example predictions; None without them."""
    if fam is None or not fam.comparisons:
        return None
    try:
        base = study.correct_matrix(baseline)
    except Exception:  # unreadable artifacts: the report says predictions are unavailable
        return None
    if base is None:
        return None
    gen = np.random.default_rng(rng)
    rows = []
    for c in fam.comparisons:
        try:
            arm = study.correct_matrix(c.arm_name)
        except Exception:
            arm = None
        if arm is None:
            continue
        (sa, ma), (sb, mb) = arm, base
        if fam.paired:
            common = sorted(set(sa) & set(sb))
            if len(common) < 2:
                continue
            ma = ma[[sa.index(s) for s in common]]
            mb = mb[[sb.index(s) for s in common]]
        if len(ma) < 2 or len(mb) < 2:
            continue
        two = two_level_bootstrap(ma, mb, paired=fam.paired, rng=gen)
        seeds = two_level_bootstrap(ma, mb, paired=fam.paired, rng=gen, resample_examples=False)
        rows.append({"arm": c.arm_name, f"Δ vs {baseline}": T.fmt_num(two.estimate, signed=True),
                     "t CI (seeds)": T.fmt_ci(c.ci_low, c.ci_high, signed=True),
                     "bootstrap CI (seeds)": T.fmt_ci(seeds.low, seeds.high, signed=True),
                     "bootstrap CI (seeds + test images)": T.fmt_ci(two.low, two.high,
                                                                    signed=True),
                     "widening by test images": f"×{(two.high - two.low) / (seeds.high - seeds.low):.2f}"
                     if seeds.high > seeds.low else "n/a"})
    return pd.DataFrame(rows) if rows else None


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _label(metric: str) -> str:
    return F.METRIC_LABELS.get(metric, metric)


def _join(names: Sequence[str]) -> str:
    names = [f"`{n}`" for n in names]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def build_report(study: StudyData, *, rng=0, plan: Mapping | None = None) -> Report:
    """Compute every table, figure and sentence of the report (nothing is written).

    `plan` overrides the study's analysis plan: metric, baseline, alpha, margin, direction,
    chance, population (see `analysis.plan.resolve_plan`)."""
    meta = study.meta or {}
    mplan, classified = study.analysed(study.metric_plan(**(plan or {})))
    study = replace(study, runs=classified)  # checked: status filled, seeds int, outcomes
    metric, baseline, alpha, margin = mplan.metric, mplan.baseline, mplan.alpha, mplan.margin
    runs, epochs = study.runs, study.epochs
    arms = study.arms()
    name = study.name
    palette = F.arm_palette(arms)
    rep = Report(study=name, title=f"Ablation report: {name}")
    B = rep.blocks.append
    notes: list[str] = list(mplan.notes)

    # statistics
    summary = arm_frame(study, plan=mplan) if arms else pd.DataFrame(
        columns=["arm", "n", "failed", "diverged", "mean", "sd", "median", "ci_low", "ci_high"])
    analysable = [a for a in arms if len(FL.scored(classified, a, mplan.population)) >= 2]
    skipped = [a for a in arms if a not in analysable]
    fam = fam_all = None
    kw = {"metric": metric, "baseline": baseline, "alpha": alpha, "margin": margin, "rng": rng,
          "arms": analysable, "direction": mplan.direction, "chance": mplan.chance,
          "failures": mplan.population}
    if baseline in analysable and len(analysable) >= 2:
        fam, w = _compare(study, **kw)
        notes += w
        if len(analysable) >= 3:
            fam_all, w = _compare(study, pairs="all", **kw)
            notes += w
    frame = family_frame(fam, metric) if fam else pd.DataFrame(
        columns=["arm", "baseline", "diff", "ci_low", "ci_high", "p_value", "p_adjusted",
                 "effect_size", "effect_size_name", "verdict", "verdict_reason"])
    frame_all = family_frame(fam_all, metric) if fam_all else None
    if fam:
        rep.families["baseline"] = fam
    if fam_all:
        rep.families["all"] = fam_all
    integ = integrity_checks(runs, epochs, meta, arms)
    tolerance = FL.noise_tolerance(mplan, study.n_test(metric))
    integ["flags"] = outcome_flags(classified, arms, mplan, tolerance) + integ["flags"]
    rep.integrity = integ
    noise = _testset_table(study, fam, baseline, rng) if metric == "test_acc" else None
    left_out = omitted_sections(study, mplan, predictions=noise is not None,
                                lr_recorded="lr" in epochs)

    # 1. question and design
    B(Para(f"Study `{name}` ({meta.get('spec_name', 'spec n/a')}, preset "
           f"`{meta.get('preset', 'n/a')}`). Generated by `python -m analysis.report` from "
           f"`{shown_path(study.runs_file)}`; every number below is computed from the stored "
           "runs."))
    if left_out:
        B(Para("**Left out of this report** (the study did not record what they need): "
               + "; ".join(left_out) + "."))
    B(Heading("1. Question and design"))
    if meta.get("description"):
        B(Para(" ".join(str(meta["description"]).split())))
    n_complete = int((runs["status"] == "complete").sum()) if len(runs) else 0
    design = T.design_table(runs, meta, arms)
    specs = meta.get("arms", {})
    design.insert(1, "overrides (spec)", [
        ", ".join(f"{k} = {json.dumps(v)}" for k, v in specs.get(a, {}).get("overrides", {}).items())
        or "none" for a in arms])
    rep.tables["design"] = (design, "Arms of the study: overrides as written in the spec and the "
                            "resulting change of the resolved configuration from the baseline.")
    seeds_all = sorted(set(runs["seed"])) if len(runs) else []
    per_arm = runs[runs["status"] == "complete"].groupby("arm")["seed"].apply(
        lambda s: tuple(sorted(s))) if len(runs) else pd.Series(dtype=object)
    equal = len({per_arm.get(a, ()) for a in arms}) <= 1
    if fam is not None:
        pairing = ("**paired**: seed *i* of every arm shares data order, flips and (where shapes "
                   "match) initial weights, so each comparison uses the per-seed differences on the "
                   "seeds both of its arms completed" if fam.paired else
                   "**paired** where two arms share at least two seeds; compared **unpaired** "
                   "(Welch) because they do not: " + _join([f"{c.arm_name}` vs `{c.baseline_name}"
                                                           for c in fam.comparisons if not c.paired]))
    else:
        pairing = "no comparison could be made (see Results)"
    base_cfg = specs.get(baseline, {}).get("config")
    B(Para(f"**Metric:** {_label(metric)} (`{metric}`, "
           f"{'higher' if mplan.direction == 'maximize' else 'lower'} is better; chance "
           + (f"{mplan.chance:g} from {mplan.chance_source}" if mplan.chance is not None
              else "unknown") + f"). **Baseline:** `{baseline}`. "
           f"**Significance level:** α = {alpha:g}. **Equivalence margin:** ±{margin:g} points. "
           f"**Arms:** {len(arms)}. **Seeds:** {T.seed_ranges(seeds_all)} "
           + ("(the same complete seeds in every arm)" if equal else
              "(unequal across arms: " + "; ".join(
                  f"`{a}` {T.seed_ranges(per_arm.get(a, ()))}" for a in arms) + ")")
           + f"; {n_complete} complete runs of {len(runs)}. **Design:** {pairing}."))
    if base_cfg:
        B(Para("**Baseline configuration:** " + ", ".join(
            f"{k}={T._value(v)}" for k, v in base_cfg.items())
            + (f". Applied to every arm by `--set`: {json.dumps(meta['set'])}"
               if meta.get("set") else "") + "."))
    B(TableRef("design"))

    # 2. results
    B(Heading("2. Results"))
    results = T.results_table(summary, frame, baseline=baseline, alpha=alpha)
    test_name = fam.comparisons[0].primary.name if fam and fam.comparisons else "primary test"
    rep.tables["results"] = (results, (
        f"{_label(metric).capitalize()} per arm: n runs in the mean, mean and 95% t interval over "
        f"seeds; difference from `{baseline}` with its 95% CI ({test_name}, unadjusted), effect "
        f"size, {test_name} p and Holm-adjusted p (* = below α = {alpha:g}), verdict."))
    if summary.empty or n_complete == 0:
        B(Para("**No complete runs yet**: there is nothing to analyse. Run `python -m study.run` "
               "to add runs, then rerun this report."))
    elif fam is None:
        why = (f"the baseline `{baseline}` has fewer than two complete runs"
               if baseline not in analysable else "only one arm has at least two complete runs")
        B(Para(f"No comparisons: {why}. Per-arm summaries only."))
    if integ["flags"]:
        B(Para(f"⚠ **Integrity: {_count(len(integ['flags']), 'problem')} found** (section 5); "
               "read these results with them in mind. " + integ["flags"][0]
               + (" …" if len(integ["flags"]) > 1 else "")))
    B(TableRef("results"))
    if "n in Δ" in results:
        B(Para("*n in Δ*: the seeds behind each difference, where fewer than the arm's complete "
               "runs: a paired comparison uses only the seeds both of its arms completed "
               "(see the notes under Methods)."))
    if fam is not None:
        B(Bullets(tuple(f"**`{c.arm_name}`: {c.verdict.label}.** {c.verdict.reason}"
                        for c in fam.comparisons)))
    if skipped:
        B(Para("Not compared (fewer than two runs with a value): " + _join(skipped) + "."))
    fail_text, fail_table = failures_paragraph(classified, arms, mplan, tolerance)
    B(Para(fail_text))
    if fail_table is not None:
        rep.tables["failures"] = (fail_table, "Outcome of every run per arm: learned, did not "
                                  "learn (within noise of chance), diverged; failure rate with "
                                  "its Wilson 95% interval; bimodal = both kinds of run.")
        B(TableRef("failures"))
    if frame_all is not None:
        rep.tables["pairs"] = (T.pairs_table(frame_all, alpha=alpha),
                               f"All pairs of arms (first minus second), {test_name}, p "
                               f"Holm-adjusted over the {len(frame_all)} pairs as their own "
                               "family (* = below α).")
        B(Para(f"**All pairs.** The {len(frame_all)} pairwise comparisons, Holm-corrected as "
               "a family of their own (so their p-values differ from the table above):"))
        B(TableRef("pairs"))

    record = SR.read_record(study.path)
    if record is not None:  # run with --until-decided: the decisions are the sequential ones
        B(Heading("Seeds until decided (pre-registered sequential plan)", level=3))
        deviations = record.get("deviations") or []
        B(Para(record["methods"] + (" **Deviations from the pre-registered plan:** " + "; ".join(deviations)
                                    + "." if deviations else " The plan was not changed after the first run.")))
        B(Bullets(tuple(SR.summary_lines(record))))
        rep.tables["looks"] = (SR.looks_table(record), "Every look of every comparison: pairs, difference "
                               "with its repeated CI, paired t against the boundary at the Holm level then "
                               "in force, the equivalence statistic against its bound, and the decision.")
        B(TableRef("looks"))
        rep.figures["sequential"] = (SR.path_figure(record), "Paired t of each comparison at every look "
                                     "against its boundaries (shaded: reject); a comparison stops at its "
                                     "first crossing or when equivalence is shown.")
        B(FigureRef("sequential"))

    # 3. figures
    B(Heading("3. Figures"))
    configs = {a: specs[a]["config"] for a in arms if specs.get(a, {}).get("config")}
    dist_extra = ""
    if len(summary):
        flat = [r for _, r in summary.iterrows()
                if r["n"] and r["n"] > 1 and _finite(r["sd"]) and r["sd"] < 0.05]
        for r in flat:
            dist_extra += (f" `{r['arm']}` barely varies across seeds (mean {r['mean']:.2f}, "
                           f"sd {r['sd']:.3f} points): check whether its runs learned at all "
                           "(chance level is 100 / number of classes).")
    rep.figures["distribution"] = (
        F.distribution_figure(runs, metric=metric, arms=arms, baseline=baseline,
                              palette=palette),
        f"{_label(metric).capitalize()} of every complete run (points, one per seed) and each "
        f"arm's mean with its 95% t interval (black).{dist_extra}")
    if not epochs.empty:
        rep.figures["learning_curves"] = (
            F.learning_curves_figure(epochs, runs=runs, arms=arms, palette=palette),
            "Validation accuracy and training loss per epoch: mean over the complete runs of "
            "each arm and its 95% t band over seeds.")
    lr_caption = ("Learning rate read from the optimizer that stepped, per epoch (one line per "
                  "seed), against the schedule each arm's configuration asks for (dashed). ")
    lr_caption += ("Effective and configured schedules agree for every arm."
                   if not integ["lr_mismatch"] else
                   "They DISAGREE for " + _join(integ["lr_mismatch"]) + " (see Integrity).")
    if "lr" in epochs:
        rep.figures["lr_schedule"] = (
            F.lr_schedule_figure(epochs, arms=arms, configs=configs, palette=palette),
            lr_caption)
    rep.dashboard = DashboardData(runs=runs, comparisons=frame if fam is not None else
                                  pd.DataFrame(), arms=arms, baseline=baseline, metric=metric,
                                  metric_label=_label(metric), margin=margin, palette=palette)
    if fam is not None:
        rep.figures["forest"] = (
            F.forest_figure(frame, margin=margin, baseline=baseline, metric=metric,
                            direction=mplan.direction),
            f"Difference of each arm from `{baseline}` with its 95% CI ({test_name}), coloured "
            f"by verdict; grey band: the equivalence margin ±{margin:g}.")
    if frame_all is not None:
        rep.figures["pairs"] = (
            F.pairwise_figure(frame_all, arms=analysable, alpha=alpha, metric=metric),
            f"Every pair of arms: mean of the row arm minus the column arm, with p of the "
            f"{test_name} Holm-adjusted over all {len(frame_all)} pairs.")
    if fam is not None:
        comps = [c for c in fam.comparisons if c.sd > 0]
        rep.figures["power"] = (
            F.power_figure(fam, palette=palette),
            "Smallest true difference each comparison detects with "
            f"{comps[0].power:.0%} power, against seeds per arm, using the observed sd "
            f"({'of the per-seed differences' if fam.paired else 'per arm'}) and α/{len(fam)} "
            f"(Holm's first step). Dots: the seeds run so far; crosses: where a curve reaches "
            f"the margin ±{margin:g} (the seeds needed)." if comps else
            "No comparison has a non-zero seed sd: power cannot be estimated.")
    for key in rep.figures:
        B(FigureRef(key))
    _tuning_section(rep, study, B)

    # 4. methods
    B(Heading("4. Methods"))
    for text in _methods(study, summary, fam, fam_all, metric, baseline, alpha, margin,
                         analysable, notes, noise is not None):
        B(Para(text))
        if text.startswith("**Test-set noise.**") and noise is not None:
            rep.tables["testset_noise"] = (noise, (
                "Difference from the baseline, 95% intervals: the t interval of the results "
                "table (seed noise); a bootstrap over seeds only; and the two-level bootstrap "
                "over seeds, then test images (the same resampled images for every run), both "
                "percentile with 2,000 replicates. At a handful of seeds a bootstrap is "
                "narrower than the t interval (normal quantiles, (n-1)/n variance), so read the "
                "test-set contribution from the two bootstrap columns: their width ratio."))
            B(TableRef("testset_noise"))
    notes = group_notes(_unique(notes))
    if notes:
        B(Para("Notes raised by the analysis:"))
        B(Bullets(tuple(notes)))

    # 5. integrity
    B(Heading("5. Integrity"))
    if integ["flags"]:
        B(Para(f"**{_count(len(integ['flags']), 'problem')} found:**"))
        B(Bullets(tuple("⚠ " + f for f in integ["flags"])))
    else:
        B(Para("No integrity problem found."))
    if integ["checks"]:
        B(Para("Checked and passed:"))
        B(Bullets(tuple(integ["checks"])))
    if len(integ["bn"]):
        rep.tables["batchnorm"] = (integ["bn"], "BatchNorm layers per arm: what the "
                                   "configuration asks for and what the trained models "
                                   "contained (n_bn, conv indices).")
        B(TableRef("batchnorm"))
    if len(integ["excluded"]):
        rep.tables["excluded_runs"] = (integ["excluded"], "Runs that did not complete "
                                       "(failed: an exception, excluded from the statistics; "
                                       "diverged: a NaN/inf loss, a failure of its recipe).")
        n_ex = len(integ["excluded"])
        B(Para(f"{_count(n_ex, 'run')} did not complete (diverged runs count as failures, see "
               "the Failures paragraph):"))
        B(TableRef("excluded_runs"))
    else:
        B(Para("No failed or diverged runs."))

    # 6. provenance
    B(Heading("6. Provenance"))
    prov, _ = provenance_table(study, arms)
    rep.tables["provenance"] = (prov, "Where the numbers come from.")
    B(TableRef("provenance"))

    rep.note = _note(rep, name, metric, baseline, fam)
    return rep


def _tuning_section(rep: Report, study: StudyData, B) -> None:
    """Tuning studies stored beside this ablation, and the confirmation of their winner."""
    from . import tuning as TU

    url = study.storage_url
    if url is None:
        return
    try:
        tunings = TU.tuning_trials(url, study.meta.get("study", study.path.name))
    except Exception as e:  # an unreadable storage must not cost the rest of the report
        B(Heading("Tuning"))
        B(Para(f"The tuning studies could not be read ({type(e).__name__}); skipped."))
        return
    if not tunings:
        return
    B(Heading("Tuning (Optuna)"))
    for t in tunings:
        states = t.trials["state"].value_counts().to_dict()
        diverged = int((t.trials["status"] == "diverged").sum())
        text = (f"`{t.name}` tuned `{t.arm}` over {len(t.trials)} trials "
                f"({', '.join(f'{n} {k.lower()}' for k, n in states.items())}"
                f"{f'; {diverged} diverged' if diverged else ''}) with a seeded TPE sampler and a "
                "median pruner on per-epoch **validation** accuracy; the test set was never scored "
                "during tuning, and tuning seeds (100000 + trial) are disjoint from evaluation seeds.")
        if t.best:
            params = ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                               for k, v in t.best["params"].items())
            text += f" Best: trial {t.best['number']}, {params}, validation accuracy {t.best['value']:.2f}%."
        if t.importances:
            text += " Importance (PED-ANOVA): " + ", ".join(f"{k} {v:.2f}" for k, v in t.importances.items()) + "."
        B(Para(text))
        for key, fig, caption in (
                ("tuning_history", TU.history_figure(t), "Validation accuracy of every tuning trial "
                 "and the best so far; crosses: trials pruned or failed before a final value."),
                ("tuning_space", TU.lr_step_figure(t), "Where the sampler looked: learning rate x "
                 "StepLR step size, coloured by validation accuracy; the best trial circled."),
                ("tuning_importance", TU.importance_figure(t), "Importance of each parameter for "
                 "reaching the top validation accuracies (Optuna PED-ANOVA evaluator).")):
            name = f"{key}_{t.arm}"
            rep.figures[name] = (fig, caption)
            B(FigureRef(name))
    confirm_dir = study.path.parent / f"{study.path.name}-tuned"
    selection = TU.selection_table(confirm_dir)
    if selection is not None:
        rep.tables["selection"] = (selection, "Confirmation of the selected trial(s) on fresh "
                                   "evaluation seeds: the validation score that won the selection "
                                   "against the same parameters' fresh-seed scores. The gap is "
                                   "the selection bias (winner's curse).")
        B(Para("**Confirmation on fresh seeds.** The winner's validation score was selected as "
               "the best of many noisy trials, so it overstates what the parameters give on new "
               "seeds:"))
        B(TableRef("selection"))
    if (confirm_dir / "runs.csv").exists():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                tuned = family_frame(compare_arms(load_study(confirm_dir)))
            except (StudyNotFound, ValueError) as e:  # say why, keep the rest of the report
                B(Para(f"The confirmation study `{confirm_dir.name}` could not be compared: {e}"))
                return
        for r in tuned.itertuples():
            B(Para(f"**`{r.arm}` vs `{r.baseline}` on fresh seeds** (study `{confirm_dir.name}`, "
                   f"{r.n_arm} paired seeds): Δ = {r.diff:+.2f} points, 95% CI [{r.ci_low:+.2f}, "
                   f"{r.ci_high:+.2f}], {r.test} p = {r.p_value:.3g} (Holm {r.p_adjusted:.3g}): "
                   f"**{r.verdict}**. {r.verdict_reason}"))


def _methods(study, summary, fam, fam_all, metric, baseline, alpha, margin, analysable,
             notes, predictions: bool = False) -> list[str]:
    runs = study.runs
    out = []
    n_bad = int(runs["outcome"].isin(("failed", "other")).sum()) if len(runs) else 0
    n_fail = int(runs["outcome"].isin(FL.FAILURE_OUTCOMES).sum()) if len(runs) else 0
    out.append(f"**Data.** {_label(metric).capitalize()} of {_count(len(runs) - n_bad, 'run')} "
               f"is analysed, {n_fail} of them diverged or did not learn (outcomes of their "
               "recipe, counted as the Failures paragraph says); "
               + (f"{_count(n_bad, 'run')} that failed with an error or has another status "
                  f"{'is' if n_bad == 1 else 'are'} excluded (listed under Integrity). " if n_bad
                  else "no run failed with an error. ")
               +
               "Per-arm intervals are t intervals over seeds (the bootstrap is reported by "
               "`arm_frame` as a cross-check only: it is too narrow at a handful of seeds).")
    if fam is None or not fam.comparisons:
        out.append("**Tests.** No comparison was possible, so no test was run.")
        return out
    c0 = fam.comparisons[0]
    prim = c0.primary
    ns = sorted({c.n_arm for c in fam.comparisons})
    n_text = (f"{ns[0]} paired seeds" if fam.paired and len(ns) == 1 else
              f"{'/'.join(map(str, ns))} {'paired ' if fam.paired else ''}seeds")
    out.append(
        f"**Primary test.** {_count(len(fam), 'arm')} {'is' if len(fam) == 1 else 'are'} compared "
        f"with `{baseline}` by the {prim.name} on {n_text} ({prim.reason}). " + (
            "Seed i of every arm shares data order, augmentation flips and initialisation, so "
            "per-seed differences remove the variation the arms share; "
            if fam.paired else "The arms do not share enough seeds to be paired; ")
        + "seed-to-seed variation of a final accuracy is close to normal, so the t-test keeps "
        "its error rate at a handful of seeds, where exact tests cannot even reach α. "
        f"Assumption: {prim.assumptions}. The 95% confidence intervals of the differences "
        f"come from the same t-test (so they agree with its p-value) and are not adjusted for "
        f"multiplicity. Effect size: {c0.effect_size_name} ("
        + ("mean of the per-seed differences over their sd" if fam.paired else
           "Hedges' g, pooled sd with the small-sample correction") + ").")
    out.append(f"**Multiple comparisons.** Family of the results table: {fam.correction}."
               + (f" The all-pairs table and heatmap are a separate family: "
                  f"{fam_all.correction}." if fam_all else ""))
    out.append(
        f"**Verdicts.** *better*/*worse* when the Holm-adjusted p < α = {alpha:g} (sign of the "
        f"difference); otherwise *equivalent* when the TOST equivalence test against "
        f"±{margin:g} points (Holm-adjusted as its own family) has p < α, i.e. the "
        f"{1 - 2 * alpha:.0%} CI of the difference lies inside ±{margin:g}; otherwise "
        f"*inconclusive*, with the seeds per arm needed to detect a true difference of "
        f"{margin:g} with {c0.power:.0%} power at α/{len(fam)}. The margin ±{margin:g} is the "
        f"study plan's (study.json `analysis.margin`), fixed before the runs.")
    rob = [t.name for t in c0.robustness]
    min_ps = sorted({c.min_attainable_p for c in fam.comparisons})
    m = len(fam)
    reach = all(p < alpha for p in min_ps)
    design = (f"{ns[0]} paired seeds" if fam.paired and len(ns) == 1 else "these sample sizes")
    text = ("**Exact tests.** " + (f"Robustness checks run on every comparison: "
                                     f"{', '.join(rob)}. " if rob else "")
            + f"With {design} the smallest p-value an exact permutation or rank test can "
            f"produce is {', '.join(f'{p:.4g}' for p in min_ps)}, ")
    if reach:
        holm_floor = min(1.0, m * max(min_ps))
        text += (f"below α = {alpha:g}, so they can reject; after Holm over {m} comparisons "
                 f"their smallest adjusted p is {holm_floor:.4g}"
                 + (", which cannot reach α." if holm_floor >= alpha else "."))
    else:
        text += (f"not below α = {alpha:g}: whatever the data, they cannot reject at these n, "
                 "which is why they are robustness checks and not the primary test.")
    disagree = sorted({n for c in fam.comparisons for n in c.notes
                       if "does not confirm" in n or "permutation test is significant" in n})
    text += (" They disagree with the primary test for: " + "; ".join(disagree) + "."
             if disagree else " No disagreement with the primary test was flagged.")
    out.append(text)

    size_key = ACCURACY_SIZE.get(metric)
    cfg = study.meta.get("arms", {}).get(baseline, {}).get("config", {}) if study.meta else {}
    n_test = cfg.get(size_key) if size_key else None
    base = summary[summary["arm"] == baseline]
    if n_test and len(base) and _finite(base["mean"].iloc[0]):
        mean = float(base["mean"].iloc[0])
        ci = binomial_ci(int(round(mean / 100 * n_test)), int(n_test))
        half = (ci.high - ci.low) / 2
        halves = []
        for _, r in summary.iterrows():
            if _finite(r["mean"]):
                c = binomial_ci(int(round(r["mean"] / 100 * n_test)), int(n_test))
                halves.append((c.high - c.low) / 2)
        sd = base["sd"].iloc[0]
        images = "test" if metric == "test_acc" else "validation"
        text = (f"**Test-set noise.** Every run is scored on the same {int(n_test):,} {images} "
                f"images, so averaging over seeds does not remove their sampling noise: the "
                f"comparisons are about this {images} set. At `{baseline}`'s mean accuracy of "
                f"{mean:.2f}% a single run's 95% Wilson binomial interval is ±{half:.2f} points"
                + (f" (±{min(halves):.2f} to ±{max(halves):.2f} across the arms' means)"
                   if len(halves) > 1 else "")
                + f", {half / margin:.1f} times the equivalence margin"
                + (f"; the seed-to-seed sd of `{baseline}` is {sd:.2f} points" if _finite(sd)
                   else "") + ". ")
        text += ("Per-example predictions are stored, so the table below adds this noise to "
                 "the difference CIs by a two-level bootstrap (`two_level_bootstrap`): runs "
                 "are resampled, then test images, the same images for every run."
                 if predictions else
                 "Per-example predictions are not available for this study, so the intervals "
                 "above contain seed noise only.")
        out.append(text)

    comps = [c for c in fam.comparisons if c.sd > 0]
    if comps:
        dd = [F.detectable(max(c.n_arm, 2), c.sd, paired=c.paired, alpha=c.alpha / m,
                           power=c.power)[0] for c in comps]
        dd = [d for d in dd if math.isfinite(d)] or [math.nan]
        needed = [f"`{c.arm_name}` {c.seeds_needed}" for c in comps if c.seeds_needed]
        out.append(
            f"**Power.** With the observed sd of the "
            f"{'per-seed differences' if fam.paired else 'arms'} "
            f"({T.fmt_num(min(c.sd for c in comps))} to {T.fmt_num(max(c.sd for c in comps))} "
            f"points), {n_text} detect a true difference of {T.fmt_num(min(dd))} to "
            f"{T.fmt_num(max(dd))} points with {c0.power:.0%} power at α/{m}; detecting a "
            f"difference as small as the margin ({margin:g}) needs, in seeds per arm: "
            + (", ".join(needed) if needed else "n/a") + ".")

    groups = {}
    if len(analysable) >= 3:
        ok = runs[runs["status"] == "complete"]
        series = {a: ok[ok["arm"] == a].set_index("seed")[metric].astype(float)
                  for a in analysable}
        if fam.paired:
            common = sorted(set.intersection(*(set(s.index) for s in series.values())))
            groups = {a: s.loc[common].to_numpy() for a, s in series.items()}
        else:
            groups = {a: s.to_numpy() for a, s in series.items()}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                om = omnibus(groups, paired=fam.paired)
            except ValueError as e:
                om = None
                notes.append(f"omnibus test not run: {e}")
        notes.extend(n for n in _unique(str(w.message) for w in caught) if n not in notes)
        if om is not None:
            out.append(f"**Omnibus.** {om.name} over the {len(groups)} arms "
                       f"({om.method}): statistic {om.statistic:.3g}, p = {T.fmt_p(om.pvalue)}. "
                       f"{om.assumptions.capitalize()}.")
    for c in fam.comparisons:
        for n in c.notes:
            if n not in notes and "does not confirm" not in n and "cannot reach p" not in n:
                notes.append(f"`{c.arm_name}` vs `{c.baseline_name}`: {n}")
    return out


def _note(rep: Report, name: str, metric: str, baseline: str, fam: Family | None) -> str:
    df, caption = rep.tables["results"]
    verdicts = [f"**{c.arm_name}: {c.verdict.label}.** {c.verdict.reason}"
                for c in fam.comparisons] if fam is not None else []
    return note_text(T.to_markdown(df), caption, verdicts, name=name,
                     flags=rep.integrity.get("flags", ()))


# --- rendering --------------------------------------------------------------------------------


def _inline_html(text: str) -> str:
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])", r"<em>\1</em>", out)
    return out


def render_markdown(rep: Report, figure_dir: str = "figures") -> str:
    out = [f"# {rep.title}", ""]
    for b in rep.blocks:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Para):
            out += [b.text, ""]
        elif isinstance(b, Bullets):
            out += [f"- {i}" for i in b.items] + [""]
        elif isinstance(b, TableRef):
            df, caption = rep.tables[b.name]
            out += [f"*Table ({b.name}). {caption}*", "", T.to_markdown(df)]
        elif isinstance(b, FigureRef):
            _, caption = rep.figures[b.name]
            out += [f"![{b.name}]({figure_dir}/{b.name}.png)", "",
                    f"*Figure ({b.name}). {caption}*", ""]
    return "\n".join(out).rstrip() + "\n"


CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; max-width: 1180px;
       margin: 2em auto; padding: 0 1.2em; color: #222; line-height: 1.5; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 2em; }
code { background: #f3f3f3; padding: 0 .25em; border-radius: 3px; font-size: 92%; }
table { border-collapse: collapse; margin: .6em 0 1.4em; font-size: 88%; }
th, td { border-top: 1px solid #ddd; padding: .3em .65em; vertical-align: top; text-align: left; }
thead th { border-bottom: 2px solid #999; border-top: 2px solid #999; background: #fafafa; }
tbody tr:last-child td { border-bottom: 2px solid #999; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.caption { color: #555; font-size: 90%; margin-bottom: .3em; }
figure { margin: 1.2em 0 2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 90%; }
li { margin: .25em 0; }
"""


def render_html(rep: Report, pngs: Mapping[str, bytes]) -> str:
    """One self-contained HTML page; `pngs` holds each figure's PNG bytes (embedded base64)."""
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(rep.title)}</title>", f"<style>{CSS}</style>", "</head><body>",
           f"<h1>{html.escape(rep.title)}</h1>"]
    for b in rep.blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{_inline_html(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append(f"<p>{_inline_html(b.text)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, TableRef):
            df, caption = rep.tables[b.name]
            out.append(f'<div class="caption">Table ({html.escape(b.name)}). '
                       f"{_inline_html(caption)}</div>")
            out.append(T.to_html(df))
        elif isinstance(b, FigureRef):
            _, caption = rep.figures[b.name]
            data = base64.b64encode(pngs[b.name]).decode("ascii")
            out.append(f'<figure><img alt="{html.escape(b.name)}" '
                       f'src="data:image/png;base64,{data}">'
                       f"<figcaption>Figure ({html.escape(b.name)}). {_inline_html(caption)}"
                       "</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# --- writing ----------------------------------------------------------------------------------


def write_report(results_dir: str | Path, out: str | Path | None = None, *, note: bool = True,
                 dpi: int = 150, rng=0, log=print, plan: Mapping | None = None) -> list[Path]:
    """Build the report of `results_dir` and write it to `out` (default ``paper/<study>/``).

    Returns the paths written. With `note`, also writes the verdict note and the per-arm
    figures into the study's Optuna storage (`analysis.dashboard.publish`; skipped, with a
    message through `log`, when unavailable).
    Raises `StudyNotFound` when `results_dir` holds no runs.csv.
    """
    study = load_study(results_dir)
    rep = build_report(study, rng=rng, plan=plan)
    out = Path(out) if out is not None else Path("paper") / rep.study
    try:
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
            tex.write_text(T.to_latex(df, caption=caption, label=f"tab:{key}"), encoding="utf-8")
            md = out / "tables" / f"{key}.md"
            md.write_text(f"*{caption}*\n\n" + T.to_markdown(df), encoding="utf-8")
            written += [tex, md]
        md = out / "report.md"
        md.write_text(render_markdown(rep), encoding="utf-8")
        page = out / "report.html"
        page.write_text(render_html(rep, pngs), encoding="utf-8")
        written += [md, page]
    finally:
        rep.close()
    if note:
        log(publish(study.storage_url, study.meta.get("study", study.path.name), rep.note,
                    rep.dashboard))
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.report",
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
