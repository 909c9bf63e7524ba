import time

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar

from analysis import DegenerateDataWarning, seeds_needed
from analysis.stats.test_set_noise import (
    binomial_ci,
    mcnemar_exact,
    single_run_gap,
    two_level_bootstrap,
)


def test_binomial_ci_matches_scipy_in_percent():
    ci = binomial_ci(7549, 10_000)
    ref = stats.binomtest(7549, 10_000).proportion_ci(0.95, method="wilson")
    assert ci.estimate == pytest.approx(75.49)
    assert (ci.low, ci.high) == pytest.approx((100 * ref.low, 100 * ref.high))
    assert ci.high - ci.low == pytest.approx(2 * 1.96 * np.sqrt(0.7549 * 0.2451 / 1e4) * 100,
                                             rel=0.01)
    exact = binomial_ci(7549, 10_000, method="exact")
    ref = stats.binomtest(7549, 10_000).proportion_ci(0.95, method="exact")
    assert (exact.low, exact.high) == pytest.approx((100 * ref.low, 100 * ref.high))


@pytest.mark.parametrize(("args", "match"), [((11, 10), "`correct` must be <= `n`"),
                                              ((-1, 10), "`correct`"), ((0, 0), "`n`")])
def test_binomial_ci_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        binomial_ci(*args)


def test_mcnemar_on_planted_predictions():
    rng = np.random.default_rng(0)
    n = 2000
    a = rng.random(n) < 0.8
    b = a.copy()
    only_a = rng.choice(np.flatnonzero(a), 30, replace=False)  # A right, B wrong
    b[only_a] = False
    only_b = rng.choice(np.flatnonzero(~a), 10, replace=False)  # B right, A wrong
    b[only_b] = True
    r = mcnemar_exact(a, b)
    assert (r.n10, r.n01, r.n_examples) == (30, 10, n)
    assert r.pvalue == pytest.approx(stats.binomtest(30, 40, 0.5).pvalue)
    table = [[np.sum(a & b), 30], [10, np.sum(~a & ~b)]]
    assert r.pvalue == pytest.approx(mcnemar(table, exact=True).pvalue)
    assert r.pvalue < 0.01
    assert r.diff == pytest.approx(100 * 20 / n)
    # swapping the models swaps the counts, not the p-value
    s = mcnemar_exact(b.astype(int), a.astype(int))
    assert (s.n10, s.n01) == (10, 30) and s.pvalue == pytest.approx(r.pvalue)


def test_mcnemar_degenerate_and_bad_input():
    a = np.array([True, False, True])
    with pytest.warns(DegenerateDataWarning, match="no discordant"):
        assert mcnemar_exact(a, a).pvalue == 1.0
    with pytest.raises(ValueError, match="same examples"):
        mcnemar_exact(a, a[:2])
    with pytest.raises(ValueError, match="`correct_b` must be boolean"):
        mcnemar_exact(a, [0.5, 1, 0])
    with pytest.raises(ValueError, match="`correct_a` must not be empty"):
        mcnemar_exact([], [])


def _planted_study(rng, *, runs=8, m=2000, acc=(0.76, 0.75), seed_sd=0.005, flip=0.05):
    """Threshold model: example j has difficulty u_j ~ U(0,1), shared by every run;
    a run with skill s gets it right iff u_j < s, then each answer flips with
    probability `flip` (run-specific noise). Expected accuracy is
    flip + s (1 - 2 flip), so the true gap is (acc_a - acc_b)(1 - 2 flip)."""
    u = rng.random(m)
    out = []
    for mu in acc:
        s = mu + seed_sd * rng.normal(size=runs)
        out.append((u[None, :] < s[:, None]) ^ (rng.random((runs, m)) < flip))
    return out, 100 * (acc[0] - acc[1]) * (1 - 2 * flip)


@pytest.mark.parametrize("paired", [False, True])
def test_two_level_bootstrap_wider_than_seed_only_and_covers_truth(paired):
    rng = np.random.default_rng(1)
    hits = wider = 0
    n_studies = 40
    for _ in range(n_studies):
        (a, b), true_gap = _planted_study(rng)
        two = two_level_bootstrap(a, b, paired=paired, rng=rng, n_boot=400)
        one = two_level_bootstrap(a, b, paired=paired, rng=rng, n_boot=400,
                                  resample_examples=False)
        assert two.estimate == pytest.approx(100 * (a.mean() - b.mean()))
        hits += two.contains(true_gap)
        wider += two.width > one.width
    assert hits / n_studies >= 0.9
    assert wider == n_studies


def test_two_level_bootstrap_resamples_the_same_examples_for_both_arms():
    # Identical predictions, paired seeds: every replicate must give exactly 0,
    # which only holds if both arms are scored on the same resampled examples.
    rng = np.random.default_rng(3)
    a = rng.random((5, 500)) < 0.7
    ci = two_level_bootstrap(a, a.copy(), paired=True, rng=0, n_boot=200)
    assert (ci.low, ci.estimate, ci.high) == (0.0, 0.0, 0.0)


def test_two_level_bootstrap_is_fast_and_reproducible():
    rng = np.random.default_rng(2)
    a = rng.random((10, 10_000)) < 0.755
    b = rng.random((10, 10_000)) < 0.741
    t0 = time.perf_counter()
    ci = two_level_bootstrap(a, b, paired=False, rng=5, n_boot=2000)
    assert time.perf_counter() - t0 < 10  # ~1 s on a laptop core
    assert ci.low < ci.estimate < ci.high
    again = two_level_bootstrap(a, b, paired=False, rng=np.random.default_rng(5), n_boot=2000)
    assert (ci.low, ci.high) == (again.low, again.high)


def test_two_level_bootstrap_bad_input():
    a = np.ones((3, 10), dtype=bool)
    with pytest.raises(ValueError, match="same test examples"):
        two_level_bootstrap(a, np.ones((3, 9), dtype=bool), paired=False, rng=0)
    with pytest.raises(ValueError, match="same number of runs"):
        two_level_bootstrap(a, np.ones((4, 10), dtype=bool), paired=True, rng=0)
    with pytest.raises(ValueError, match="at least 2 runs"):
        two_level_bootstrap(a[:1], a, paired=False, rng=0)
    with pytest.raises(ValueError, match="2-D"):
        two_level_bootstrap(a[0], a, paired=False, rng=0)


def test_single_run_gap_75_49_vs_74_08():
    g = single_run_gap(75.49, 74.08, 10_000)
    # by hand: pooled two-proportion z-test
    pa, pb, n = 0.7549, 0.7408, 10_000
    pool = (pa + pb) / 2
    z = (pa - pb) / np.sqrt(pool * (1 - pool) * 2 / n)
    assert z == pytest.approx(2.296, abs=1e-3)
    assert g.statistic == pytest.approx(z)
    assert g.pvalue == pytest.approx(2 * stats.norm.sf(z))
    assert g.pvalue == pytest.approx(0.0217, abs=1e-4)
    assert g.gap == pytest.approx(1.41)
    assert g.ci_low < 1.41 < g.ci_high and g.ci_low > 0
    assert "seed variance" in g.statement and "McNemar" in g.statement
    assert [p.seed_sd for p in g.seeds_needed_for] == [0.2, 0.4, 1.0]
    # per-run variance = seed sd^2 + binomial test-set variance (points^2)
    test_var = pool * (1 - pool) / n * 1e4
    for plan in g.seeds_needed_for:
        assert plan.per_run_sd == pytest.approx(np.sqrt(plan.seed_sd**2 + test_var))
        assert plan.seeds_per_arm == seeds_needed(1.41, plan.per_run_sd, paired=False)
    needed = [p.seeds_per_arm for p in g.seeds_needed_for]
    assert needed == sorted(needed) and needed[-1] > needed[0]


def test_single_run_gap_bad_and_degenerate_input():
    with pytest.raises(ValueError, match="`acc_a`"):
        single_run_gap(175.0, 74.0, 100)
    with pytest.warns(DegenerateDataWarning, match="look like fractions"):
        single_run_gap(0.7549, 0.7408, 10_000)
    g = single_run_gap(75.0, 75.0, 1000)
    assert g.pvalue == pytest.approx(1.0)
    assert all(p.seeds_per_arm is None for p in g.seeds_needed_for)
