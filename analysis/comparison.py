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

import math
import warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from ._checks import (
    as_rng,
    check_bool,
    check_count,
    check_positive,
    check_probability,
    clean_1d,
    clean_pairs,
    negligible_spread,
    note,
)
from .contract import DIRECTIONS
from .numbers import significant
from .power import seeds_needed as _seeds_needed
from .results import Interval, TestResult
from .verdicts import Verdict, decide

if TYPE_CHECKING:  # for annotations only: failures needs pandas, which comparison does not
    from .failures import OutcomeComparison

# Enumerate every relabelling when there are at most this many (milliseconds
# with scipy's vectorised statistic); beyond that use Monte Carlo resampling.
MAX_EXACT_PERMUTATIONS = 100_000


@dataclass(frozen=True, kw_only=True)
class Equivalence:
    """TOST equivalence test of ``diff`` against ``±margin``.

    Two one-sided t-tests (same t-distribution as the primary test):
    H0 ``diff <= -margin`` and H0 ``diff >= +margin``. ``pvalue`` is the larger
    of the two; equivalence holds iff ``pvalue < alpha``, which is the same as
    the ``1 - 2 alpha`` CI lying inside ``±margin``.
    """

    margin: float
    pvalue: float
    pvalue_lower: float
    pvalue_upper: float
    ci_low: float
    ci_high: float
    ci_confidence: float
    equivalent: bool  # pvalue < alpha for this comparison on its own
    p_adjusted: float  # Holm-adjusted across the family; == pvalue for a lone compare()


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
    effect_size: float | None  # None when the sd is zero
    effect_size_name: str  # "d_z" (paired) or "hedges_g" (unpaired)
    effect_size_ci_low: float | None
    effect_size_ci_high: float | None
    prob_improvement: float  # P(arm better than baseline), ties count half
    primary: TestResult
    robustness: tuple[TestResult, ...]
    equivalence: Equivalence
    alpha: float
    margin: float
    power: float
    min_attainable_p: float  # of the exact permutation test at these n
    seeds_needed: int | None  # per arm, to detect ±margin with `power`
    p_adjusted: float
    family_size: int
    verdict: Verdict
    notes: tuple[str, ...]
    direction: str = "maximize"  # "minimize": lower is better (a loss, an error rate)
    floor_level: float | None = None  # the level the exact-test floor is checked against
    robust_p_adjusted: tuple[float, ...] = ()  # robustness p-values at the primary's level
    unpaired_fallback: bool = False  # the arms were meant to be paired but share < 2 seeds
    outcomes: OutcomeComparison | None = None  # failure rates, when known

    @property
    def better_sign(self) -> int:
        """+1 when a larger value is better (maximize), -1 when smaller is (minimize)."""
        return 1 if self.direction == "maximize" else -1

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
    notes: list[str] = []
    x, y = _clean(arm, baseline, paired, ("arm", "baseline"), notes)
    return _primary(x, y, paired, confidence, notes)


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
        Target power for ``seeds_needed``.
    n_resamples : int
        Monte Carlo resamples when the exact permutation test is too large.
    robustness : bool
        Run the permutation and rank tests (skip them in big simulations).
    exact : bool
        Use the exact permutation test (sign-flip when paired) as the primary test: for
        arms that mix runs that learned with runs that did not (`analysis.failures`),
        where the t-test's normality is wrong by construction.
    plan_alpha : float, optional
        Level at which ``seeds_needed`` is planned (default `alpha`; `compare_family`
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
    Primary test rule: paired t-test when ``paired``, Welch's t-test
    otherwise (rationale in the module docstring: near-normal seed noise,
    nominal error rate at tiny n where exact tests cannot even reach alpha,
    robustness to unequal seed variance). The exact permutation test and
    Wilcoxon / Mann-Whitney are reported in ``robustness``.

    Verdict rule (`analysis.verdicts.decide`): significant -> better/worse by
    sign (kept even when also equivalent, with "practically negligible" in
    the reason); else TOST-equivalent within ±margin -> equivalent; else
    inconclusive with ``seeds_needed`` (per arm, for `power` against a true
    difference of ``margin``: the smallest one that matters, not the noisy
    observed one). A lone call is a family of one; use `compare_family` for
    Holm-adjusted verdicts over several arms.

    Effect size: Hedges' g (pooled sd, exact small-sample correction) when
    unpaired, d_z = mean(d)/sd(d) when paired; their CIs use the usual normal
    approximations (Hedges & Olkin) and are rough at a handful of seeds.
    Zero variance (every paired difference equal, or both arms constant, up
    to float round-off) warns; the primary test is then the exact permutation
    test (p = 1 if the means are equal, else its floor 2/2^n or
    2/C(n1+n2, n1): never 0) and the effect size is None.
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

    notes: list[str] = []
    x, y = _clean(arm, baseline, paired, ("arm", "baseline"), notes)
    n1, n2 = x.size, y.size
    diff = float(np.mean(x) - np.mean(y))
    prim = _primary(x, y, paired, confidence, notes)
    equivalence = _tost(x, y, paired, margin, alpha)

    degenerate = _zero_variance(x, y, paired)
    sd = 0.0 if degenerate else float(np.std(x - y, ddof=1)) if paired else float(
        np.sqrt((np.var(x, ddof=1) + np.var(y, ddof=1)) / 2))
    es, es_lo, es_hi = (None, None, None) if degenerate else _effect_size(x, y, paired,
                                                                          confidence)
    sign = 1 if direction == "maximize" else -1
    if paired:
        d = sign * (x - y)
        prob = float(np.mean(d > 0) + 0.5 * np.mean(d == 0))
    else:
        # Common-language effect size: Mann-Whitney U / (n1 n2), ties count half.
        better = (sign * x[:, None] > sign * y[None, :])
        prob = float(np.mean(better + 0.5 * (x[:, None] == y[None, :])))

    min_p = min_attainable_p(n1, n2, paired=paired)
    checks: tuple[TestResult, ...] = ()
    if robustness or (exact and not degenerate):
        checks = _robustness(x, y, paired, as_rng(rng), n_resamples, notes, rank=robustness)
    if exact and not degenerate:
        perm = checks[0]
        prim = replace(perm, ci=prim.ci, df=None, reason=(
            "primary rule: an arm mixes runs that learned with runs that did not, so the seed "
            "values are not near-normal and the t-test's error rate is off; the exact "
            "permutation test needs no normality (the CI shown is still the t interval)"))
        checks = checks if robustness else ()

    # Plan for the smallest difference that matters (the margin), not for the
    # observed diff: "post-hoc power" at the observed diff is uninformative.
    needed = (_seeds_needed(margin, sd, paired=paired, alpha=plan_alpha or alpha, power=power)
              if sd > 0 else None)

    assert prim.ci is not None  # the primary test always carries its interval
    c = Comparison(
        arm_name=arm_name, baseline_name=baseline_name, paired=paired,
        n_arm=n1, n_baseline=n2, mean_arm=float(np.mean(x)), mean_baseline=float(np.mean(y)),
        diff=diff, confidence=confidence, ci_low=prim.ci.low, ci_high=prim.ci.high, sd=sd,
        effect_size=es, effect_size_name="d_z" if paired else "hedges_g",
        effect_size_ci_low=es_lo, effect_size_ci_high=es_hi, prob_improvement=prob,
        primary=prim, robustness=checks, equivalence=equivalence, alpha=alpha, margin=margin,
        power=power, min_attainable_p=min_p, seeds_needed=needed, p_adjusted=prim.pvalue,
        family_size=1, verdict=None, notes=tuple(notes), direction=direction,  # type: ignore[arg-type]  # judged() sets it
        floor_level=alpha, robust_p_adjusted=tuple(t.pvalue for t in checks),
    )
    return judged(c, level=alpha, robust_p_adjusted=tuple(t.pvalue for t in checks))


def judged(c: Comparison, *, level: float, robust_p_adjusted: tuple[float, ...]) -> Comparison:
    """`c` with the notes and verdict that depend on the level it is judged at.

    `level` is where the exact-test floor must fall for an exact test to be able to confirm
    a difference (alpha alone; alpha/m, Holm's first step, in a family of m), and
    `robust_p_adjusted` are the robustness p-values on the primary p's scale (raw alone,
    Holm-adjusted in a family), so that "disagrees" means: one is below alpha, the other not.
    """
    notes = [n for n in c.notes if not n.startswith(_JUDGED)]
    if c.min_attainable_p >= level:
        design = f"{c.n_arm} paired seeds" if c.paired else f"{c.n_arm} vs {c.n_baseline} seeds"
        test = "sign-flip" if c.paired else "permutation"
        where = (f"alpha={c.alpha:g}" if level == c.alpha else
                 f"alpha/{c.family_size} = {significant(level, 4)} (Holm's first step over "
                 f"{c.family_size} comparisons)")
        notes.append(
            f"{_JUDGED[0]}with {design} an exact {test} test cannot reach p < "
            f"{significant(c.min_attainable_p, 4)}, so it cannot be significant at {where} (nor can the "
            f"{'Wilcoxon' if c.paired else 'Mann-Whitney'} test); the t-test can, because it "
            "assumes near-normal seed variation")
    is_significant = c.p_adjusted < c.alpha
    for t, p in zip(c.robustness, robust_p_adjusted, strict=False):
        if is_significant and p >= c.alpha and c.min_attainable_p < level:
            notes.append(f"{_JUDGED[1]}the {t.name} does not confirm the primary result (p = "
                         f"{significant(p)} vs {significant(c.p_adjusted)} at the same level); "
                         "check for outlier seeds or a bimodal arm")
        elif p < c.alpha <= c.p_adjusted:
            notes.append(f"{_JUDGED[1]}the {t.name} is significant (p = {significant(p)}) but the "
                         f"primary test is not (p = {significant(c.p_adjusted)}); check for outlier "
                         "seeds or skew")
    c = replace(c, notes=tuple(notes), floor_level=level, robust_p_adjusted=robust_p_adjusted)
    return replace(c, verdict=decide(c))


# Prefixes of the notes `judged` writes (and rewrites when a family changes the level).
_JUDGED = ("exact-test floor: ", "robustness: ")


def min_attainable_p(n_arm: int, n_baseline: int | None = None, *, paired: bool) -> float:
    """Smallest two-sided p-value an exact permutation test can produce.

    Paired (sign flips): 2 / 2**n. Unpaired: 2 / C(n_arm + n_baseline, n_arm).
    The exact Wilcoxon and Mann-Whitney tests share these floors.
    """
    n_arm = check_count(n_arm, "n_arm")
    if paired:
        return min(1.0, 2.0 / 2.0**n_arm)
    n_baseline = check_count(n_baseline, "n_baseline")
    return min(1.0, 2.0 / math.comb(n_arm + n_baseline, n_arm))


# --- internals -------------------------------------------------------------


def _clean(arm, baseline, paired, names, notes):
    if paired:
        return clean_pairs(arm, baseline, names, notes, min_n=2)
    return (clean_1d(arm, names[0], notes, min_n=2), clean_1d(baseline, names[1], notes, min_n=2))


def _ttest(x, y, paired, alternative="two-sided"):
    if paired:
        return stats.ttest_rel(x, y, alternative=alternative)
    return stats.ttest_ind(x, y, equal_var=False, alternative=alternative)


def _zero_variance(x, y, paired) -> bool:
    if paired:
        return negligible_spread(x - y)
    return negligible_spread(x) and negligible_spread(y)


def _primary(x, y, paired, confidence, notes) -> TestResult:
    if paired:
        name = "paired t-test"
        assumptions = ("per-seed differences are roughly normal and independent across seeds")
        reason = ("primary rule: paired design -> paired t-test (seed noise is near-normal; "
                  "exact tests cannot reach small p with few seeds)")
    else:
        name = "Welch's t-test"
        assumptions = ("each arm's seed values are roughly normal and independent; "
                       "variances may differ")
        reason = ("primary rule: independent arms -> Welch's t-test (seed noise is "
                  "near-normal; robust to unequal seed variance)")
    diff = float(np.mean(x) - np.mean(y))
    if _zero_variance(x, y, paired):
        same = negligible_spread(np.r_[np.mean(x), np.mean(y)])
        floor = min_attainable_p(x.size, y.size, paired=paired)
        test = "exact sign-flip test" if paired else "exact permutation test"
        note("zero variance " + ("in the paired differences" if paired else "in both arms")
             + ": the t-test is undefined, so the primary test is the " + test + " ("
             + ("p = 1, equal means" if same else
                f"p = {significant(floor, 4)}, the smallest it can give with these seeds") + ")",
             notes, stacklevel=4)
        diff = 0.0 if same else diff
        return TestResult(
            name=test, statistic=diff, pvalue=1.0 if same else floor,
            assumptions="exchangeability under H0 (no normality needed)",
            reason="zero variance: the t statistic is undefined; the exact test's p-value is "
                   "its floor 2/2^n (paired) or 2/C(n1+n2, n1), never 0",
            method="degenerate (zero variance): exact test",
            df=None, ci=Interval(estimate=diff, low=diff, high=diff, confidence=confidence,
                                 method=test),
        )
    res = _ttest(x, y, paired)
    ci = res.confidence_interval(confidence)
    return TestResult(
        name=name, statistic=float(res.statistic), pvalue=float(res.pvalue),
        assumptions=assumptions, reason=reason, method="scipy.stats." + (
            "ttest_rel" if paired else "ttest_ind(equal_var=False)"),
        df=float(res.df),
        ci=Interval(estimate=diff, low=float(ci.low), high=float(ci.high),
                    confidence=confidence, method=name),
    )


def _tost(x, y, paired, margin, alpha) -> Equivalence:
    diff = float(np.mean(x) - np.mean(y))
    level = 1 - 2 * alpha
    if _zero_variance(x, y, paired):
        # The one-sided exact tests: a constant shift inside the margin is as extreme as the
        # data can be, so each one-sided p is half the two-sided floor (never 0).
        half = min_attainable_p(x.size, y.size, paired=paired) / 2
        p_lo = half if diff > -margin else 1.0
        p_hi = half if diff < margin else 1.0
        lo = hi = diff
    else:
        # Shifting the baseline by ∓margin turns each one-sided H0 into a
        # standard t-test against 0 with the same df as the primary test.
        p_lo = float(_ttest(x, y - margin, paired, alternative="greater").pvalue)
        p_hi = float(_ttest(x, y + margin, paired, alternative="less").pvalue)
        ci = _ttest(x, y, paired).confidence_interval(level)
        lo, hi = float(ci.low), float(ci.high)
    p = max(p_lo, p_hi)
    return Equivalence(
        margin=margin, pvalue=p, pvalue_lower=p_lo, pvalue_upper=p_hi, ci_low=lo, ci_high=hi,
        ci_confidence=level, equivalent=p < alpha, p_adjusted=p,
    )


def _effect_size(x, y, paired, confidence):
    z = stats.norm.ppf(0.5 + confidence / 2)
    if paired:
        d = x - y
        n = d.size
        sd = np.std(d, ddof=1)
        if sd == 0:
            return None, None, None
        es = float(np.mean(d) / sd)
        se = math.sqrt(1 / n + es**2 / (2 * n))
    else:
        n1, n2 = x.size, y.size
        df = n1 + n2 - 2
        sp = math.sqrt(((n1 - 1) * np.var(x, ddof=1) + (n2 - 1) * np.var(y, ddof=1)) / df)
        if sp == 0:
            return None, None, None
        # Exact Hedges correction J(df) = Γ(df/2) / (sqrt(df/2) Γ((df-1)/2)).
        j = math.exp(math.lgamma(df / 2) - math.lgamma((df - 1) / 2)) / math.sqrt(df / 2)
        es = float(j * (np.mean(x) - np.mean(y)) / sp)
        se = math.sqrt((n1 + n2) / (n1 * n2) + es**2 / (2 * (n1 + n2)))
    return es, es - z * se, es + z * se


def _robustness(x, y, paired, rng, n_resamples, notes, rank=True) -> tuple[TestResult, ...]:
    n1, n2 = x.size, y.size
    if paired:
        n_perm = 2**n1

        def statistic(a, b, axis):
            return np.mean(a - b, axis=axis)
    else:
        n_perm = math.comb(n1 + n2, n1)

        def statistic(a, b, axis):
            return np.mean(a, axis=axis) - np.mean(b, axis=axis)

    exact = n_perm <= MAX_EXACT_PERMUTATIONS
    res = stats.permutation_test(
        (x, y), statistic, vectorized=True, rng=rng,
        permutation_type="samples" if paired else "independent",
        n_resamples=np.inf if exact else n_resamples,
    )
    perm = TestResult(
        name="sign-flip permutation test" if paired else "permutation test",
        statistic=float(res.statistic), pvalue=float(res.pvalue),
        assumptions=("exchangeability under H0: " + (
            "each paired difference is symmetric about 0" if paired
            else "arm labels are exchangeable (same distribution)")),
        reason="robustness check: no normality assumption; statistic = difference in means",
        method=(f"exact (all {n_perm:,} relabellings)" if exact
                else f"Monte Carlo ({n_resamples:,} resamples of {n_perm:,})"),
    )

    if not rank:
        return (perm,)
    if paired:
        d = x - y
        if np.all(d == 0):
            notes.append("Wilcoxon signed-rank test skipped: every paired difference is 0")
            return (perm,)
        with warnings.catch_warnings():
            # scipy warns about ties/zeros and small-sample approximations; the
            # method it picks is recorded below and the warning would only repeat it.
            warnings.simplefilter("ignore", UserWarning)
            r = stats.wilcoxon(d, method="auto")
        rank = TestResult(
            name="Wilcoxon signed-rank test", statistic=float(r.statistic),
            pvalue=float(r.pvalue),
            assumptions="paired differences symmetric about their median; zero differences "
                        "dropped (zero_method='wilcox')",
            reason="robustness check: rank-based, insensitive to an outlier seed",
            method="scipy.stats.wilcoxon(method='auto')",
        )
    else:
        r = stats.mannwhitneyu(x, y, alternative="two-sided", method="auto")
        rank = TestResult(
            name="Mann-Whitney U test", statistic=float(r.statistic), pvalue=float(r.pvalue),
            assumptions="independent seeds; tests whether P(arm > baseline) = 1/2",
            reason="robustness check: rank-based, insensitive to an outlier seed",
            method="scipy.stats.mannwhitneyu(method='auto'), statistic = U of arm",
        )
    return perm, rank
