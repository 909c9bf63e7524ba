"""Across-task figures: performance profiles (rliable) and a critical-difference diagram
(Demsar 2006)."""

from __future__ import annotations

from matplotlib.figure import Figure

from analysis.report.figures.common import arm_palette, new_figure
from analysis.tasks.aggregates import Profile
from analysis.tasks.meta import Ranking


def profile_figure(p: Profile) -> Figure:
    """Fraction of runs (all tasks) with a normalised score above tau, per arm, with the
    stratified bootstrap 95% band: a curve above another is better at every threshold."""
    fig = new_figure(figsize=(6.0, 3.6))
    ax = fig.add_subplot()
    colors = arm_palette(list(p.fraction))
    for arm, frac in p.fraction.items():
        ax.plot(p.taus, frac, color=colors[arm], label=arm, lw=1.8)
        ax.fill_between(p.taus, p.low[arm], p.high[arm], color=colors[arm], alpha=0.2, lw=0)
    ax.set_xlabel(f"normalised score tau ({p.description})", fontsize=8)
    ax.set_ylabel("fraction of runs > tau")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def critical_difference_figure(r: Ranking) -> Figure:
    """Average rank of each arm on an axis (1 = best, on the left); a bar joins arms whose
    ranks differ by less than Nemenyi's critical difference (not told apart)."""
    k = len(r.arms)
    order = sorted(r.arms, key=lambda a: r.average_rank[a])
    fig = new_figure(figsize=(6.0, 1.2 + 0.3 * k))
    ax = fig.add_subplot()
    ax.set_xlim(0.8, k + 0.2)
    ax.set_ylim(-(k + 1) * 0.3 - 0.2, 0.6)
    ax.hlines(0, 1, k, color="black", lw=1)
    for i in range(1, k + 1):
        ax.vlines(i, -0.05, 0.05, color="black", lw=1)
        ax.text(i, 0.12, str(i), ha="center", fontsize=8)
    for j, arm in enumerate(order):
        x, y = r.average_rank[arm], -0.3 * (j + 1)
        ax.plot([x, x], [0, y], color="0.4", lw=0.8)
        ax.text(x + 0.05, y, f"{arm} ({x:.2f})", va="center", fontsize=8)
    cd = r.critical_difference
    if cd is not None:
        ax.plot([1, 1 + cd], [0.4, 0.4], color="black", lw=2)
        ax.text(1 + cd / 2, 0.47, f"CD = {cd:.2f}", ha="center", fontsize=8)
        groups = _cliques(order, r.average_rank, cd)
        for g, (lo, hi) in enumerate(groups):
            y = -0.15 - 0.08 * g
            ax.plot([r.average_rank[lo] - 0.03, r.average_rank[hi] + 0.03], [y, y], color="black", lw=3)
    title = "Average rank over tasks" + (f" (Friedman p = {r.pvalue:.3g})" if r.pvalue is not None
                                         else f" ({r.cannot})")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    return fig


def _cliques(order: list[str], rank: dict[str, float], cd: float) -> list[tuple[str, str]]:
    """Maximal runs of arms (in rank order) whose extreme ranks differ by less than `cd`."""
    out: list[tuple[str, str]] = []
    for i, a in enumerate(order):
        j = i
        while j + 1 < len(order) and rank[order[j + 1]] - rank[a] < cd:
            j += 1
        if j > i and not any(lo_i <= i and j <= hi_i for lo_i, hi_i in
                             ((order.index(lo), order.index(hi)) for lo, hi in out)):
            out.append((a, order[j]))
    return out
