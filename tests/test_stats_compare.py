import dataclasses
import math
import warnings

import numpy as np
import pytest
from scipy import stats

from analysis import DegenerateDataWarning, compare
from analysis.stats.paired import min_attainable_p, primary_test
from analysis.types import Comparison, TestResult, VerdictLabel

# Fixed data for pinned p-values (accuracy points, 5 seeds per arm).
X = np.array([75.1, 75.9, 74.8, 76.3, 75.5])
Y = np.array([74.2, 75.0, 74.9, 74.6, 75.3])


def assert_no_nan(obj):
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, float):
            assert not math.isnan(value), f.name
        elif dataclasses.is_dataclass(value):
            assert_no_nan(value)
        elif isinstance(value, tuple):
            for item in value:
                if dataclasses.is_dataclass(item):
                    assert_no_nan(item)


def robust(c: Comparison, name: str) -> TestResult:
    return next(t for t in c.robustness if t.name == name)


# --- planted effects -> verdicts ---------------------------------------------


@pytest.mark.parametrize("paired", [False, True])
def test_planted_effect_is_better_and_swapped_is_worse(paired):
    rng = np.random.default_rng(1)
    sd = 0.4
    base = rng.normal(75.0, sd, 10)
    arm = rng.normal(75.0 + 3 * sd, sd, 10)
    c = compare(arm, base, paired=paired, rng=0)
    assert c.verdict.label is VerdictLabel.BETTER
    assert "better" in c.verdict.reason and "p = " in c.verdict.reason
    assert c.diff == pytest.approx(arm.mean() - base.mean())
    assert c.ci_low > 0
    assert c.effect_size.name == ("d_z" if paired else "hedges_g")
    assert c.effect_size.value > 1
    swapped = compare(base, arm, paired=paired, rng=0)
    assert swapped.verdict.label is VerdictLabel.WORSE
    assert swapped.diff == pytest.approx(-c.diff)
    assert_no_nan(c)


def test_verdict_follows_the_fields_it_is_decided_from():
    # The verdict is derived, not stored: a Comparison whose p-value changes (as Holm does
    # in a family) cannot keep the verdict of the old p-value.
    c = compare(X + 2.0, Y, paired=True, rng=0)
    assert c.verdict.label is VerdictLabel.BETTER
    assert "verdict" not in {f.name for f in dataclasses.fields(c)}
    moved = dataclasses.replace(c, p_adjusted=0.9, family_size=4)
    assert moved.verdict.label is VerdictLabel.INCONCLUSIVE
    assert "Holm-adjusted over 4 comparisons p = 0.9" in moved.verdict.reason


@pytest.mark.parametrize("paired", [False, True])
def test_aa_with_many_seeds_and_small_sd_is_equivalent(paired):
    rng = np.random.default_rng(2)
    a, b = rng.normal(75.0, 0.2, 30), rng.normal(75.0, 0.2, 30)
    c = compare(a, b, paired=paired, rng=0, margin=0.5)
    assert c.verdict.label is VerdictLabel.EQUIVALENT
    assert c.equivalence.equivalent
    assert -0.5 < c.equivalence.ci_low < c.equivalence.ci_high < 0.5
    assert "equivalent" in c.verdict.reason


def test_small_noisy_study_is_inconclusive_with_seeds_needed():
    rng = np.random.default_rng(3)
    a, b = rng.normal(75.3, 1.5, 3), rng.normal(75.0, 1.5, 3)
    c = compare(a, b, paired=False, rng=0)
    assert c.verdict.label is VerdictLabel.INCONCLUSIVE
    assert c.sensitivity.seeds_needed is not None and c.sensitivity.seeds_needed > 3
    assert f"{c.sensitivity.seeds_needed} seeds per arm" in c.verdict.reason


def test_significant_and_equivalent_stays_better_and_says_negligible():
    # Tiny but real difference measured very precisely: both tests succeed.
    rng = np.random.default_rng(4)
    base = rng.normal(75.0, 0.05, 20)
    arm = base + 0.1 + rng.normal(0, 0.02, 20)
    c = compare(arm, base, paired=True, rng=0, margin=0.5)
    assert c.p_adjusted < 0.05 and c.equivalence.equivalent
    assert c.verdict.label is VerdictLabel.BETTER
    assert "practically negligible" in c.verdict.reason


# --- p-values match scipy called directly (pinned) ---------------------------


def test_unpaired_pvalues_match_scipy():
    c = compare(X, Y, paired=False, rng=0)
    welch = stats.ttest_ind(X, Y, equal_var=False)
    assert c.primary.name == "Welch's t-test"
    assert c.primary.pvalue == pytest.approx(welch.pvalue, rel=1e-12)
    assert c.primary.pvalue == pytest.approx(0.0632942703, rel=1e-8)
    ci = welch.confidence_interval(0.95)
    assert (c.ci_low, c.ci_high) == pytest.approx((ci.low, ci.high))
    perm = robust(c, "permutation test")
    assert perm.pvalue == pytest.approx(20 / 252)  # exact: all C(10, 5) relabellings
    assert "exact (all 252" in perm.method
    mwu = robust(c, "Mann-Whitney U test")
    assert mwu.pvalue == pytest.approx(stats.mannwhitneyu(X, Y).pvalue)
    assert mwu.pvalue == pytest.approx(24 / 252)
    # common-language effect size = U / (n1 n2)
    assert c.prob_improvement == pytest.approx(stats.mannwhitneyu(X, Y).statistic / 25)


def test_paired_pvalues_match_scipy():
    c = compare(X, Y, paired=True, rng=0)
    rel = stats.ttest_rel(X, Y)
    assert c.primary.name == "paired t-test"
    # 5 pairs: below the skew guard's 10, so exactly scipy's paired t-test.
    assert c.primary.pvalue == pytest.approx(rel.pvalue, rel=1e-12)
    assert c.primary.pvalue == pytest.approx(0.0833712891, rel=1e-8)
    ci = rel.confidence_interval(0.95)
    assert (c.ci_low, c.ci_high) == pytest.approx((ci.low, ci.high))
    d = X - Y
    assert robust(c, "sign-flip permutation test").pvalue == pytest.approx(4 / 32)
    assert robust(c, "Wilcoxon signed-rank test").pvalue == pytest.approx(
        stats.wilcoxon(X - Y).pvalue)
    assert c.prob_improvement == pytest.approx(np.mean(d > 0) + 0.5 * np.mean(d == 0))


def test_skew_guard_shrinks_t_in_the_tail_the_skew_fakes():
    """One bad seed among ten gains: left skew, positive mean: the 'better' tail is the faked
    one, so |t| = c + a (c^2 + 1/2) is solved for c (analysis.stats.skew_guard), by hand here."""
    d = np.array([1.0, 1.3, 0.7, 1.1, 0.9, 1.2, 0.8, 1.05, 0.95, -1.5])
    c = compare(70 + d, np.full(10, 70.0), paired=True, rng=0)
    rel = stats.ttest_1samp(d, 0.0)
    g = stats.skew(d, bias=False)
    a = 2 * abs(g) / (3 * np.sqrt(10))
    shrunk = (np.sqrt(1 + 4 * a * (rel.statistic - a / 2)) - 1) / (2 * a)
    assert g < 0 < rel.statistic and rel.pvalue < 0.05
    assert c.primary.statistic == pytest.approx(shrunk)
    assert c.primary.pvalue == pytest.approx(2 * stats.t.sf(shrunk, 9)) and c.primary.pvalue > 0.05
    assert c.verdict.label is VerdictLabel.INCONCLUSIVE
    # The CI widens on the side the skew points to (left skew: the lower end).
    q = stats.t.isf(0.025, 9)
    assert c.ci_high == pytest.approx(d.mean() + q * d.std(ddof=1) / np.sqrt(10))
    assert c.ci_low == pytest.approx(d.mean() - (q + a * (q * q + 0.5)) * d.std(ddof=1) / np.sqrt(10))
    # Symmetric differences: no skew, the plain paired t-test.
    sym = np.array([1.0, -1.0, 2.0, -2.0, 3.0, -3.0, 0.5, -0.5, 1.5, -1.5]) + 0.5
    flat = compare(70 + sym, np.full(10, 70.0), paired=True, rng=0)
    assert flat.primary.pvalue == pytest.approx(stats.ttest_1samp(sym, 0).pvalue)
    assert flat.ci_high - 0.5 == pytest.approx(0.5 - flat.ci_low)


@pytest.mark.parametrize("paired", [False, True])
def test_tost_is_max_of_two_one_sided_scipy_tests(paired):
    margin = 1.0
    c = compare(X, Y, paired=paired, rng=0, margin=margin)
    t = stats.ttest_rel if paired else (lambda a, b, **k: stats.ttest_ind(a, b, equal_var=False,
                                                                          **k))
    # H0: diff <= -margin  and  H0: diff >= +margin, via one-sided tests on shifted data
    diff = X - Y
    if paired:
        lo = stats.ttest_1samp(diff, -margin, alternative="greater").pvalue
        hi = stats.ttest_1samp(diff, margin, alternative="less").pvalue
    else:
        lo = t(X, Y - margin, alternative="greater").pvalue
        hi = t(X, Y + margin, alternative="less").pvalue
    assert c.equivalence.pvalue_lower == pytest.approx(lo)
    assert c.equivalence.pvalue_upper == pytest.approx(hi)
    assert c.equivalence.pvalue == pytest.approx(max(lo, hi))
    ci = t(X, Y).confidence_interval(0.90)
    assert (c.equivalence.ci_low, c.equivalence.ci_high) == pytest.approx((ci.low, ci.high))
    # TOST rejects exactly when the 90% CI is inside ±margin
    inside = -margin < ci.low and ci.high < margin
    assert c.equivalence.equivalent == inside


def test_hedges_g_and_dz():
    c = compare(X, Y, paired=False, rng=0)
    sp = np.sqrt((X.var(ddof=1) + Y.var(ddof=1)) / 2)
    d = (X.mean() - Y.mean()) / sp
    assert c.effect_size.value == pytest.approx(d * (1 - 3 / (4 * 8 - 1)), rel=5e-3)  # approx. J
    assert c.effect_size.ci_low < c.effect_size.value < c.effect_size.ci_high
    cp = compare(X, Y, paired=True, rng=0)
    assert cp.effect_size.value == pytest.approx((X - Y).mean() / (X - Y).std(ddof=1))


def test_monte_carlo_permutation_is_reproducible_with_rng():
    rng = np.random.default_rng(5)
    a, b = rng.normal(0, 1, 12), rng.normal(0.5, 1, 12)  # C(24, 12) > 100k -> Monte Carlo
    c1 = compare(a, b, paired=False, rng=7, n_resamples=999)
    c2 = compare(a, b, paired=False, rng=np.random.default_rng(7), n_resamples=999)
    assert "Monte Carlo" in c1.robustness[0].method
    assert c1.robustness[0].pvalue == c2.robustness[0].pvalue


# --- minimum attainable p ----------------------------------------------------


def test_min_attainable_p():
    assert min_attainable_p(5, paired=True) == 0.0625
    assert min_attainable_p(6, paired=True) == 0.03125
    assert min_attainable_p(5, 5, paired=False) == pytest.approx(2 / 252)
    assert min_attainable_p(3, 3, paired=False) == pytest.approx(0.1)


def test_unreachable_alpha_is_noted():
    c = compare(X, Y, paired=True, rng=0)
    assert c.sensitivity.min_attainable_p == 0.0625
    msg = ("with 5 paired seeds an exact sign-flip test cannot reach p < 0.0625, "
           "so it cannot be significant at alpha=0.05")
    assert any(msg in n.text for n in c.notes)
    # and the floor is real: the exact sign-flip test of a huge effect stops at 0.0625
    big = compare(X + 10, Y, paired=True, rng=0)
    assert robust(big, "sign-flip permutation test").pvalue == pytest.approx(0.0625)
    # with 6 seeds it is reachable: no note
    c6 = compare(np.r_[X, 75.0], np.r_[Y, 74.0], paired=True, rng=0)
    assert not any("cannot reach" in n.text for n in c6.notes)
    assert not any("cannot reach" in n.text for n in compare(X, Y, paired=False, rng=0).notes)


# --- degenerate inputs -------------------------------------------------------


@pytest.mark.parametrize("paired", [False, True])
def test_fewer_than_two_seeds_raises(paired):
    with pytest.raises(ValueError, match="at least 2"):
        compare([75.0], [74.0], paired=paired, rng=0)
    with pytest.raises(ValueError, match="`arm`"):
        compare([], [74.0, 75.0], paired=paired, rng=0)


def test_nan_dropped_with_warning_unpaired_and_paired():
    with pytest.warns(DegenerateDataWarning, match="dropped 1 NaN value from `arm`"):
        c = compare([75.0, np.nan, 76.0, 75.5], Y, paired=False, rng=0)
    assert c.n_arm == 3 and any("NaN" in n.text for n in c.notes)
    with pytest.warns(DegenerateDataWarning, match="dropped 1 seed pair"):
        c = compare([75.0, np.nan, 76.0, 75.5, 75.2], Y, paired=True, rng=0)
    assert c.n_arm == c.n_baseline == 4
    assert_no_nan(c)


def test_paired_length_mismatch_raises():
    with pytest.raises(ValueError, match="same length when paired=True"):
        compare(X, Y[:4], paired=True, rng=0)


def test_zero_variance_equal_means_warns_and_gives_p_one():
    with pytest.warns(DegenerateDataWarning, match="zero variance"):
        c = compare([75.0] * 4, [75.0] * 4, paired=False, rng=0)
    assert c.primary.pvalue == 1.0 and c.primary.statistic == 0.0
    assert c.effect_size.value is None and c.sensitivity.seeds_needed is None
    assert c.verdict.label is VerdictLabel.EQUIVALENT
    assert_no_nan(c)


def test_zero_variance_of_paired_differences_is_a_stated_exact_result_never_p_zero():
    """Issue 12: a constant per-seed shift used to give p = 0 and "better" even at n = 2.
    The t statistic is undefined there; the exact sign-flip test gives its floor 2/2^n."""
    base = np.array([74.0, 75.0, 73.5, 74.2])
    with pytest.warns(DegenerateDataWarning, match="zero variance"):
        c = compare(base + 1.0, base, paired=True, rng=0)
    assert c.primary.pvalue == pytest.approx(2 / 2**4) and math.isfinite(c.primary.statistic)
    assert c.ci_low == c.ci_high == pytest.approx(1.0)
    assert c.verdict.label is VerdictLabel.INCONCLUSIVE
    assert "Zero variance" in c.verdict.reason and "never 0" in c.verdict.reason
    with pytest.warns(DegenerateDataWarning, match="zero variance"):
        two = compare([75.0, 76.0], [74.0, 75.0], paired=True, rng=0)
    assert two.primary.pvalue == 0.5 and two.verdict.label is VerdictLabel.INCONCLUSIVE
    # with 8 seeds the same constant shift is as significant as 8 seeds can be: 2/256
    with pytest.warns(DegenerateDataWarning, match="zero variance"):
        eight = compare(np.r_[base, base] + 1.0, np.r_[base, base], paired=True, rng=0)
    assert eight.primary.pvalue == pytest.approx(2 / 256)
    assert eight.verdict.label is VerdictLabel.BETTER
    assert_no_nan(c)


def test_all_equal_paired_skips_wilcoxon_with_note():
    with pytest.warns(DegenerateDataWarning):
        c = compare(X, X, paired=True, rng=0)
    assert [t.name for t in c.robustness] == ["sign-flip permutation test"]
    assert any("Wilcoxon signed-rank test skipped" in n.text for n in c.notes)
    assert_no_nan(c)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 0.6}, "`alpha` must be < 0.5"),
        ({"alpha": 0}, "`alpha`"),
        ({"margin": 0}, "`margin`"),
        ({"margin": -1}, "`margin`"),
        ({"confidence": 1.0}, "`confidence`"),
        ({"paired": "yes"}, "`paired`"),
    ],
)
def test_bad_parameters_raise(kwargs, match):
    kwargs = {"paired": False, **kwargs}
    with pytest.raises(ValueError, match=match):
        compare(X, Y, rng=0, **kwargs)


# --- calibration by simulation ------------------------------------------------


@pytest.mark.parametrize("paired", [False, True])
def test_primary_test_calibration_on_aa_studies(paired):
    """2,000 A/A studies of 5 vs 5 normal seeds: false positives ~5%, CI coverage ~95%."""
    rng = np.random.default_rng(20261126)
    n_studies = 2000
    a = rng.normal(75.0, 0.5, (n_studies, 5))
    b = rng.normal(75.0, 0.5, (n_studies, 5))
    if paired:  # shared seed effect: the pairing must remove it
        shared = rng.normal(0, 1.0, (n_studies, 5))
        a, b = a + shared, b + shared
    false_pos = covered = 0
    for x, y in zip(a, b, strict=True):
        r = primary_test(x, y, paired=paired)
        false_pos += r.pvalue < 0.05
        covered += r.ci.low <= 0.0 <= r.ci.high
    # (The skew guard waits for 10 pairs, so at 5 seeds the paired test is the plain t-test.)
    assert 0.03 <= false_pos / n_studies <= 0.07
    assert 0.93 <= covered / n_studies <= 0.97


@pytest.mark.parametrize("paired", [False, True])
def test_verdict_uses_the_calibrated_primary_test(paired):
    """compare()'s verdict comes from exactly primary_test(): same p, same CI."""
    rng = np.random.default_rng(99)
    for _ in range(100):
        x, y = rng.normal(75, 0.5, 5), rng.normal(75, 0.5, 5)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # clean data must not warn
            c = compare(x, y, paired=paired, rng=0, robustness=False)
        r = primary_test(x, y, paired=paired)
        assert c.primary == r
        assert (c.ci_low, c.ci_high) == (r.ci.low, r.ci.high)
        significant = c.verdict.label in (VerdictLabel.BETTER, VerdictLabel.WORSE)
        assert significant == (r.pvalue < 0.05)
