"""Compare one arm with a baseline over seeds.

PRIMARY TEST RULE
-----------------
* ``paired=True`` (seed i of the arm shares data order / init with seed i of
  the baseline): the **paired t-test** on the per-seed differences.
* ``paired=False``: **Welch's t-test** (unequal variances).

Why: (1) the final accuracy of a run is the sum of many small random
influences (initialisation, data order, dropout, non-deterministic kernels),
so seed-to-seed variation is close to normal and t-tests keep their nominal
false-positive rate even at 3-10 seeds (checked by simulation in the tests).
(2) Exact permutation and rank tests are valid without normality but their
p-values are discrete: with 5 paired seeds the smallest two-sided p-value is
2/2^5 = 0.0625, so they can never reject at 0.05 and have little power at the
n that deep-learning studies can afford. (3) Welch rather than Student because
an ablation can change the seed variance (an unstable arm); when variances
are equal Welch loses almost nothing. (4) The verdict's test is the same
computation as the reported confidence interval, so the two never disagree.

The exact permutation test and Mann-Whitney U / Wilcoxon signed-rank are run as
robustness checks. When they disagree with the primary test at the level it is judged at
(alpha, or Holm's alpha/m in a family), or cannot reach that level at these n, a
significant verdict says so in its reason (non-normal seed values, e.g. an arm whose runs
sometimes fail, are exactly where the t-test and the exact tests part ways).

ZERO VARIANCE: when the per-seed differences (paired) or both arms (unpaired) do not vary
beyond float round-off, the t statistic is undefined (0/0 or x/0). The primary test is then
the exact permutation test, whose p-value cannot go below 2/2^n (paired) or
2/C(n1+n2, n1): a constant shift over 2 seeds is p = 0.5, never p = 0.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from analysis._checks import as_rng, check_bool, check_count, check_positive, check_probability
from analysis.contract import DIRECTIONS
from analysis.formatting import significant
from analysis.stats.direction import sign
from analysis.stats.paired_tests import (
    MAX_EXACT_PERMUTATIONS,
    clean_arms,
    effect_size,
    min_attainable_p,
    primary_result,
    robustness_checks,
    tost,
    zero_variance,
)
from analysis.stats.power import seeds_needed as _seeds_needed
from analysis.stats.verdicts import Verdict, decide
from analysis.types import EffectSize, Equivalence, Interval, Note, Sensitivity, TestResult

if TYPE_CHECKING:  # for annotations only: failures needs pandas, which comparison does not
    from analysis.stats.failures import OutcomeComparison

# Re-exported: callers import these from here (`analysis.stats.paired.min_attainable_p`).
__all__ = ["MAX_EXACT_PERMUTATIONS", "Comparison", "Equivalence", "compare", "judged",
           "min_attainable_p", "primary_test"]


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """Result of `compare`. All differences are ``arm - baseline`` in metric units.

    ``ci_low``/``ci_high`` come from the primary t-test and are *not* adjusted
    for multiplicity; ``p_adjusted`` is (Holm, see `compare_family`). A lone
    `compare` is a family of one, so ``p_adjusted == primary.pvalue``.
    """

    arm_name: str
    baseline_name: str
    paired: bool
    n_arm: int
    n_baseline: int
    mean_arm: float
    mean_baseline: float
    diff: float
    confidence: float
    ci_low: float
    ci_high: float
    sd: float  # sd of paired differences (paired) or sqrt of the mean variance (unpaired)
    effect_size: EffectSize
    prob_improvement: float  # P(arm better than baseline), ties count half
    primary: TestResult
    robustness: tuple[TestResult, ...]
    robust_p_adjusted: tuple[float, ...]  # robustness p-values at the primary's level
    equivalence: Equivalence
    sensitivity: Sensitivity
    alpha: float
    margin: float
    p_adjusted: float
    family_size: int
    notes: tuple[Note, ...]
    direction: str = "maximize"  # "minimize": lower is better (a loss, an error rate)
    unpaired_fallback: bool = False  # the arms were meant to be paired but share < 2 seeds
    outcomes: OutcomeComparison | None = None  # failure rates, when known

    @cached_property
    def verdict(self) -> Verdict:
        """`analysis.stats.verdicts.decide` of these fields: derived, so never stale or missing."""
        return decide(self)

    @property
    def better_sign(self) -> int:
        """+1 when a larger value is better (maximize), -1 when smaller is (minimize)."""
        return sign(self.direction)

    def confidence_interval(self) -> Interval:
        return Interval(estimate=self.diff, low=self.ci_low, high=self.ci_high,
                        confidence=self.confidence, method=self.primary.name)


def primary_test(arm, baseline, *, paired: bool, confidence: float = 0.95) -> TestResult:
    """The primary test alone (paired t or Welch t) with its CI of ``arm - baseline``.

    This is exactly what `compare` uses for ``primary`` and hence for the
    verdict; exposed so that simulations can call it cheaply.
    """
    paired = check_bool(paired, "paired")
    confidence = check_probability(confidence, "confidence")
    notes: list[Note] = []
    x, y = clean_arms(arm, baseline, paired, ("arm", "baseline"), notes)
    return primary_result(x, y, paired, confidence, notes)


def compare(
    arm,
    baseline,
    *,
    paired: bool,
    rng,
    alpha: float = 0.05,
    margin: float = 0.5,
    confidence: float = 0.95,
    power: float = 0.8,
    n_resamples: int = 9_999,
    robustness: bool = True,
    exact: bool = False,
    plan_alpha: float | None = None,
    arm_name: str = "arm",
    baseline_name: str = "baseline",
    direction: str = "maximize",
) -> Comparison:
    """Does `arm` differ from `baseline`? (values: one per seed, metric units)

    Parameters
    ----------
    arm, baseline : array_like, 1-D
        Per-seed values. NaNs are dropped with a warning (for paired data the
        whole pair). At least 2 finite values (pairs) are required.
    paired : bool
        True when seed i of both arms shares seed-controlled randomness.
    rng : numpy.random.Generator or int
        Randomness for Monte Carlo permutation tests (only used when there are
        more than ``MAX_EXACT_PERMUTATIONS`` relabellings).
    alpha : float
        Level of the primary test and of the TOST equivalence test (< 0.5).
    margin : float
        Equivalence margin: differences inside ``±margin`` do not matter.
    confidence : float
        Level of the reported intervals for ``diff`` and the effect size.
    power : float
        Target power for ``sensitivity.seeds_needed``.
    n_resamples : int
        Monte Carlo resamples when the exact permutation test is too large.
    robustness : bool
        Run the permutation and rank tests (skip them in big simulations).
    exact : bool
        Use the exact permutation test (sign-flip when paired) as the primary test: for
        arms that mix runs that learned with runs that did not (`analysis.stats.failures`),
        where the t-test's normality is wrong by construction.
    plan_alpha : float, optional
        Level at which ``sensitivity.seeds_needed`` is planned (default `alpha`; `compare_family`
        passes Holm's first step alpha/m).
    direction : {"maximize", "minimize"}
        Whether a larger value of the metric is better (accuracy) or a smaller one (loss).
        Only the labels better/worse and ``prob_improvement`` depend on it; ``diff`` is
        always ``arm - baseline``.

    Returns
    -------
    Comparison

    Notes
    -----
    The primary test rule and its rationale, and the zero-variance rule, are in this
    module's docstring; the effect sizes in `analysis.stats.paired_tests.effect_size`; the verdict
    rule in `analysis.stats.verdicts.decide`. ``sensitivity.seeds_needed`` is planned for a true difference of
    ``margin`` (the smallest one that matters, not the noisy observed one). A lone call is
    a family of one; use `compare_family` for Holm-adjusted verdicts over several arms.
    """
    paired = check_bool(paired, "paired")
    alpha = check_probability(alpha, "alpha")
    if alpha >= 0.5:
        raise ValueError(f"`alpha` must be < 0.5 (TOST uses a 1 - 2*alpha interval), got {alpha}")
    margin = check_positive(margin, "margin")
    confidence = check_probability(confidence, "confidence")
    power = check_probability(power, "power")
    n_resamples = check_count(n_resamples, "n_resamples")
    robustness = check_bool(robustness, "robustness")
    exact = check_bool(exact, "exact")
    if direction not in DIRECTIONS:
        raise ValueError(f"`direction` must be 'maximize' or 'minimize', got {direction!r}")

    notes: list[Note] = []
    x, y = clean_arms(arm, baseline, paired, ("arm", "baseline"), notes)
    prim, checks, degenerate = _tests(x, y, paired=paired, confidence=confidence, rng=rng,
                                      n_resamples=n_resamples, robustness=robustness, exact=exact, notes=notes)
    sd = _seed_sd(x, y, paired, degenerate)
    es, es_lo, es_hi = (None, None, None) if degenerate else effect_size(x, y, paired, confidence)
    # Plan for the smallest difference that matters (the margin), not for the
    # observed diff: "post-hoc power" at the observed diff is uninformative.
    needed = (_seeds_needed(margin, sd, paired=paired, alpha=plan_alpha or alpha, power=power)
              if sd > 0 else None)

    assert prim.ci is not None  # the primary test always carries its interval
    c = Comparison(
        arm_name=arm_name, baseline_name=baseline_name, paired=paired,
        n_arm=x.size, n_baseline=y.size, mean_arm=float(np.mean(x)),
        mean_baseline=float(np.mean(y)), diff=float(np.mean(x) - np.mean(y)),
        confidence=confidence, ci_low=prim.ci.low, ci_high=prim.ci.high, sd=sd,
        effect_size=EffectSize(name="d_z" if paired else "hedges_g", value=es, ci_low=es_lo,
                               ci_high=es_hi),
        prob_improvement=_prob_improvement(x, y, paired, direction),
        primary=prim, robustness=checks, robust_p_adjusted=tuple(t.pvalue for t in checks),
        equivalence=tost(x, y, paired, margin, alpha),
        sensitivity=Sensitivity(power=power, seeds_needed=needed, floor_level=alpha,
                                min_attainable_p=min_attainable_p(x.size, y.size, paired=paired)),
        alpha=alpha, margin=margin, p_adjusted=prim.pvalue, family_size=1, notes=tuple(notes),
        direction=direction,
    )
    return judged(c, level=alpha, robust_p_adjusted=tuple(t.pvalue for t in checks))


def _tests(x, y, *, paired: bool, confidence: float, rng, n_resamples: int, robustness: bool, exact: bool,
           notes: list[Note]) -> tuple[TestResult, tuple[TestResult, ...], bool]:
    """The primary test (the t-test, or with `exact` the exact permutation test unless the
    values do not vary), the robustness checks (none without `robustness`), and whether the
    values do not vary (module docstring: ZERO VARIANCE)."""
    prim = primary_result(x, y, paired, confidence, notes)
    degenerate = zero_variance(x, y, paired)
    checks: tuple[TestResult, ...] = ()
    if robustness or (exact and not degenerate):
        checks = robustness_checks(x, y, paired, as_rng(rng), n_resamples, notes, rank=robustness)
    if exact and not degenerate:
        prim = _exact_primary(checks[0], prim)
        checks = checks if robustness else ()
    return prim, checks, degenerate


def _exact_primary(permutation: TestResult, t_result: TestResult) -> TestResult:
    """The exact permutation test as the primary test, keeping the t interval to show."""
    return replace(permutation, ci=t_result.ci, df=None, reason=(
        "primary rule: an arm mixes runs that learned with runs that did not, so the seed "
        "values are not near-normal and the t-test's error rate is off; the exact "
        "permutation test needs no normality (the CI shown is still the t interval)"))


def _seed_sd(x, y, paired: bool, degenerate: bool) -> float:
    """sd of the paired differences, or sqrt of the mean of the two arms' variances."""
    if degenerate:
        return 0.0
    if paired:
        return float(np.std(x - y, ddof=1))
    return float(np.sqrt((np.var(x, ddof=1) + np.var(y, ddof=1)) / 2))


def _prob_improvement(x, y, paired: bool, direction: str) -> float:
    """P(arm better than baseline), ties count half: over the pairs, or over all n1 n2
    couples when unpaired (the common-language effect size, Mann-Whitney U / (n1 n2))."""
    up = sign(direction)
    if paired:
        d = up * (x - y)
        return float(np.mean(d > 0) + 0.5 * np.mean(d == 0))
    better = (up * x[:, None] > up * y[None, :])
    return float(np.mean(better + 0.5 * (x[:, None] == y[None, :])))


def judged(c: Comparison, *, level: float, robust_p_adjusted: tuple[float, ...]) -> Comparison:
    """`c` with the notes (and so the verdict) that depend on the level it is judged at.

    `level` is where the exact-test floor must fall for an exact test to be able to confirm
    a difference (alpha alone; alpha/m, Holm's first step, in a family of m), and
    `robust_p_adjusted` are the robustness p-values on the primary p's scale (raw alone,
    Holm-adjusted in a family), so that "disagrees" means: one is below alpha, the other not.
    """
    notes = [n for n in c.notes if n.kind not in _JUDGED]
    if c.sensitivity.min_attainable_p >= level:
        design = f"{c.n_arm} paired seeds" if c.paired else f"{c.n_arm} vs {c.n_baseline} seeds"
        test = "sign-flip" if c.paired else "permutation"
        where = (f"alpha={c.alpha:g}" if level == c.alpha else
                 f"alpha/{c.family_size} = {significant(level, 4)} (Holm's first step over "
                 f"{c.family_size} comparisons)")
        notes.append(Note(
            f"exact-test floor: with {design} an exact {test} test cannot reach p < "
            f"{significant(c.sensitivity.min_attainable_p, 4)}, so it cannot be significant at {where} (nor can the "
            f"{'Wilcoxon' if c.paired else 'Mann-Whitney'} test); the t-test can, because it "
            "assumes near-normal seed variation", kind="exact_floor"))
    is_significant = c.p_adjusted < c.alpha
    for t, p in zip(c.robustness, robust_p_adjusted, strict=False):
        if is_significant and p >= c.alpha and c.sensitivity.min_attainable_p < level:
            notes.append(Note(f"robustness: the {t.name} does not confirm the primary result (p = "
                              f"{significant(p)} vs {significant(c.p_adjusted)} at the same level); "
                              "check for outlier seeds or a bimodal arm", kind="not_confirmed"))
        elif p < c.alpha <= c.p_adjusted:
            notes.append(Note(f"robustness: the {t.name} is significant (p = {significant(p)}) but the "
                              f"primary test is not (p = {significant(c.p_adjusted)}); check for outlier "
                              "seeds or skew", kind="robust_only"))
    return replace(c, notes=tuple(notes), robust_p_adjusted=robust_p_adjusted,
                   sensitivity=replace(c.sensitivity, floor_level=level))


# The kinds of note `judged` writes (and rewrites when a family changes the level).
_JUDGED = ("exact_floor", "not_confirmed", "robust_only")
