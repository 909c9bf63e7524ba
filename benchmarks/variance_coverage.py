"""Coverage of analysis.variance's intervals on simulated studies with planted components.

    PYTHONPATH=$PWD python benchmarks/variance_coverage.py [n_studies]

Uses the simulator of tests/test_variance.py (planted sds: init 1.0, order 0.5, augment 0.3,
split 0.8 points; k = 10 runs a group) and prints each 95% interval's coverage, then the
coverage of the bootstrap intervals the module does NOT use, for comparison.
"""

import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_variance import SD, SOURCES, TRUE_ALL, simulate_scores  # noqa: E402

from analysis.variance import decompose_variance  # noqa: E402


def main(n: int) -> None:
    rng = np.random.default_rng(20261127)
    hits: dict[str, list[bool]] = {}
    for _ in range(n):
        d = decompose_variance(simulate_scores(rng))
        for s in SOURCES:
            c = d.component(s)
            hits.setdefault(s, []).append(c.ci.contains(SD[s] ** 2))
            hits.setdefault(f"share.{s}", []).append(c.share_ci.contains(SD[s] ** 2 / TRUE_ALL))
        hits.setdefault("all", []).append(d.all_sources.ci.contains(TRUE_ALL))
    print(f"chi-square / F intervals over {n} studies:",
          {k: round(float(np.mean(v)), 3) for k, v in hits.items()})
    for method in ("percentile", "BCa"):
        cover = []
        for _ in range(400):
            x = rng.normal(0, 1, 10)
            ci = stats.bootstrap((x,), lambda a: np.var(a, ddof=1), n_resamples=999,
                                 method=method, rng=rng).confidence_interval
            cover.append(ci.low <= 1 <= ci.high)
        print(f"{method} bootstrap of a variance, k = 10, 400 samples: {np.mean(cover):.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
