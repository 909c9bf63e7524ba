"""Per-arm summary: mean, spread and confidence intervals over seeds."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from analysis._checks import as_rng, check_count, check_probability, clean_1d, note
from analysis.types import Note


def t_interval(values, confidence: float = 0.95) -> tuple[float, float, float] | None:
    """(mean, low, high) of the t interval for the mean of the finite `values`; None without data.

    The one owner of this interval: `describe`, the report's figures and the end-of-study
    summary all call it. One value gives ``(x, nan, nan)``; zero variance collapses the
    interval to the mean (scipy would give NaN).
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return None
    mean = float(x.mean())
    if x.size == 1:
        return mean, math.nan, math.nan
    sd = float(x.std(ddof=1))
    if sd == 0:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1)) * sd / math.sqrt(x.size)
    return mean, mean - half, mean + half


@dataclass(frozen=True, kw_only=True)
class ArmSummary:
    """Summary of one arm's per-seed values (metric units, e.g. accuracy points).

    With a single value, `sd` and all interval fields are ``None`` (never NaN)
    and a `DegenerateDataWarning` is emitted.
    """

    n: int
    mean: float
    sd: float | None
    median: float
    confidence: float
    ci_low: float | None  # t-based interval for the mean: the one to report
    ci_high: float | None
    boot_low: float | None  # bootstrap interval for the mean: a cross-check
    boot_high: float | None
    boot_method: str
    notes: tuple[Note, ...] = ()


def describe(
    values,
    *,
    rng,
    confidence: float = 0.95,
    n_boot: int = 10_000,
    boot_method: str = "BCa",
) -> ArmSummary:
    """Summarise one arm's seeds.

    Parameters
    ----------
    values : array_like, 1-D
        One value per seed. NaNs are dropped with a `DegenerateDataWarning`.
    rng : numpy.random.Generator or int
        Randomness for the bootstrap (explicit, for reproducibility).
    confidence : float
        Level of both intervals.
    n_boot : int
        Bootstrap resamples.
    boot_method : {"BCa", "percentile", "basic"}
        Passed to `scipy.stats.bootstrap`.

    Notes
    -----
    The t interval (``ci_low``/``ci_high``) is the one to report: seed-to-seed
    variation is close to normal and the t interval is exact for normal data
    at any n. Bootstrap intervals are systematically too narrow with a handful
    of seeds (the bootstrap variance of a mean is (n-1)/n of the real one and
    z-like quantiles replace t quantiles), so they are only a cross-check.

    * n == 0 raises ``ValueError``.
    * n == 1 warns; ``sd`` and the intervals are ``None``.
    * zero variance warns; both intervals collapse to ``[mean, mean]``.
    """
    confidence = check_probability(confidence, "confidence")
    n_boot = check_count(n_boot, "n_boot")
    if boot_method not in ("BCa", "percentile", "basic"):
        raise ValueError(
            f"`boot_method` must be 'BCa', 'percentile' or 'basic', got {boot_method!r}"
        )
    notes: list[Note] = []
    x = clean_1d(values, "values", notes, min_n=1)
    n = x.size
    mean, median = float(np.mean(x)), float(np.median(x))
    common: dict[str, Any] = dict(n=n, mean=mean, median=median, confidence=confidence, boot_method=boot_method)

    if n == 1:
        note(
            "`values` has only 1 finite value: sd and confidence intervals need at least 2 "
            "and are set to None",
            notes,
        )
        return ArmSummary(
            **common, sd=None, ci_low=None, ci_high=None, boot_low=None, boot_high=None,
            notes=tuple(notes),
        )

    sd = float(np.std(x, ddof=1))
    if sd == 0.0:
        # Every resample has the same mean, so both intervals are the point itself;
        # scipy would return NaN (t) or warn and return NaN (BCa) instead.
        note(f"all {n} values are identical (zero variance): intervals collapse to the mean",
             notes)
        return ArmSummary(
            **common, sd=0.0, ci_low=mean, ci_high=mean, boot_low=mean, boot_high=mean,
            notes=tuple(notes),
        )

    _, ci_low, ci_high = t_interval(x, confidence)  # type: ignore[misc]  # n >= 2 here
    boot_low, boot_high = _bootstrap_mean(x, confidence, n_boot, boot_method, as_rng(rng), notes)
    if n < 5:
        notes.append(Note(
            f"with only {n} seeds the bootstrap interval is too narrow; report the t interval"
        ))
    return ArmSummary(
        **common, sd=sd, ci_low=float(ci_low), ci_high=float(ci_high),
        boot_low=boot_low, boot_high=boot_high, notes=tuple(notes),
    )


def _bootstrap_mean(x, confidence, n_boot, method, rng, notes) -> tuple[float, float]:
    def run(m):
        with warnings.catch_warnings():
            # scipy warns (its own DegenerateDataWarning) when BCa is undefined;
            # we detect that from the NaN result and fall back explicitly below.
            warnings.simplefilter("ignore")
            res = stats.bootstrap(
                (x,), np.mean, n_resamples=n_boot, confidence_level=confidence,
                method=m, vectorized=True, rng=rng,
            )
        return float(res.confidence_interval.low), float(res.confidence_interval.high)

    low, high = run(method)
    if not (np.isfinite(low) and np.isfinite(high)):
        note(f"{method} bootstrap interval undefined for these values; used percentile instead",
             notes, stacklevel=4)
        low, high = run("percentile")
    return low, high
