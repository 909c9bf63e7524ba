"""Coverage of analysis.stats.variance's intervals on simulated studies with planted components.

    PYTHONPATH=$PWD python benchmarks/variance_coverage.py [n_studies]

1. The group variances (tests/test_variance.py's `simulate_scores`: planted sds init 1.0,
   order 0.5, augment 0.3, split 0.8 points, no residual, k = 10): each chi-square interval's
   coverage, then the bootstrap intervals the module does NOT use, for comparison.
2. Net components, shares and the sum of shares on an ADDITIVE truth with a per-run residual
   (`simulate_runs`: the same sds plus a residual of sd 1.0 in every run, the replicate group
   `none` of k runs included), at k = 5, 10, 20 and on data shaped like real runs (skewed,
   bad seeds, 10% failed runs): coverage of every interval, the mean sum of shares (100% is
   right), how often the additivity check rejects (its type I error), and what the old
   reading (sum of s2_s / s2_all, residual left in, no small-k correction) gave.
3. The same with an interaction (sd 1.0 per seed combination): how often the check sees it.
Every rate comes with its Monte-Carlo standard error.
"""

import sys
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_variance import SD, SOURCES, TRUE_ALL, additive_truth, simulate_runs, simulate_scores  # noqa: E402

from analysis.stats.variance import decompose_variance  # noqa: E402


def rate(hits) -> str:
    p = float(np.mean(hits))
    return f"{p:.3f} ± {np.sqrt(p * (1 - p) / len(hits)):.3f}"


def mean(values) -> str:
    v = np.asarray(values, float)
    return f"{v.mean():.3f} ± {v.std(ddof=1) / np.sqrt(len(v)):.3f}"


def group_variances(n: int, rng) -> None:
    hits: dict[str, list[bool]] = {}
    for _ in range(n):
        d = decompose_variance(simulate_scores(rng), deterministic=True)  # no residual planted
        for s in SOURCES:
            hits.setdefault(s, []).append(d.component(s).ci.contains(SD[s] ** 2))
        hits.setdefault("all", []).append(d.all_sources.ci.contains(TRUE_ALL))
    print(f"1. chi-square intervals of the group variances, {n} studies, k = 10:",
          ", ".join(f"{k} {rate(v)}" for k, v in hits.items()))
    for method in ("percentile", "BCa"):
        cover = []
        for _ in range(400):
            x = rng.normal(0, 1, 10)
            ci = stats.bootstrap((x,), lambda a: np.var(a, ddof=1), n_resamples=999,
                                 method=method, rng=rng).confidence_interval
            cover.append(ci.low <= 1 <= ci.high)
        print(f"   {method} bootstrap of a variance, k = 10, 400 samples: {rate(cover)}")


def additive(n: int, rng, k: int, shape: str = "normal", failures: float = 0.0,
             interaction_sd: float = 0.0) -> None:
    net_truth, share_truth, _ = additive_truth()
    hits: dict[str, list[bool]] = {}
    sums, rejects, old, n_ok = [], [], [], 0
    for _ in range(n):
        runs = simulate_runs(rng, k, k, shape, failures, interaction_sd)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # failed runs dropped, a net variance floored at 0
            d = decompose_variance(runs)
        if d.shares_total is None:  # a group left with < 4 runs by failures
            continue
        n_ok += 1
        for name, truth in net_truth.items():
            hits.setdefault(f"net.{name}", []).append(d.component(name).net_ci.contains(truth))
        for name, truth in share_truth.items():
            hits.setdefault(f"share.{name}", []).append(d.component(name).share_ci.contains(truth))
        sums.append(d.shares_total.estimate)
        rejects.append(not d.shares_total.contains(1.0))
        old.append(sum(d.component(s).variance for s in SOURCES) / d.all_sources.variance)
    cover = {key: np.mean(v) for key, v in hits.items()}
    label = f"k = {k}, {shape}" + (f", {failures:.0%} failed" if failures else "") + (
        f", interaction sd {interaction_sd:g}" if interaction_sd else "")
    print(f"   {label} ({n_ok} studies): sum of shares {mean(sums)}; additivity rejected {rate(rejects)}; "
          f"old sum {mean(old)}" + ("" if interaction_sd else
          f"; coverage min {min(cover.values()):.3f} ({min(cover, key=cover.get)}), "
          f"max {max(cover.values()):.3f} ({max(cover, key=cover.get)}), MC se <= {0.5 / np.sqrt(n_ok):.3f}"))
    if not interaction_sd and shape == "normal" and not failures:
        print("      " + ", ".join(f"{key} {v:.3f}" for key, v in cover.items()))


def main(n: int) -> None:
    rng = np.random.default_rng(20261127)
    group_variances(n, rng)
    print(f"2. additive truth, residual sd 1.0 (truth: sum of shares 100%), {n} studies each:")
    for k in (5, 10, 20):
        additive(n, rng, k)
    for shape in ("skewed", "bad seeds"):
        additive(n, rng, 10, shape)
    additive(n, rng, 10, failures=0.1)
    print(f"3. interaction sd 1.0 per seed combination (truth: sum of shares {(TRUE_ALL + 4 + 1) / (TRUE_ALL + 2):.0%}):")
    for k in (5, 10, 20):
        additive(n, rng, k, interaction_sd=1.0)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
