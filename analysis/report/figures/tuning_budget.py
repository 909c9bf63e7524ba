"""Expected best validation score against tuning budget (Dodge et al. 2019), one line per tuned
arm: how much of a gap between tuned arms is tuning budget rather than the arms themselves."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from analysis.formatting import number
from analysis.report.figures.common import arm_palette, new_figure


def budget_points(n: int) -> list[int]:
    """1, 2, 4, 8, ... up to n, and n itself: the budgets the table shows."""
    points = [1 << k for k in range(n.bit_length()) if 1 << k <= n]
    return points + ([n] if points[-1] != n else []) if points else []


def expected_best_table(curves: Mapping[str, np.ndarray], digits: int = 2) -> pd.DataFrame:
    """Arms x budgets: E[best of n candidates] (blank where an arm tried fewer than n)."""
    longest = max((len(c) for c in curves.values()), default=0)
    cols = budget_points(longest)
    rows = []
    for arm, curve in curves.items():
        row: dict[str, object] = {"arm": arm, "candidates": len(curve)}
        for n in cols:
            row[f"n = {n}"] = number(curve[n - 1], digits) if n <= len(curve) else ""
        rows.append(row)
    return pd.DataFrame(rows, columns=["arm", "candidates", *[f"n = {n}" for n in cols]])


def expected_best_figure(curves: Mapping[str, np.ndarray], ylabel: str) -> Figure:
    """E[best of n] against n for every arm (Tang et al.'s unbiased estimator: no line extends
    past the candidates its arm tried)."""
    fig = new_figure(figsize=(6.5, 3.6), constrained_layout=True)
    ax = fig.subplots()
    colours = arm_palette(list(curves))
    for arm, curve in curves.items():
        n = np.arange(1, len(curve) + 1)
        ax.plot(n, curve, marker="o", ms=3, color=colours[arm], label=arm)
    ax.set(xlabel="tuning budget (candidate configurations tried)", ylabel=f"expected best {ylabel}",
           title="Expected best validation score against budget")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))  # 1, 2, 4 rather than 2^0, 2^1
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return fig
