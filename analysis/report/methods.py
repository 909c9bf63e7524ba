"""The Methods section's prose: how every number of the report was computed, with the numbers
of this study filled in (seeds, tests, the smallest p an exact test can reach, the test-set
noise, the power), one function per paragraph.

`methods_paragraphs` also returns the analysis' notes, extended with those raised here (the
omnibus test's, each comparison's own), which the report lists under the paragraphs.
"""

from __future__ import annotations

import math
from dataclasses import replace

from analysis._checks import collect_notes
from analysis.contract import shared_text
from analysis.formatting import MINUS, number, p_value, percent, significant
from analysis.report.blocks import plural
from analysis.report.context import StudyAnalysis, by_primary_test, is_finite_number
from analysis.report.figures import detectable, metric_label
from analysis.stats.failures import FAILURE_OUTCOMES
from analysis.stats.family import Family, omnibus
from analysis.stats.test_set_noise import binomial_ci
from analysis.types import Note

TESTSET_NOISE_HEADING = "**Test-set noise.**"  # the report puts the noise table under it


def _seeds_text(fam: Family) -> str:
    """``5 paired seeds``, or ``4/5 seeds`` when the comparisons differ."""
    ns = sorted({c.n_arm for c in fam.comparisons})
    return (f"{ns[0]} paired seeds" if fam.paired and len(ns) == 1 else
            f"{'/'.join(map(str, ns))} {'paired ' if fam.paired else ''}seeds")


def _data(analysis: StudyAnalysis) -> str:
    runs = analysis.study.runs
    n_bad = int(runs["outcome"].isin(("failed", "other")).sum()) if len(runs) else 0
    n_fail = int(runs["outcome"].isin(FAILURE_OUTCOMES).sum()) if len(runs) else 0
    return (f"**Data.** {metric_label(analysis.plan.metric).capitalize()} of "
            f"{plural(len(runs) - n_bad, 'run')} is analysed, {n_fail} of them diverged or did "
            "not learn (outcomes of their recipe, counted as the Failures paragraph says); "
            + (f"{plural(n_bad, 'run')} that failed with an error or has another status "
               f"{'is' if n_bad == 1 else 'are'} excluded (listed under Integrity). " if n_bad
               else "no run failed with an error. ")
            + "Per-arm intervals are t intervals over seeds (the bootstrap is reported by "
            "`arm_frame` as a cross-check only: it is too narrow at a handful of seeds).")


def _primary_test(analysis: StudyAnalysis) -> str:
    fam = analysis.compared
    c0 = fam.comparisons[0]
    groups = by_primary_test(fam.comparisons)
    if len(groups) == 1:
        prim = c0.primary
        which = f"by the {prim.name} on {_seeds_text(fam)} ({prim.reason}). "
        assumed = f"Assumption: {prim.assumptions}. "
    else:  # each test with the arms it was used for, as the verdict table says per row
        which = (f"on {_seeds_text(fam)}, each by its own primary test: " + "; ".join(
            f"the {name} for {', '.join(f'`{c.arm_name}`' for c in cs)} ({cs[0].primary.reason})"
            for name, cs in groups.items()) + ". ")
        assumed = "Assumptions: " + "; ".join(
            f"{name}: {cs[0].primary.assumptions}" for name, cs in groups.items()) + ". "
    return (
        f"**Primary test.** {plural(len(fam), 'arm')} {'is' if len(fam) == 1 else 'are'} "
        f"compared with `{analysis.plan.baseline}` {which}" + _pairing(analysis)
        + "seed-to-seed variation of a final accuracy is close to normal, so the t-test keeps "
        "its error rate at a handful of seeds, where exact tests cannot even reach α. "
        f"{assumed}The 95% confidence intervals of the differences "
        f"come from the same t-test (so they agree with its p-value) and are not adjusted for "
        f"multiplicity. Effect size: {c0.effect_size.name} ("
        + ("mean of the per-seed differences over their sd" if fam.paired else
           "Hedges' g, pooled sd with the small-sample correction") + ").")


def _pairing(analysis: StudyAnalysis) -> str:
    """What pairing by seed removes: only the randomness the experiment declares it shares."""
    if not analysis.compared.paired:
        return "The arms do not share enough seeds to be paired; "
    shared = shared_text(analysis.study.seed_streams)
    if shared:
        return (f"Seed i of every arm shares {shared}, so per-seed differences remove the "
                "variation the arms share; ")
    return ("Runs with the same seed are paired; whether they share randomness is up to the "
            "experiment (it declares no `seed_streams`), and per-seed differences remove only "
            "what they share; ")


def _multiple_comparisons(analysis: StudyAnalysis) -> str:
    return (f"**Multiple comparisons.** Family of the results table: {analysis.compared.correction}."
            + (f" The all-pairs table and heatmap are a separate family: "
               f"{analysis.family_all.correction}." if analysis.family_all else ""))


def _verdicts(analysis: StudyAnalysis) -> str:
    alpha, margin, fam = analysis.plan.alpha, analysis.plan.margin, analysis.compared
    return (
        f"**Verdicts.** *better*/*worse* when the Holm-adjusted p < α = {alpha:g} (sign of the "
        f"difference); otherwise *equivalent* when the TOST equivalence test against "
        f"±{margin:g} points (Holm-adjusted as its own family) has p < α, i.e. the "
        f"{percent(1 - 2 * alpha)} CI of the difference lies inside ±{margin:g}; otherwise "
        f"*inconclusive*, with the seeds per arm needed to detect a true difference of "
        f"{margin:g} with {percent(fam.comparisons[0].sensitivity.power)} power at α/{len(fam)}. The margin "
        f"±{margin:g} is the study plan's (study.json `analysis.margin`), fixed before the runs.")


def _exact_tests(analysis: StudyAnalysis) -> str:
    """What the exact robustness tests can reach at these n (p >= 2/2^n), and where they disagree."""
    fam, alpha = analysis.compared, analysis.plan.alpha
    ns = sorted({c.n_arm for c in fam.comparisons})
    rob = [t.name for t in fam.comparisons[0].robustness]
    min_ps = sorted({c.sensitivity.min_attainable_p for c in fam.comparisons})
    m = len(fam)
    design = (f"{ns[0]} paired seeds" if fam.paired and len(ns) == 1 else "these sample sizes")
    text = ("**Exact tests.** " + (f"Robustness checks run on every comparison: "
                                     f"{', '.join(rob)}. " if rob else "")
            + f"With {design} the smallest p-value an exact permutation or rank test can "
            f"produce is {', '.join(significant(p, 4) for p in min_ps)}, ")
    if all(p < alpha for p in min_ps):
        holm_floor = min(1.0, m * max(min_ps))
        text += (f"below α = {alpha:g}, so they can reject; after Holm over {m} comparisons "
                 f"their smallest adjusted p is {significant(holm_floor, 4)}"
                 + (", which cannot reach α." if holm_floor >= alpha else "."))
    else:
        text += (f"not below α = {alpha:g}: whatever the data, they cannot reject at these n, "
                 "which is why they are robustness checks and not the primary test.")
    disagree = sorted({n.text for c in fam.comparisons for n in c.notes
                       if n.kind in ("not_confirmed", "robust_only")})
    return text + (" They disagree with the primary test for: " + "; ".join(disagree) + "."
                   if disagree else " No disagreement with the primary test was flagged.")


def _binomial_half_width(mean: float, n_test: int) -> float:
    """Half the 95% Wilson interval of one run scoring `mean` % on `n_test` images."""
    ci = binomial_ci(int(round(mean / 100 * n_test)), int(n_test))
    return (ci.high - ci.low) / 2


def _testset_noise(analysis: StudyAnalysis) -> str | None:
    """How much every run's score moves with the fixed test set; None when its size is unknown."""
    plan, summary = analysis.plan, analysis.summary
    metric, baseline, margin = plan.metric, plan.baseline, plan.margin
    n_test = analysis.study.n_test(metric)
    base = summary[summary["arm"] == baseline]
    if not (n_test and len(base) and is_finite_number(base["mean"].iloc[0])):
        return None
    mean = float(base["mean"].iloc[0])
    half = _binomial_half_width(mean, n_test)
    halves = [_binomial_half_width(r["mean"], n_test)
              for _, r in summary.iterrows() if is_finite_number(r["mean"])]
    sd = base["sd"].iloc[0]
    images = "test" if metric == "test_acc" else "validation"
    text = (f"{TESTSET_NOISE_HEADING} Every run is scored on the same {int(n_test):,} {images} "
            f"images, so averaging over seeds does not remove their sampling noise: the "
            f"comparisons are about this {images} set. At `{baseline}`'s mean accuracy of "
            f"{number(mean)}% a single run's 95% Wilson binomial interval is ±{number(half)} points"
            + (f" (±{number(min(halves))} to ±{number(max(halves))} across the arms' means)"
               if len(halves) > 1 else "")
            + f", {number(half / margin, 1)} times the equivalence margin"
            + (f"; the seed-to-seed sd of `{baseline}` is {number(sd)} points"
               if is_finite_number(sd) else "") + ". ")
    return text + ("Per-example predictions are stored, so the table below adds this noise to "
                   "the difference CIs by a two-level bootstrap (`two_level_bootstrap`): runs "
                   "are resampled, then test images, the same images for every run."
                   if analysis.noise is not None else
                   "Per-example predictions are not available for this study, so the intervals "
                   "above contain seed noise only.")


def _power(analysis: StudyAnalysis) -> str | None:
    fam = analysis.compared
    comps = [c for c in fam.comparisons if c.sd > 0]
    if not comps:
        return None
    m = len(fam)
    dd = [detectable(max(c.n_arm, 2), c.sd, paired=c.paired, alpha=c.alpha / m,
                     power=c.sensitivity.power)[0] for c in comps]
    dd = [d for d in dd if math.isfinite(d)] or [math.nan]
    needed = [f"`{c.arm_name}` {c.sensitivity.seeds_needed}" for c in comps if c.sensitivity.seeds_needed]
    return (f"**Power.** With the observed sd of the "
            f"{'per-seed differences' if fam.paired else 'arms'} "
            f"({number(min(c.sd for c in comps), minus=MINUS)} to "
            f"{number(max(c.sd for c in comps), minus=MINUS)} points), {_seeds_text(fam)} detect a "
            f"true difference of {number(min(dd), minus=MINUS)} to "
            f"{number(max(dd), minus=MINUS)} points with {percent(fam.comparisons[0].sensitivity.power)} "
            f"power at α/{m}; "
            f"detecting a difference as small as the margin ({analysis.plan.margin:g}) needs, in "
            "seeds per arm: " + (", ".join(needed) if needed else "n/a") + ".")


def _omnibus(analysis: StudyAnalysis, notes: list[Note]) -> str | None:
    """The omnibus test over all analysable arms (from three on); its warnings go to `notes`."""
    if len(analysis.analysable) < 3:
        return None
    runs, metric, fam = analysis.study.runs, analysis.plan.metric, analysis.compared
    ok = runs[runs["status"] == "complete"]
    series = {arm: ok[ok["arm"] == arm].set_index("seed")[metric].astype(float)
              for arm in analysis.analysable}
    if fam.paired:
        common = sorted(set.intersection(*(set(s.index) for s in series.values())))
        groups = {arm: s.loc[common].to_numpy() for arm, s in series.items()}
    else:
        groups = {arm: s.to_numpy() for arm, s in series.items()}
    with collect_notes() as raised:
        try:
            om = omnibus(groups, paired=fam.paired)
        except ValueError as e:
            om = None
            notes.append(Note(f"omnibus test not run: {e}", kind="omnibus"))
    notes.extend(n for n in raised if n not in notes)
    if om is None:
        return None
    return (f"**Omnibus.** {om.name} over the {len(groups)} arms ({om.method}): statistic "
            f"{significant(om.statistic)}, p = {p_value(om.pvalue, minus=MINUS)}. "
            f"{om.assumptions.capitalize()}.")


def methods_paragraphs(analysis: StudyAnalysis) -> tuple[list[str], list[Note]]:
    """The Methods paragraphs, and the analysis' notes with those raised here added."""
    notes = list(analysis.notes)
    if analysis.family is None or not analysis.family.comparisons:
        no_test = "**Tests.** No comparison was possible, so no test was run."
        return [_data(analysis), no_test], notes
    out = [_data(analysis), _primary_test(analysis), _multiple_comparisons(analysis),
           _verdicts(analysis), _exact_tests(analysis), _testset_noise(analysis),
           _power(analysis), _omnibus(analysis, notes)]
    # A comparison's own notes, tagged with it; those its verdict or the Exact tests paragraph
    # already states are left out, and so is one already raised as a warning.
    said = {n.text for n in notes}
    for c in analysis.family.comparisons:
        for n in c.notes:
            if n.text not in said and n.kind not in ("not_confirmed", "exact_floor"):
                notes.append(replace(n, arms=(c.arm_name, c.baseline_name)))
    return [text for text in out if text is not None], notes
