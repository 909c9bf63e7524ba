"""The tests `analysis.stats.paired.compare` runs on two arms' seed values, one function each:
the primary t-test (or its exact replacement at zero variance), the TOST equivalence test, the
effect size, and the permutation and rank tests that check the primary one. The rule for
which test is primary, and why, is in `analysis.stats.paired`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

from analysis._checks import check_count, clean_1d, clean_pairs, negligible_spread, note
from analysis.formatting import count, significant
from analysis.stats.skew_guard import caution, guarded_interval, guarded_paired_test, skew_note
from analysis.types import Equivalence, Interval, Note, TestResult

# Prefix of the note a paired comparison gets when its differences are skewed towards the
# sign of its difference (`analysis.stats.verdicts` repeats it in a significant verdict's reason).
SKEW_NOTE = "skew guard: "
# Enumerate every relabelling when there are at most this many (milliseconds
# with scipy's vectorised statistic); beyond that use Monte Carlo resampling.
MAX_EXACT_PERMUTATIONS = 100_000


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


def clean_arms(arm, baseline, paired, names, notes):
    """Finite values of both arms (whole pairs when paired), at least 2 each."""
    if paired:
        return clean_pairs(arm, baseline, names, notes, min_n=2)
    return (clean_1d(arm, names[0], notes, min_n=2), clean_1d(baseline, names[1], notes, min_n=2))


def t_test(x, y, paired, alternative="two-sided"):
    """The paired t-test, or Welch's when unpaired (scipy's result)."""
    if paired:
        return stats.ttest_rel(x, y, alternative=alternative)
    return stats.ttest_ind(x, y, equal_var=False, alternative=alternative)


def zero_variance(x, y, paired) -> bool:
    """No spread beyond float round-off in what the t statistic divides by."""
    if paired:
        return negligible_spread(x - y)
    return negligible_spread(x) and negligible_spread(y)


def primary_result(x, y, paired, confidence, notes) -> TestResult:
    """The primary test with its CI of ``x - y``: paired t or Welch t; the exact test's floor
    at zero variance (warns)."""
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
    if zero_variance(x, y, paired):
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
    if paired:
        return _guarded_paired(x - y, name, assumptions, reason, confidence, notes)
    res = t_test(x, y, paired)
    ci = res.confidence_interval(confidence)
    return TestResult(
        name=name, statistic=float(res.statistic), pvalue=float(res.pvalue),
        assumptions=assumptions, reason=reason, method="scipy.stats.ttest_ind(equal_var=False)",
        df=float(res.df),
        ci=Interval(estimate=diff, low=float(ci.low), high=float(ci.high),
                    confidence=confidence, method=name),
    )


def _guarded_paired(d, name, assumptions, reason, confidence, notes) -> TestResult:
    """The paired t-test with the skew guard (`analysis.stats.skew_guard`): in the tail that the
    differences' skewness fakes, the statistic is shrunk and the CI widened on that side."""
    n, diff = d.size, float(np.mean(d))
    df = float(n - 1)
    t, p, g = (float(v) for v in guarded_paired_test(d))
    c = stats.t.isf((1 - confidence) / 2, df)
    low, high = guarded_interval(diff, float(np.std(d, ddof=1)) / math.sqrt(n), g, n, c)
    if caution(diff, g):
        caution_text = skew_note(g, "of this sign", n)
        notes.append(Note(SKEW_NOTE + caution_text, kind="skew", detail=caution_text))
    return TestResult(
        name=name, statistic=t, pvalue=p, assumptions=assumptions, reason=reason,
        method=f"scipy.stats.ttest_rel, skew-guarded (sample skewness {g:+.2g})", df=df,
        ci=Interval(estimate=diff, low=float(low), high=float(high), confidence=confidence,
                    method=name),
    )


def tost(x, y, paired, margin, alpha) -> Equivalence:
    """Two one-sided tests of ``x - y`` against ``±margin``, on the primary test's t."""
    diff = float(np.mean(x) - np.mean(y))
    level = 1 - 2 * alpha
    if zero_variance(x, y, paired):
        # The one-sided exact tests: a constant shift inside the margin is as extreme as the
        # data can be, so each one-sided p is half the two-sided floor (never 0).
        half = min_attainable_p(x.size, y.size, paired=paired) / 2
        p_lo = half if diff > -margin else 1.0
        p_hi = half if diff < margin else 1.0
        lo = hi = diff
    else:
        # Shifting the baseline by ∓margin turns each one-sided H0 into a
        # standard t-test against 0 with the same df as the primary test.
        p_lo = float(t_test(x, y - margin, paired, alternative="greater").pvalue)
        p_hi = float(t_test(x, y + margin, paired, alternative="less").pvalue)
        ci = t_test(x, y, paired).confidence_interval(level)
        lo, hi = float(ci.low), float(ci.high)
    p = max(p_lo, p_hi)
    return Equivalence(
        margin=margin, pvalue=p, pvalue_lower=p_lo, pvalue_upper=p_hi, ci_low=lo, ci_high=hi,
        ci_confidence=level, equivalent=p < alpha, p_adjusted=p,
    )


def effect_size(x, y, paired, confidence):
    """(effect size, CI low, CI high), or Nones when the sd is zero.

    Hedges' g (pooled sd, exact small-sample correction) when unpaired, d_z = mean(d)/sd(d)
    when paired; their CIs use the usual normal approximations (Hedges & Olkin) and are rough
    at a handful of seeds.
    """
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


def robustness_checks(x, y, paired, rng, n_resamples, notes, rank=True) -> tuple[TestResult, ...]:
    """The exact permutation test and (with `rank`) the Wilcoxon / Mann-Whitney test."""
    perm = permutation_check(x, y, paired, rng, n_resamples)
    if not rank:
        return (perm,)
    ranked = rank_check(x, y, paired, notes)
    return (perm,) if ranked is None else (perm, ranked)


def permutation_check(x, y, paired, rng, n_resamples) -> TestResult:
    """Difference in means by permutation: sign flips when paired, relabelling otherwise;
    exact up to `MAX_EXACT_PERMUTATIONS` relabellings, Monte Carlo beyond."""
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
    return TestResult(
        name="sign-flip permutation test" if paired else "permutation test",
        statistic=float(res.statistic), pvalue=float(res.pvalue),
        assumptions=("exchangeability under H0: " + (
            "each paired difference is symmetric about 0" if paired
            else "arm labels are exchangeable (same distribution)")),
        reason="robustness check: no normality assumption; statistic = difference in means",
        method=(f"exact (all {count(n_perm)} relabellings)" if exact
                else f"Monte Carlo ({count(n_resamples)} resamples of {count(n_perm)})"),
    )


def rank_check(x, y, paired, notes) -> TestResult | None:
    """Wilcoxon signed-rank (paired) or Mann-Whitney U; None when every difference is 0."""
    if paired:
        d = x - y
        if np.all(d == 0):
            notes.append(Note("Wilcoxon signed-rank test skipped: every paired difference is 0"))
            return None
        with warnings.catch_warnings():
            # scipy warns about ties/zeros and small-sample approximations; the
            # method it picks is recorded below and the warning would only repeat it.
            warnings.simplefilter("ignore", UserWarning)
            r = stats.wilcoxon(d, method="auto")
        return TestResult(
            name="Wilcoxon signed-rank test", statistic=float(r.statistic),
            pvalue=float(r.pvalue),
            assumptions="paired differences symmetric about their median; zero differences "
                        "dropped (zero_method='wilcox')",
            reason="robustness check: rank-based, insensitive to an outlier seed",
            method="scipy.stats.wilcoxon(method='auto')",
        )
    r = stats.mannwhitneyu(x, y, alternative="two-sided", method="auto")
    return TestResult(
        name="Mann-Whitney U test", statistic=float(r.statistic), pvalue=float(r.pvalue),
        assumptions="independent seeds; tests whether P(arm > baseline) = 1/2",
        reason="robustness check: rank-based, insensitive to an outlier seed",
        method="scipy.stats.mannwhitneyu(method='auto'), statistic = U of arm",
    )
