"""Test-set sampling noise: a finite test set is itself a sample.

Accuracy is measured on n_test examples, so even one fixed model has a
binomial standard error of sqrt(p(1-p)/n_test) (0.43 points at 75% on 10,000
images). These functions quantify that noise and combine it with seed noise.
All accuracies are in percentage points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from analysis._checks import as_rng, check_bool, check_count, check_probability, note
from analysis.formatting import number, significant
from analysis.stats.power import seeds_needed
from analysis.types import Interval, TestResult

# Keep each (resamples x examples) block of bootstrap counts around 32 MB.
_CHUNK_ELEMENTS = 4_000_000


def binomial_ci(correct: int, n: int, *, confidence: float = 0.95,
                method: str = "wilson") -> Interval:
    """CI of one run's accuracy (percent points) from `correct` out of `n` examples.

    `method` is "wilson" (default; good coverage, never outside [0, 100]) or
    "exact" (Clopper-Pearson, conservative), via
    ``scipy.stats.binomtest(...).proportion_ci``.
    """
    n = check_count(n, "n")
    correct = check_count(correct, "correct", minimum=0)
    if correct > n:
        raise ValueError(f"`correct` must be <= `n` ({n}), got {correct}")
    confidence = check_probability(confidence, "confidence")
    if method not in ("wilson", "exact"):
        raise ValueError(f"`method` must be 'wilson' or 'exact', got {method!r}")
    ci = stats.binomtest(correct, n).proportion_ci(confidence_level=confidence, method=method)
    return Interval(estimate=100 * correct / n, low=100 * float(ci.low),
                    high=100 * float(ci.high), confidence=confidence,
                    method=f"{'Wilson score' if method == 'wilson' else 'Clopper-Pearson'} "
                           f"interval, {n:,} examples")


@dataclass(frozen=True, kw_only=True)
class McNemarResult(TestResult):
    """`TestResult` plus the discordant counts McNemar's test is built on."""

    n10: int  # examples only model A got right
    n01: int  # examples only model B got right
    n_examples: int
    diff: float  # accuracy(A) - accuracy(B), percent points = 100 (n10 - n01) / n


def _as_correct(values, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != ndim:
        raise ValueError(f"`{name}` must be a {ndim}-D array of per-example correctness, "
                         f"got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"`{name}` must not be empty")
    if arr.dtype != bool:
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(f"`{name}` must be boolean (or 0/1): True = example correct")
        arr = arr.astype(bool)
    return arr


def mcnemar_exact(correct_a, correct_b) -> McNemarResult:
    """Exact McNemar test: do two models evaluated on the *same* examples differ?

    Only discordant examples carry information: under H0 each is equally
    likely to favour A or B, so ``n10 ~ Binomial(n10 + n01, 1/2)``; the
    p-value is the two-sided exact binomial test (``scipy.stats.binomtest``,
    identical to statsmodels ``mcnemar(exact=True)``). ``statistic`` is n10.

    This is the right test for "two single runs on one test set": pairing by
    example removes the variance shared by both models, so it is more
    powerful than comparing two accuracies as independent proportions. It
    still ignores seed-to-seed variance: it asks about these two trained
    models, not about the two training recipes.
    """
    a = _as_correct(correct_a, "correct_a", 1)
    b = _as_correct(correct_b, "correct_b", 1)
    if a.shape != b.shape:
        raise ValueError(f"`correct_a` and `correct_b` must cover the same examples, "
                         f"got {a.size} and {b.size}")
    n10, n01 = int(np.sum(a & ~b)), int(np.sum(~a & b))
    if n10 + n01 == 0:
        note("no discordant examples: the two models agree everywhere; p set to 1")
        pvalue = 1.0
    else:
        pvalue = float(stats.binomtest(n10, n10 + n01, 0.5).pvalue)
    return McNemarResult(
        name="McNemar exact test", statistic=float(n10), pvalue=pvalue,
        assumptions="both models scored on the same examples; examples independent",
        reason="paired comparison of two fixed models on one test set",
        method=f"exact binomial on {n10 + n01} discordant examples",
        n10=n10, n01=n01, n_examples=int(a.size), diff=100 * (n10 - n01) / a.size,
    )


def two_level_bootstrap(
    correct_arm,
    correct_base,
    *,
    paired: bool,
    rng,
    n_boot: int = 2_000,
    confidence: float = 0.95,
    resample_examples: bool = True,
) -> Interval:
    """CI of mean accuracy(arm) - mean accuracy(base) with seed AND test-set noise.

    Parameters
    ----------
    correct_arm, correct_base : bool arrays, shape (runs, examples)
        Per-example correctness of every run; both arms scored on the same
        test set (same columns = same examples).
    paired : bool
        Run i of both arms shares a seed: resample run indices jointly.
    resample_examples : bool
        False gives the ordinary seed-only bootstrap (for comparison).

    Each replicate (1) resamples runs with replacement, per arm or jointly
    when paired, and (2) resamples the test examples with replacement, with
    the *same* example indices for every run of both arms, because all runs
    saw the same test set. Step 2 is done as weights: drawing n examples with
    replacement equals weighting each example by its multinomial count, so a
    run's accuracy under the resample is ``correct @ counts / n``, one matrix
    product for a whole block of replicates.

    Percentile interval, in percent points. Resampling at both levels counts
    each run's own example noise twice (it is already in the seed spread), so
    the interval is slightly conservative; with few runs the seed level is
    slightly anti-conservative (bootstrap variance is (n-1)/n of the truth).
    """
    paired = check_bool(paired, "paired")
    n_boot = check_count(n_boot, "n_boot")
    confidence = check_probability(confidence, "confidence")
    resample_examples = check_bool(resample_examples, "resample_examples")
    a = _as_correct(correct_arm, "correct_arm", 2).astype(np.float64)
    b = _as_correct(correct_base, "correct_base", 2).astype(np.float64)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"`correct_arm` and `correct_base` must cover the same test examples "
                         f"(columns), got {a.shape[1]} and {b.shape[1]}")
    for name, arr in (("correct_arm", a), ("correct_base", b)):
        if arr.shape[0] < 2:
            raise ValueError(f"`{name}` must contain at least 2 runs (rows), got {arr.shape[0]}")
    if paired and a.shape[0] != b.shape[0]:
        raise ValueError(f"`correct_arm` and `correct_base` must have the same number of runs "
                         f"when paired=True, got {a.shape[0]} and {b.shape[0]}")
    gen = as_rng(rng)
    (ra, m), rb = a.shape, b.shape[0]
    run_acc_a, run_acc_b = a.mean(axis=1), b.mean(axis=1)

    diffs = np.empty(n_boot)
    chunk = max(1, _CHUNK_ELEMENTS // m)
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        if resample_examples:
            idx = gen.integers(0, m, size=(k, m))
            # Row-wise bincount via offsets: counts[r, j] = times example j drawn in replicate r.
            counts = np.bincount((idx + m * np.arange(k)[:, None]).ravel(), minlength=k * m)
            counts = counts.reshape(k, m).astype(np.float64)
            acc_a = (counts @ a.T) / m  # (k, runs): each run's accuracy under each replicate
            acc_b = (counts @ b.T) / m
        else:
            acc_a = np.broadcast_to(run_acc_a, (k, ra))
            acc_b = np.broadcast_to(run_acc_b, (k, rb))
        ia = gen.integers(0, ra, size=(k, ra))
        ib = ia if paired else gen.integers(0, rb, size=(k, rb))
        diffs[start:start + k] = (np.take_along_axis(acc_a, ia, axis=1).mean(axis=1)
                                  - np.take_along_axis(acc_b, ib, axis=1).mean(axis=1))
    tail = (1 - confidence) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    levels = "seeds, then test examples" if resample_examples else "seeds only"
    return Interval(
        estimate=100 * float(run_acc_a.mean() - run_acc_b.mean()),
        low=100 * float(low), high=100 * float(high), confidence=confidence,
        method=f"{'paired' if paired else 'unpaired'} bootstrap ({levels}), percentile, "
               f"{n_boot:,} replicates",
    )


@dataclass(frozen=True, kw_only=True)
class SeedPlan:
    """Seeds per arm needed to detect the gap, for one assumed seed sd."""

    seed_sd: float  # assumed seed-to-seed sd, points
    per_run_sd: float  # sqrt(seed_sd^2 + test-set binomial variance), points
    seeds_per_arm: int | None  # None when the gap is 0


@dataclass(frozen=True, kw_only=True)
class SingleRunGap:
    """Result of `single_run_gap`: is one run's gap more than test-set noise?"""

    acc_a: float
    acc_b: float
    n_test: int
    gap: float  # acc_a - acc_b, points
    statistic: float  # z
    pvalue: float
    ci_low: float  # gap CI, points
    ci_high: float
    confidence: float
    test_name: str
    statement: str
    seeds_needed_for: tuple[SeedPlan, ...]

    def confidence_interval(self) -> Interval:
        return Interval(estimate=self.gap, low=self.ci_low, high=self.ci_high,
                        confidence=self.confidence, method="Newcombe hybrid score")


def single_run_gap(
    acc_a: float,
    acc_b: float,
    n_test: int,
    *,
    seed_sds=(0.2, 0.4, 1.0),
    alpha: float = 0.05,
    power: float = 0.8,
    confidence: float = 0.95,
) -> SingleRunGap:
    """"75.49 vs 74.08 on 10,000 test images": is the gap real?

    Treats the two accuracies (percent points) as independent binomial
    proportions on `n_test` examples each and runs the pooled two-proportion
    z-test (statsmodels ``proportions_ztest``); the CI of the gap is
    Newcombe's hybrid score interval (``confint_proportions_2indep``). This
    answers only "could test-set sampling alone explain the gap?": it ignores
    seed variance entirely. If both runs used the same test set, the paired
    McNemar test on per-example predictions (`mcnemar_exact`) is the right
    test and more powerful.

    ``seeds_needed_for`` answers the real question, "how many seeds per arm
    would show this gap is a property of the recipe?", for each assumed seed
    sd: Welch/two-sample t power (`seeds_needed`, unpaired) with per-run
    variance ``seed_sd**2 + p(1-p)/n_test * 1e4`` (points², p = mean accuracy
    as a fraction), i.e. counting test-set noise as if each run drew a fresh
    test set, which is conservative when all runs share one.
    """
    n_test = check_count(n_test, "n_test")
    alpha = check_probability(alpha, "alpha")
    power = check_probability(power, "power")
    confidence = check_probability(confidence, "confidence")
    for name, acc in (("acc_a", acc_a), ("acc_b", acc_b)):
        if not (isinstance(acc, (int, float, np.floating, np.integer))
                and 0.0 <= float(acc) <= 100.0):
            raise ValueError(f"`{name}` must be an accuracy in percent points in [0, 100], "
                             f"got {acc!r}")
    sds = np.asarray(seed_sds, dtype=float)
    if sds.ndim != 1 or sds.size == 0 or not np.all(np.isfinite(sds)) or (sds < 0).any():
        raise ValueError(f"`seed_sds` must be a non-empty sequence of sds >= 0, got {seed_sds!r}")
    if 0 < acc_a <= 1 and 0 < acc_b <= 1:
        note("`acc_a` and `acc_b` are both <= 1: they look like fractions, but percent points "
             "are expected (e.g. 75.49)")
    pa, pb = float(acc_a) / 100, float(acc_b) / 100
    gap = float(acc_a) - float(acc_b)

    if pa == pb and pa in (0.0, 1.0):
        note("both accuracies are 0% or 100%: no sampling variance; z set to 0 and p to 1")
        z, p = 0.0, 1.0
    else:
        # Counts may be fractional when the reported accuracy was rounded;
        # the z statistic only needs the proportions.
        z, p = proportions_ztest([pa * n_test, pb * n_test], [n_test, n_test])
    lo, hi = confint_proportions_2indep(pa * n_test, n_test, pb * n_test, n_test,
                                        method="newcombe", alpha=1 - confidence)

    pooled = (pa + pb) / 2
    test_var = pooled * (1 - pooled) / n_test * 1e4  # points^2
    plans = []
    for sd in sds:
        per_run = math.sqrt(sd**2 + test_var)
        need = None if gap == 0 or per_run == 0 else seeds_needed(
            gap, per_run, paired=False, alpha=alpha, power=power)
        plans.append(SeedPlan(seed_sd=float(sd), per_run_sd=per_run, seeds_per_arm=need))

    verdict = "larger" if p < alpha else "not larger"
    statement = (
        f"A gap of {number(gap, signed=True)} points on {n_test:,} test examples is {verdict} "
        f"than test-set sampling noise alone would explain (two-proportion z = "
        f"{number(float(z))}, p = {significant(float(p))}). This treats the two runs as "
        "independent binomial samples and "
        "ignores seed variance: another seed of the same recipe can move accuracy by a "
        "comparable amount, so one run per arm cannot show that one recipe is better. If both "
        "runs used the same test set, the paired McNemar test on per-example predictions "
        "(mcnemar_exact) is the right test and is more powerful. To compare recipes, run "
        "several seeds per arm; see seeds_needed_for."
    )
    return SingleRunGap(
        acc_a=float(acc_a), acc_b=float(acc_b), n_test=n_test, gap=gap, statistic=float(z),
        pvalue=float(p), ci_low=100 * float(lo), ci_high=100 * float(hi),
        confidence=confidence, test_name="two-proportion z-test (pooled, independent samples)",
        statement=statement, seeds_needed_for=tuple(plans),
    )
