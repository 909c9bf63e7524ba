"""Failures are outcomes, not missing data: runs that diverged or never left chance.

A recipe that diverges in some seeds, or sometimes stays at chance, is worse for it; dropping
those runs and averaging the survivors makes an unstable recipe look good (4 of 8 runs
diverged, the 4 survivors slightly better: "better"). So every run is given an outcome:

* ``learned``: a finite final value beyond the noise of chance (or chance unknown);
* ``not_learned``: "did not learn": a final value within the test-set noise of chance, i.e.
  not better than chance by more than ``noise_tolerance`` (3 binomial sds of a chance-level
  accuracy on the n test examples; 1% of the chance value when n is unknown or the metric is
  not an accuracy). Chance itself comes from `analysis.stats.metric_plan`;
* ``diverged``: status "diverged", or a run marked complete with no finite value (NaN/inf:
  a loss that blew up);
* ``failed`` (an exception: the infrastructure, not the recipe) and any other status:
  excluded from the statistics and listed, as before.

DEFAULT: the mean comparison uses **all runs** (``population="all"``): a run that did not
learn counts with its final value, a diverged run at the chance value (the best a model
that learned nothing can claim; when chance is unknown, diverged runs cannot be scored and
stay out of the mean, and a "better" verdict is then withheld if the arm diverges more often
than the baseline). Why this default: the question an ablation asks is "what does this
recipe give when I run it", and failed seeds are part of that answer; the survivor mean
answers a different question ("how good is it when it works"), which is shown next to it.
``population="learned"`` makes the survivor mean the verdict's basis instead; the failure
rates are then compared on their own and a higher failure rate still blocks "better".
Failure rates are compared between arms by Fisher's exact test (two-sided, on the 2x2 table
failed-or-not x arm), Holm-adjusted over the family like the mean comparisons.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analysis._checks import holm
from analysis.contract import COMPLETE, DIVERGED, FAILED
from analysis.formatting import interval, number, significant
from analysis.stats.direction import sign
from analysis.stats.metric_plan import MetricPlan

FAILURE_OUTCOMES = ("not_learned", "diverged")
NOISE_SDS = 3.0  # a chance-level model stays within 3 binomial sds of chance 99.7% of the time


def noise_tolerance(plan: MetricPlan, n_test: int | None) -> float | None:
    """How far from chance a final value must be to count as "learned" (metric units)."""
    if plan.chance is None:
        return None
    if plan.percent and n_test:
        unit = 1.0 if "fractions" in plan.chance_source else 100.0
        p = min(max(plan.chance / unit, 0.0), 1.0)
        return NOISE_SDS * unit * math.sqrt(p * (1 - p) / n_test)
    return 0.01 * abs(plan.chance)


def at_chance(values, chance: float, tolerance: float, direction: str) -> np.ndarray:
    """Which `values` are no better than `chance` by more than `tolerance` (metric units): the
    "did not learn" rule, owned here and used by the race's never-learned retirement too. NaN
    is never at chance (not a value)."""
    with np.errstate(invalid="ignore"):
        return sign(direction) * (np.asarray(values, dtype=float) - chance) <= tolerance


def classify(runs: pd.DataFrame, plan: MetricPlan, n_test: int | None = None) -> pd.DataFrame:
    """`runs` (checked by `plan.check_runs`) with ``outcome`` and ``score`` columns: the score
    is what the all-runs mean uses (NaN: not scoreable)."""
    out = runs.copy()
    value = out[plan.metric].to_numpy(dtype=float)
    status = out["status"].to_numpy(dtype=str)
    finite = np.isfinite(value)
    tol = noise_tolerance(plan, n_test)
    outcome = np.full(len(out), "other", dtype=object)
    ran = np.isin(status, (COMPLETE, DIVERGED))
    outcome[status == FAILED] = "failed"
    outcome[ran & ~finite] = "diverged"
    outcome[status == DIVERGED] = "diverged"
    learned = (status == COMPLETE) & finite
    outcome[learned] = "learned"
    if tol is not None and plan.chance is not None:
        outcome[learned & at_chance(value, plan.chance, tol, plan.direction)] = "not_learned"
    score = np.where(np.isin(outcome, ("learned", "not_learned")), value, np.nan)
    if plan.chance is not None:
        score = np.where(outcome == "diverged", plan.chance, score)
    out["outcome"] = outcome
    out["score"] = score
    return out


def scored(classified: pd.DataFrame, arm: str, population: str) -> pd.Series:
    """seed -> value the mean comparison uses for `arm` under `population`."""
    keep = ("learned",) if population == "learned" else ("learned", *FAILURE_OUTCOMES)
    sel = classified[(classified["arm"] == arm) & classified["outcome"].isin(keep)]
    sel = sel[np.isfinite(sel["score"].to_numpy(dtype=float))]
    return sel.set_index("seed")["score"].astype(float).sort_index()


def mixes(classified: pd.DataFrame, arm: str, population: str) -> bool:
    """Do the values the mean comparison uses for `arm` mix runs that learned with failures
    (scored at their final value or at chance)? Then they are bimodal, not near-normal."""
    if population == "learned":
        return False
    sel = classified[(classified["arm"] == arm)
                     & np.isfinite(classified["score"].to_numpy(dtype=float))]
    kinds = set(sel["outcome"])
    return "learned" in kinds and bool(kinds & set(FAILURE_OUTCOMES))


_KINDS = (("failed", "failed"), ("diverged", "diverged"), ("not_learned", "did not learn"),
          ("learned", "learned"), ("other", "have another status"))


def why_unjudged(classified: pd.DataFrame, arm: str, plan: MetricPlan) -> str | None:
    """Why `arm` cannot be compared under `plan` (too few values to score), or None when it
    can. The reason names the runs' outcomes and what would make them judgeable."""
    sel = classified[classified["arm"] == arm]
    n = len(scored(classified, arm, plan.population))
    if n >= 2:
        return None
    if sel.empty:
        return "no run of it in the runs table"
    counts = {k: int((sel["outcome"] == k).sum()) for k, _ in _KINDS}
    total = len(sel)
    for kind, word in _KINDS:  # every run has the same outcome: say it in those words
        if counts[kind] == total and n == 0 and kind != "learned":
            what = f"all {total} runs {word}" if total > 1 else f"its only run {word}"
            return what + _how_to_score(kind, plan)
    if total == n == 1:
        return "a single run, and a comparison needs 2"
    parts = ", ".join(f"{counts[k]} {w}" for k, w in _KINDS if counts[k])
    unscorable = next((k for k in ("diverged", "not_learned") if counts[k]), "failed")
    return (f"{'no' if n == 0 else 'only 1'} of its {total} runs has a value to compare "
            f"({parts}); a comparison needs 2" + _how_to_score(unscorable, plan))


def _how_to_score(kind: str, plan: MetricPlan) -> str:
    """What would let runs of this outcome count in the mean comparison."""
    if kind == "diverged" and plan.population == "all" and plan.chance is None:
        return (": no chance level to judge them against; declare `chance` (analysis.chance "
                "in study.json, or --chance)")
    if kind in FAILURE_OUTCOMES and plan.population == "learned":
        return ": the mean over runs that learned has nothing to average (--failures all scores them)"
    return ""


@dataclass(frozen=True)
class ArmOutcomes:
    arm: str
    runs: int  # runs that ran (learned + not learned + diverged)
    learned: int
    not_learned: int
    diverged: int
    excluded: int  # failed (exception) or another status: not outcomes of the recipe

    @property
    def failures(self) -> int:
        return self.not_learned + self.diverged

    @property
    def bimodal(self) -> bool:
        """Some runs learned and some did not: the mean and the t-test describe a mixture."""
        return self.learned > 0 and self.failures > 0

    def rate_text(self) -> str:
        parts = [f"{n} {w}" for n, w in ((self.diverged, "diverged"),
                                         (self.not_learned, "did not learn")) if n]
        return f"{self.failures} of {self.runs}" + (f" ({', '.join(parts)})" if parts else "")


def arm_outcomes(classified: pd.DataFrame, arm: str) -> ArmOutcomes:
    o = classified.loc[classified["arm"] == arm, "outcome"].value_counts()
    n = {k: int(o.get(k, 0)) for k in ("learned", "not_learned", "diverged", "failed", "other")}
    return ArmOutcomes(arm=arm, runs=n["learned"] + n["not_learned"] + n["diverged"],
                       learned=n["learned"], not_learned=n["not_learned"],
                       diverged=n["diverged"], excluded=n["failed"] + n["other"])


@dataclass(frozen=True)
class OutcomeComparison:
    """Failure rates of one comparison's two arms and what the mean comparison used."""

    arm: ArmOutcomes
    baseline: ArmOutcomes
    pvalue: float  # Fisher's exact test of the failure rates, two-sided
    p_adjusted: float  # Holm over the family
    population: str
    other_diff: float | None  # the mean difference under the other population
    unscored_excess: str  # non-empty: the arm fails more often in runs the mean left out
    sentence: str  # what the verdict's reason says about failures ("" when none)


def fisher(a: ArmOutcomes, b: ArmOutcomes) -> float:
    if a.runs == 0 or b.runs == 0 or (a.failures + b.failures) == 0:
        return 1.0
    table = [[a.failures, a.runs - a.failures], [b.failures, b.runs - b.failures]]
    return float(stats.fisher_exact(table, alternative="two-sided").pvalue)


def _mean_diff(a: pd.Series, b: pd.Series) -> float | None:
    return float(a.mean() - b.mean()) if len(a) and len(b) else None


def compare_outcomes(classified: pd.DataFrame, pairs: Sequence[tuple[str, str]],
                     plan: MetricPlan) -> dict[tuple[str, str], OutcomeComparison]:
    """Failure-rate comparison of each (arm, baseline) pair, Holm-adjusted over the pairs."""
    if not pairs:
        return {}
    arms = {a: arm_outcomes(classified, a) for pair in pairs for a in pair}
    other = "learned" if plan.population == "all" else "all"
    used = {a: scored(classified, a, plan.population) for a in arms}
    alt = {a: scored(classified, a, other) for a in arms}
    raw = [fisher(arms[a], arms[b]) for a, b in pairs]
    adj = holm(raw)
    out = {}
    for (a, b), p, q in zip(pairs, raw, adj, strict=True):
        oa, ob = arms[a], arms[b]
        other_diff = _mean_diff(alt[a], alt[b])
        ua, ub = (x.runs - len(used[x.arm]) for x in (oa, ob))
        excess = ""
        if oa.runs and ob.runs and ua / oa.runs > ub / ob.runs:
            excess = (f"{a} has {ua} of {oa.runs} runs that the mean leaves out "
                      f"(diverged or did not learn) vs {ub} of {ob.runs} for {b}: "
                      "a recipe that fails more often is not better for the runs that "
                      "survive.")
        sentence = ""
        if oa.failures or ob.failures:
            basis = ("all runs (failures at their final value"
                     + (f", diverged at chance {plan.chance:g})" if plan.chance is not None
                        else "; diverged runs cannot be scored without a chance level)")
                     if plan.population == "all" else "only the runs that learned")
            sentence = (f"Failures: {a} {oa.rate_text()}, {b} {ob.rate_text()}; Fisher's exact "
                        f"test p = {significant(p)}"
                        + (f" (Holm {significant(q)})" if len(pairs) > 1 else "")
                        + (" — the failure rates differ." if q < plan.alpha else ".")
                        + f" The mean comparison uses {basis}"
                        + (f"; over {'the runs that learned' if other == 'learned' else 'all runs'}"
                           f" the difference is {significant(other_diff, signed=True)}."
                           if other_diff is not None and math.isfinite(other_diff) else "."))
        out[(a, b)] = OutcomeComparison(arm=oa, baseline=ob, pvalue=p, p_adjusted=float(q),
                                        population=plan.population, other_diff=other_diff,
                                        unscored_excess=excess, sentence=sentence)
    return out


def outcome_table(classified: pd.DataFrame, arms: Sequence[str]) -> pd.DataFrame:
    """Per arm, for the report: runs, outcomes, failure rate with its Wilson 95% CI, bimodal."""
    rows = []
    for arm in arms:
        o = arm_outcomes(classified, arm)
        if o.runs:
            ci = stats.binomtest(o.failures, o.runs).proportion_ci(method="wilson")
            rate = (f"{number(100 * o.failures / o.runs, 0)}% "
                    f"{interval(100 * ci.low, 100 * ci.high, 0)}")
        else:
            rate = "n/a"
        rows.append({"arm": arm, "runs": o.runs, "learned": o.learned,
                     "did not learn": o.not_learned, "diverged": o.diverged,
                     "failure rate (95% CI)": rate, "bimodal": "YES" if o.bimodal else "no"})
    return pd.DataFrame(rows, columns=["arm", "runs", "learned", "did not learn", "diverged",
                                       "failure rate (95% CI)", "bimodal"])
