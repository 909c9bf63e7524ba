"""The skew guard: a paired t-test of the mean difference that holds its error rate on skewed
differences (a few extreme seeds, an arm with rare bad seeds).

WHY
---
The paired t-test assumes near-normal differences. On skewed ones the sample mean and sd are
correlated, so the t statistic is skewed the other way: right-skewed differences (rare large
gains) give too many false "worse" verdicts, left-skewed ones (rare bad seeds) too many false
"better" ones, and a sequential design, which looks up to 8 times, multiplies the excess
(docs/statistics.md, benchmarks/robustness_sim.py).

RULE (the one place; the sequential look, its simulator and the fixed-n paired test call it)
----
The one-term Cornish-Fisher expansion of the studentised mean (Hall 1992, "The Bootstrap and
Edgeworth Expansion", sec. 2.6) moves the t quantile ``c`` in the tail the skew fakes by
``gamma (2 c^2 + 1) / (6 sqrt(n))``, with gamma the skewness of the differences. The guard
applies that move **only in that tail** (``sign(t) == -sign(g)``), so it never makes a test
more liberal: ``|t|`` must clear ``c + a (c^2 + 1/2)`` with ``a = SKEW_FACTOR |g| / (3 sqrt(n))``
and ``g`` the sample skewness (adjusted Fisher-Pearson). Equivalently the statistic is shrunk to
the ``c`` that solves ``|t| = c + a (c^2 + 1/2)`` (`guarded_t`) and read against the usual t
quantiles, so p-values, boundaries and the repeated CI keep their form. With fewer than
``MIN_PAIRS`` differences the guard does nothing (their skewness is mostly noise).

``SKEW_FACTOR = 2``: at 5-40 seeds the sample skewness underestimates a skewed law's skewness
badly (lognormal sigma 1: 6.2 in the law, median 1.4 in 10 draws), so the move uses twice it;
calibrated by the simulation (docs/statistics.md gives the rates for factors 1 to 3).

It still tests the **mean** difference. What no rule that reads the data can do: an arm with
rare bad seeds, none of which has been drawn yet, gives differences that are exactly a normal
sample with a positive mean; docs/statistics.md states the resulting floor. A verdict whose
own tail was the faked one, with ``|g| >= NOTE_SKEW``, carries `skew_note` (`caution`).
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

# Multiplies the sample skewness in the Cornish-Fisher move (see WHY: it is underestimated).
SKEW_FACTOR = 2.0
# A verdict in the tail its sample skewness fakes, at |g| >= this, carries a note: 0.5 keeps
# lognormal-1 verdicts without it at 0.063 (0.6: 0.071) and is on 15% of true 1-sd verdicts.
NOTE_SKEW = 0.5
# Below this many differences the sample skewness is mostly noise (sd ~0.9 at 5 normal draws),
# and shrinking t by it cost a third of the t-test's level on normal data; the guard waits.
MIN_PAIRS = 10


def skewness(x: ArrayLike, axis: int = -1) -> np.ndarray:
    """Adjusted Fisher-Pearson sample skewness; 0 for fewer than 3 values or no spread."""
    x = np.asarray(x, dtype=float)
    if x.shape[axis] < 3:
        return np.zeros(np.delete(x.shape, axis))
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # near-constant data: scipy warns
        g = stats.skew(x, axis=axis, bias=False)
    return np.nan_to_num(np.asarray(g, dtype=float), nan=0.0, posinf=0.0, neginf=0.0)


def _move(g: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``a`` of the rule: the Cornish-Fisher move is ``a (c^2 + 1/2)``; 0 below MIN_PAIRS."""
    return np.where(n >= MIN_PAIRS, SKEW_FACTOR * np.abs(g) / (3 * np.sqrt(n)), 0.0)


def faked_tail(t: ArrayLike, g: ArrayLike) -> np.ndarray:
    """True where a t statistic lies in the tail that skewness `g` makes too heavy."""
    t, g = np.asarray(t, dtype=float), np.asarray(g, dtype=float)
    return (g != 0) & (np.sign(t) == -np.sign(g))


def caution(mean: ArrayLike, g: ArrayLike) -> np.ndarray:
    """Whether a better/worse verdict carries `skew_note`: the sample skewness is strong
    (``|g| >= NOTE_SKEW``) and fakes the verdict's sign. At any n: below MIN_PAIRS the guard
    cannot correct, but a skewed sample can still be flagged."""
    return (np.abs(np.asarray(g, dtype=float)) >= NOTE_SKEW) & faked_tail(mean, g)


def guarded_t(t: ArrayLike, g: ArrayLike, n: ArrayLike) -> np.ndarray:
    """The t statistic, shrunk in the faked tail to the ``c`` with ``|t| = c + a (c^2 + 1/2)``
    (0 when ``|t| <= a / 2``); unchanged elsewhere, and ±inf stays ±inf."""
    t, g, n = (np.asarray(v, dtype=float) for v in (t, g, n))
    a = _move(g, n)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        root = (np.sqrt(1 + 4 * a * np.maximum(np.abs(t) - a / 2, 0)) - 1) / (2 * a)
    shrunk = np.where(np.isinf(t), np.abs(t), np.where(a > 0, root, np.abs(t)))
    return np.where(faked_tail(t, g), np.sign(t) * shrunk, t)


def guarded_paired_test(d: ArrayLike, axis: int = -1
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(guarded t, two-sided p on n - 1 df, sample skewness) of H0: mean(d) = 0, along `axis`.

    The fixed-n paired test (`analysis.stats.paired_tests`) and the benchmarks call this; differences
    with zero sd are the caller's (an exact test decides them).
    """
    d = np.moveaxis(np.asarray(d, dtype=float), axis, -1)
    n = d.shape[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = d.mean(-1) / (d.std(-1, ddof=1) / np.sqrt(n))
    g = skewness(d)
    guarded = guarded_t(t, g, n)
    return guarded, 2 * stats.t.sf(np.abs(guarded), n - 1), g


def guarded_interval(mean: ArrayLike, se: ArrayLike, g: ArrayLike, n: ArrayLike,
                     c: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The interval of the means that the guarded test at quantile `c` does not reject.

    Testing mean ``mu`` uses ``t = (mean - mu) / se``; for right skew (g > 0) the faked tail is
    t < 0, i.e. mu above the mean, so the upper end moves out by ``a (c^2 + 1/2) se``.
    """
    mean, se, g, n, c = (np.asarray(v, dtype=float) for v in (mean, se, g, n, c))
    wide = c + _move(g, n) * (c * c + 0.5)
    low = mean - np.where(g < 0, wide, c) * se
    high = mean + np.where(g > 0, wide, c) * se
    return low, high


def skew_note(g: float, label: str, n: int) -> str:
    """The note of a verdict in the tail its skewness fakes (`label`: "'worse'", ...); below
    MIN_PAIRS it says that the guard did not correct (it cannot tell skew from noise there)."""
    guard = ("the skew guard allows for it, but its error rate on such data is only approximate"
             if n >= MIN_PAIRS else
             f"with {n} pairs the skew guard cannot correct for it (it needs {MIN_PAIRS}), so "
             "the verdict rests on the t-test's normality")
    return (f"the paired differences are skewed (sample skewness {g:+.2g}) in the direction "
            f"that makes a mean test give false verdicts {label}, and a few seeds carry the "
            f"mean: {guard}; look at the seed values")
