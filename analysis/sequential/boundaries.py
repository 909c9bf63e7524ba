"""Group-sequential boundaries: alpha-spending functions and the z/t boundaries they imply.

The numerical core of `analysis.sequential.decide` (the method and its references are in that
module's docstring). Everything here is a pure function of the information fractions
``t_1 < ... < t_k <= 1`` actually observed, so boundaries adapt when a look has fewer
seeds than planned (Lan & DeMets 1983).

Boundaries are found on the Brownian-motion scale ``B(t) = Z(t) sqrt(t)`` by the
recursive numerical integration of Armitage, McPherson & Rowe (1969), as laid out in
Jennison & Turnbull (2000), ch. 19: the sub-density of ``B(t_j)`` on the continuation
region is propagated look by look with Simpson's rule, and each two-sided boundary
``c_j`` solves ``P(first crossing at look j) = f(t_j) - f(t_{j-1})``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, special, stats

SPENDING_FUNCTIONS = ("obrien-fleming", "pocock", "power", "hsd")
# Simpson grid per look (odd): at least 201 points (boundaries to ~1e-4, see the tests), and
# at least 4 points per sd of the smallest increment between looks, so that a look
# following closely on the previous one (a look after one more seed) is integrated well.
_GRID = 201
_POINTS_PER_SD = 4
# Beyond this many standard deviations the density is negligible (< 1e-15).
_TAIL = 8.5


def spend(spending: str, param: float | None, alpha: float, t: float) -> float:
    """Cumulative two-sided alpha spent by information fraction ``t`` (0 <= t <= 1).

    * ``"obrien-fleming"``: Lan & DeMets (1983) ``2 - 2 Phi(z_{1-alpha/2} / sqrt(t))``;
      spends almost nothing early, close to a fixed-n test at the end.
    * ``"pocock"``: Lan & DeMets (1983) ``alpha log(1 + (e - 1) t)``; spends evenly.
    * ``"power"``: Kim & DeMets (1987) ``alpha t^rho`` (``param`` = rho > 0);
      rho = 1 is Pocock-like, rho = 3 O'Brien-Fleming-like.
    * ``"hsd"``: Hwang, Shih & DeCani (1990) ``alpha (1 - e^{-gamma t}) / (1 - e^{-gamma})``
      (``param`` = gamma != 0); gamma = -4 is O'Brien-Fleming-like, gamma = 1 Pocock-like.
    """
    if t <= 0:
        return 0.0
    if t >= 1:
        return alpha
    if spending == "obrien-fleming":
        return float(2 * stats.norm.sf(stats.norm.isf(alpha / 2) / math.sqrt(t)))
    if spending == "pocock":
        return alpha * math.log1p((math.e - 1) * t)
    if spending in ("power", "hsd"):
        if param is None:
            raise ValueError(f"`param` is required for {spending!r} spending")
        if spending == "power":
            return alpha * t ** param
        return alpha * (-math.expm1(-param * t)) / (-math.expm1(-param))
    raise ValueError(f"`spending` must be one of {SPENDING_FUNCTIONS}, got {spending!r}")


def _pdf(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def _simpson(lo: float, hi: float, points: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(lo, hi, points)
    w = np.ones(points)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return x, w * (hi - lo) / (3 * (points - 1))


def _grid_points(fractions) -> int:
    smallest = math.sqrt(min(np.diff((0.0, *fractions))))
    points = max(_GRID, math.ceil(2 * _TAIL * _POINTS_PER_SD / smallest))
    return points + (points % 2 == 0)


@lru_cache(maxsize=4096)
def z_boundaries(spending: str, param: float | None, alpha: float,
                 fractions: tuple[float, ...]) -> tuple[float, ...]:
    """Two-sided z boundaries ``c_1..c_k`` at the given information fractions.

    ``|Z_j| >= c_j`` rejects at look j; the probability under H0 of a first crossing at
    look j is the alpha spent between ``t_{j-1}`` and ``t_j``. A look where nothing is
    left to spend gets ``inf``. Fractions must increase strictly; a last fraction of 1
    spends everything that is left.
    """
    if not all(a < b for a, b in zip((0.0, *fractions), fractions, strict=False)) or (
            fractions and fractions[-1] > 1.0):
        raise ValueError(f"information fractions must increase within (0, 1], got {fractions}")
    points = _grid_points(fractions)
    bounds: list[float] = []
    prev_t, prev_spent = 0.0, 0.0
    x = w = dens = None  # sub-density of B(t_{j-1}) on the continuation region
    for t in fractions:
        target = spend(spending, param, alpha, t) - prev_spent
        sd_inc = math.sqrt(t - prev_t)
        root_t = math.sqrt(t)

        def cross(c, x=x, w=w, dens=dens, sd_inc=sd_inc, root_t=root_t):
            if dens is None:
                return 2 * special.ndtr(-c)
            b = c * root_t
            tail = special.ndtr((x - b) / sd_inc) + special.ndtr((-b - x) / sd_inc)
            return float(np.dot(w * dens, tail))

        if target <= 1e-15:
            c = math.inf
        else:
            hi = 1.0
            while cross(hi) > target:
                hi *= 2
            # cross(0) <= target: even a zero boundary cannot spend it all (only at t = 1).
            c = 0.0 if cross(0.0) <= target else optimize.brentq(
                lambda c, target=target: cross(c) - target, 0.0, hi, xtol=1e-10)
        bounds.append(c)
        prev_spent += target if math.isfinite(c) else 0.0
        # Propagate the density of B over the continuation region (-c sqrt t, c sqrt t).
        half = min(c, _TAIL) * root_t
        y, wy = _simpson(-half, half, points)
        if dens is None:
            new = _pdf(y / root_t) / root_t
        else:
            assert x is not None and w is not None  # set together with dens
            kernel = _pdf((y[:, None] - x[None, :]) / sd_inc) / sd_inc
            new = kernel @ (w * dens)
        x, w, dens, prev_t = y, wy, new, t
    return tuple(bounds)


def nominal_levels(spending: str, param: float | None, alpha: float,
                   fractions: tuple[float, ...]) -> np.ndarray:
    """Two-sided nominal significance level of each look's boundary, ``2 (1 - Phi(c_j))``.

    The small-sample bridge: a look with n pairs rejects when the paired t-test's two-sided
    p-value (df = n - 1) is at most this level, i.e. ``|T| >= t_{n-1}^{-1}(1 - level/2)``
    (the "nominal significance level" approach, Jennison & Turnbull 2000, ch. 3).
    """
    c = np.asarray(z_boundaries(spending, param, alpha, tuple(fractions)))
    return 2 * stats.norm.sf(c)


def t_boundaries(levels: ArrayLike, n: ArrayLike) -> np.ndarray:
    """|t| boundaries for looks with ``n`` pairs at the given nominal two-sided levels."""
    return stats.t.isf(np.asarray(levels) / 2, np.asarray(n) - 1)


def z_power(spending: str, param: float | None, alpha: float,
            fractions: tuple[float, ...], drift: float) -> float:
    """P(reject H0) of the two-sided z design when ``E[Z(1)] = drift`` (sizing only)."""
    bounds = z_boundaries(spending, param, alpha, tuple(fractions))
    points = _grid_points(fractions)
    total, prev_t = 0.0, 0.0
    x = w = dens = None
    for t, c in zip(fractions, bounds, strict=True):
        sd_inc, root_t, mean_inc = math.sqrt(t - prev_t), math.sqrt(t), drift * (t - prev_t)
        b = min(c, _TAIL + abs(drift)) * root_t
        y, wy = _simpson(-b, b, points)
        if dens is None:
            total += stats.norm.sf((b - drift * t) / root_t) + stats.norm.cdf(
                (-b - drift * t) / root_t)
            new = stats.norm.pdf((y - drift * t) / root_t) / root_t
        else:
            assert x is not None and w is not None  # set together with dens
            tail = (stats.norm.sf((b - x - mean_inc) / sd_inc)
                    + stats.norm.cdf((-b - x - mean_inc) / sd_inc))
            total += float(np.dot(w * dens, tail))
            kernel = stats.norm.pdf((y[:, None] - x[None, :] - mean_inc) / sd_inc) / sd_inc
            new = kernel @ (w * dens)
        x, w, dens, prev_t = y, wy, new, t
    return float(total)
