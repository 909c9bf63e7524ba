"""Power analysis: how many seeds per arm, and what they can detect.

Both functions use statsmodels' t-test power: `TTestPower` (one-sample t on
the paired differences) when paired, `TTestIndPower` (two-sample t, equal
variances, equal n) otherwise. For unpaired designs this is the Student-t
power; the Welch test used for inference loses a fraction of a degree of
freedom when variances differ, so treat the answers as slightly optimistic
there.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import optimize
from statsmodels.stats.power import TTestIndPower, TTestPower
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from analysis._checks import check_bool, check_positive, check_probability, note

# A t-test needs at least 2 observations per arm (df >= 1), so 2 is the floor.
MIN_SEEDS = 2


def _analysis(paired: bool):
    return TTestPower() if paired else TTestIndPower()


def _power(paired: bool, effect: float, n, alpha: float):
    # statsmodels names the sample size `nobs` (one-sample) or `nobs1` (two-sample).
    kw = {"nobs" if paired else "nobs1": n, "effect_size": effect}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = _analysis(paired).power(alpha=alpha, **kw)
        if np.isnan(p).any():
            # For large noncentrality scipy's noncentral t returns NaN for the far
            # (wrong-sign) tail, which is < 1e-15 there. Power of the two-sided test
            # is then the near tail alone: a one-sided test at alpha/2.
            near = _analysis(paired).power(alpha=alpha / 2, alternative="larger", **kw)
            p = np.where(np.isnan(p), near, p)
        if np.isnan(p).any() and effect > 50:
            # Effect sizes this large (a near-zero sd, e.g. arms that differ only by float
            # round-off) have power 1 at any n; scipy returns NaN for both tails there.
            p = np.where(np.isnan(p), 1.0, p)
    if np.isnan(p).any():  # would silently break the searches below
        raise FloatingPointError(f"power is NaN for effect size {effect} at n={n}")
    return p if np.ndim(p) else float(p)


def seeds_needed(
    diff: float, sd: float, *, paired: bool, alpha: float = 0.05, power: float = 0.8
) -> int | None:
    """Seeds per arm for a two-sided t-test to detect `diff` with `power`.

    Parameters
    ----------
    diff : float
        True difference to detect, in metric units; only |diff| matters.
    sd : float
        Seed-to-seed sd. When `paired`, the sd of the *paired differences*;
        otherwise the (common) per-arm sd.
    paired : bool
        Paired (same seeds in both arms) or independent arms.

    Returns
    -------
    int or None
        The smallest n (>= 2) reaching `power` (statsmodels ``solve_power``,
        rounded up). ``None`` with a `DegenerateDataWarning` when ``diff == 0``:
        no finite number of seeds detects a zero difference.
    """
    paired = check_bool(paired, "paired")
    alpha = check_probability(alpha, "alpha")
    power = check_probability(power, "power")
    sd = check_positive(sd, "sd")
    if not math.isfinite(diff):
        raise ValueError(f"`diff` must be a finite number, got {diff!r}")
    if diff == 0:
        note("`diff` is 0: no finite number of seeds can detect a zero difference; "
             "returning None", stacklevel=2)
        return None
    effect = abs(diff) / sd
    if _power(paired, effect, MIN_SEEDS, alpha) >= power:
        return MIN_SEEDS
    key = "nobs" if paired else "nobs1"
    with warnings.catch_warnings():
        # The root finder fails for huge effects; we fall back to a search below.
        warnings.simplefilter("ignore", ConvergenceWarning)
        n_float = _analysis(paired).solve_power(
            effect_size=effect, alpha=alpha, power=power, **{key: None}
        )
    if np.isfinite(n_float):
        n = max(MIN_SEEDS, math.ceil(float(n_float) - 1e-9))
    else:
        n = _bisect_n(paired, effect, alpha, power)
    # Guard against root-finder tolerance: make n the smallest integer that works.
    while _power(paired, effect, n, alpha) < power:
        n += 1
    while n > MIN_SEEDS and _power(paired, effect, n - 1, alpha) >= power:
        n -= 1
    return int(n)


def _bisect_n(paired, effect, alpha, power) -> int:
    lo, hi = MIN_SEEDS, MIN_SEEDS * 2
    while _power(paired, effect, hi, alpha) < power:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _power(paired, effect, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def detectable_difference(
    n_seeds, sd: float, *, paired: bool, alpha: float = 0.05, power: float = 0.8
):
    """Minimal detectable difference (metric units) at each number of seeds per arm.

    The inverse of `seeds_needed`, for power-curve figures: with `n_seeds` per
    arm and seed sd `sd` (sd of paired differences when `paired`), a true
    difference of at least this size is detected with probability `power`.

    Returns a float for scalar `n_seeds`, else an array of the same shape.
    """
    paired = check_bool(paired, "paired")
    alpha = check_probability(alpha, "alpha")
    power = check_probability(power, "power")
    sd = check_positive(sd, "sd")
    n_arr = np.asarray(n_seeds)
    if n_arr.size == 0 or not np.issubdtype(n_arr.dtype, np.integer) or (n_arr < MIN_SEEDS).any():
        raise ValueError(f"`n_seeds` must be integer(s) >= {MIN_SEEDS}, got {n_seeds!r}")
    out = np.array([_effect_at(paired, int(n), alpha, power) for n in n_arr.ravel()]) * sd
    return float(out[0]) if n_arr.ndim == 0 else out.reshape(n_arr.shape)


def _effect_at(paired: bool, n: int, alpha: float, power: float) -> float:
    key = "nobs" if paired else "nobs1"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        es = _analysis(paired).solve_power(effect_size=None, alpha=alpha, power=power,
                                           **{key: n})
    if np.isfinite(es):
        return float(np.asarray(es).item())
    # Very small n needs a very large effect; bracket it ourselves.
    hi = 1.0
    while _power(paired, hi, n, alpha) < power:
        hi *= 2
    return float(optimize.brentq(lambda e: _power(paired, e, n, alpha) - power, 1e-12, hi))
