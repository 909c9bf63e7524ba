"""Everything the report's sections read, computed once from the study: the resolved analysis
plan, the per-arm summary, the comparisons with the baseline (and of all pairs from three arms
on), the integrity checks, the test-set noise table and the notes raised on the way.

`analyse` does the work; the sections (`analysis.report.sections`, `report_methods`,
`report_tuning`) only turn a `StudyAnalysis` into text, tables and figures.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from analysis._checks import collect_notes
from analysis.formatting import MINUS, interval, number
from analysis.load import StudyData, arm_frame, compare_classified, family_frame, unanalysed_runs
from analysis.report.figures import arm_palette
from analysis.report.integrity import integrity_checks, outcome_flags
from analysis.stats.failures import noise_tolerance, why_unjudged
from analysis.stats.family import Family
from analysis.stats.metric_plan import MetricPlan
from analysis.stats.test_set_noise import two_level_bootstrap
from analysis.types import Note

SUMMARY_COLUMNS = ["arm", "n", "failed", "diverged", "mean", "sd", "median", "ci_low", "ci_high"]
COMPARISON_COLUMNS = ["arm", "baseline", "diff", "ci_low", "ci_high", "p_value", "p_adjusted",
                      "effect_size", "effect_size_name", "verdict", "verdict_reason"]


@dataclass
class StudyAnalysis:
    """The study (runs checked and classified) and every statistic the report shows."""

    study: StudyData
    plan: MetricPlan
    arms: list[str]
    analysable: list[str]  # arms with at least two scored runs
    unjudged: dict[str, str]  # the others, each with why it cannot be compared
    summary: pd.DataFrame  # `arm_frame`: one row per arm
    family: Family | None  # every analysable arm against the baseline
    family_all: Family | None  # all pairs, from three analysable arms on
    frame: pd.DataFrame  # `family_frame(family)` (empty without comparisons)
    frame_all: pd.DataFrame | None
    integrity: dict  # `integrity_checks`, with the outcome flags first
    tolerance: float | None  # how close to chance a run is "did not learn"
    noise: pd.DataFrame | None  # `testset_noise_table`: None without stored predictions
    notes: list[Note]  # cautions raised by the analysis, shown under Methods
    palette: dict

    @property
    def compared(self) -> Family:
        """`family`, for the sections that are written only when there are comparisons."""
        if self.family is None:
            raise RuntimeError("a section that needs comparisons was written without any")
        return self.family

    @property
    def test_name(self) -> str:
        """The primary test of each comparison with the baseline, as `tests_text` says it."""
        return tests_text(self.family.comparisons if self.family else ())


def by_primary_test(comparisons: Iterable) -> dict[str, list]:
    """`comparisons` grouped by the name of their primary test, in order of first use."""
    groups: dict[str, list] = {}
    for c in comparisons:
        groups.setdefault(c.primary.name, []).append(c)
    return groups


def tests_text(comparisons: Iterable, *, pairs: bool = False) -> str:
    """Which primary test the comparisons used: its name when they all used one, else each
    test with the arms it was used for ("paired t-test for `wide`, `deep`; sign-flip
    permutation test for `mixed`"; `pairs`: named as "`a` vs `b`"), as the verdict table says
    per row. An arm's comparison falls back to another test when its seeds are skewed or tied."""
    groups = by_primary_test(comparisons)
    if len(groups) <= 1:
        return next(iter(groups), "primary test")
    def who(c) -> str:
        return f"`{c.arm_name}` vs `{c.baseline_name}`" if pairs else f"`{c.arm_name}`"
    return "; ".join(f"{name} for {', '.join(map(who, cs))}" for name, cs in groups.items())


def unique_messages(items: Iterable[str]) -> list[str]:
    """Non-empty items, duplicates dropped, first-seen order kept."""
    return list(dict.fromkeys(i for i in items if i))


def is_finite_number(x) -> bool:
    return x is not None and isinstance(x, int | float | np.floating) and math.isfinite(x)


def _compare(classified: pd.DataFrame, plan: MetricPlan, **kw) -> tuple[Family | None, list[Note]]:
    """`compare_classified` with its warnings collected as notes, and None (with why) on bad
    input."""
    try:
        with collect_notes() as notes:
            fam = compare_classified(classified, plan, **kw)
    except ValueError as e:
        return None, [Note(str(e))]
    return fam, notes


def analyse(study: StudyData, *, rng=0, plan: Mapping | None = None) -> StudyAnalysis:
    """Resolve the plan (`plan` overrides the study's), classify the runs once, compute
    everything from that one classified table."""
    mplan, classified = study.analysed(study.metric_plan(**(plan or {})))
    study = replace(study, runs=classified)  # checked: status filled, seeds int, outcomes
    arms = study.arms()
    notes: list[Note] = [*mplan.notes, *unanalysed_runs(classified)]
    summary = (arm_frame(study, plan=mplan, classified=classified) if arms
               else pd.DataFrame(columns=SUMMARY_COLUMNS))
    unjudged = {a: why for a in arms if (why := why_unjudged(classified, a, mplan))}
    analysable = [a for a in arms if a not in unjudged]
    fam = fam_all = None
    # Every arm goes to the family, so its Holm text names the comparisons not judged.
    if mplan.baseline in analysable and len(analysable) >= 2:
        fam, raised = _compare(classified, mplan, arms=arms, rng=rng)
        notes += raised
        if len(analysable) >= 3:
            fam_all, raised = _compare(classified, mplan, arms=arms, pairs="all", rng=rng)
            notes += raised
    integrity = integrity_checks(study.runs, study.epochs, study.meta or {}, arms)
    tolerance = noise_tolerance(mplan, study.n_test(mplan.metric))
    integrity["flags"] = outcome_flags(classified, arms, mplan, tolerance) + integrity["flags"]
    noise = (testset_noise_table(study, fam, mplan.baseline, rng)
             if mplan.metric == "test_acc" else None)
    return StudyAnalysis(
        study=study, plan=mplan, arms=arms, analysable=analysable,
        unjudged=unjudged, summary=summary, family=fam,
        family_all=fam_all,
        frame=family_frame(fam, mplan.metric) if fam else pd.DataFrame(columns=COMPARISON_COLUMNS),
        frame_all=family_frame(fam_all, mplan.metric) if fam_all else None,
        integrity=integrity, tolerance=tolerance, noise=noise, notes=notes,
        palette=arm_palette(arms))


def testset_noise_table(study: StudyData, fam: Family | None, baseline: str,
                        rng) -> pd.DataFrame | None:
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
        widening = (two.high - two.low) / (seeds.high - seeds.low) if seeds.high > seeds.low else None
        rows.append({"arm": c.arm_name,
                     f"Δ vs {baseline}": number(two.estimate, signed=True, minus=MINUS),
                     "t CI (seeds)": interval(c.ci_low, c.ci_high, signed=True, minus=MINUS),
                     "bootstrap CI (seeds)": interval(seeds.low, seeds.high, signed=True, minus=MINUS),
                     "bootstrap CI (seeds + test images)": interval(two.low, two.high, signed=True,
                                                                    minus=MINUS),
                     "widening by test images": "n/a" if widening is None else "×" + number(widening)})
    return pd.DataFrame(rows) if rows else None
