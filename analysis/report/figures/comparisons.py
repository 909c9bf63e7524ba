"""Figures of the comparisons: the forest plot of each arm against the baseline, the all-pairs
heatmap, and the power curves (smallest detectable difference against seeds per arm)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.artist import Artist, setp
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FormatStrFormatter, ScalarFormatter

from analysis.formatting import MINUS, interval, number, p_value, percent, significant
from analysis.report.figures.common import (
    CONFIDENCE,
    VERDICT_COLORS,
    arm_order,
    arm_palette,
    empty_figure,
    metric_label,
    new_figure,
)
from analysis.stats.family import Family
from analysis.stats.power import detectable_difference


def forest_figure(
    frame: pd.DataFrame,
    *,
    margin: float,
    baseline: str | None = None,
    metric: str = "test_acc",
    direction: str = "maximize",
) -> Figure:
    """Difference of each arm from the baseline with its 95% CI, coloured by verdict.

    The x label says which side is better: right for a metric to maximize, left for one to
    minimize (a loss), so a reader never takes a higher loss for an improvement.

    `frame` is `family_frame` of a ``pairs="baseline"`` family. The grey band is the
    equivalence margin ±`margin`; the right-hand labels give the numbers and Holm p. When the
    differences span far more than the margin, a second panel zooms on ±5 margins so that the
    band stays readable next to large effects.
    """
    k = len(frame)
    height = 1.4 + 0.62 * max(k, 1) + 0.6
    if k == 0:
        return empty_figure((10, height), "no comparisons (fewer than two arms with at least two runs)")
    baseline = baseline or str(frame["baseline"].iloc[0])
    lo = min(float(frame["ci_low"].min()), -margin)
    hi = max(float(frame["ci_high"].max()), margin)
    zoom = (hi - lo) > 12 * margin
    if zoom:
        fig = new_figure(figsize=(12, height), layout="constrained")
        ax, zax = fig.subplots(1, 2, sharey=True, width_ratios=[3, 2])
        panels = [(ax, lo, hi, f"arm − {baseline}: all arms"), (zax, -5 * margin, 5 * margin,
                                             f"zoom on ±{5 * margin:g} (5 margins)")]
    else:
        fig = new_figure(figsize=(10, height), layout="constrained")
        ax = fig.subplots()
        panels = [(ax, lo, hi, f"arm − {baseline}")]
    y = np.arange(k)[::-1]
    verdicts = frame["verdict"].astype(str).tolist()
    for pax, a, b, title in panels:
        pax.axvspan(-margin, margin, color="0.85", zorder=0)
        pax.axvline(0, color="0.3", lw=1, zorder=1)
        for yi, row, verdict in zip(y, frame.itertuples(index=False), verdicts, strict=True):
            color = VERDICT_COLORS.get(verdict, "black")
            pax.errorbar(row.diff, yi, xerr=[[max(0.0, row.diff - row.ci_low)],
                                             [max(0.0, row.ci_high - row.diff)]],
                         fmt="o", color=color, capsize=5, ms=7, elinewidth=2, zorder=3)
            if row.ci_high < a or row.ci_low > b:  # entirely off this panel's scale
                pax.annotate("◀ off scale" if row.ci_high < a else "off scale ▶",
                             (0.02 if row.ci_high < a else 0.98, yi),
                             xycoords=("axes fraction", "data"), va="center",
                             ha="left" if row.ci_high < a else "right", fontsize=8, color=color)
        pad = 0.06 * (b - a)
        pax.set_xlim(a - pad, b + pad)
        pax.grid(axis="x", alpha=0.3)
        for side in ("top", "right"):
            pax.spines[side].set_visible(False)
        if title:
            pax.set_title(title, fontsize=10.5)
    ax.set_yticks(y, list(frame["arm"]))
    ax.set_ylim(-0.7, k - 0.3)
    last = panels[-1][0]
    twin = last.twinx()
    twin.set_ylim(ax.get_ylim())
    twin.set_yticks(y, [f"{number(r.diff, signed=True)} {interval(r.ci_low, r.ci_high, signed=True)}\n"
                        f"{v}, p(Holm) {p_value(r.p_adjusted, minus=MINUS)}"
                        for r, v in zip(frame.itertuples(index=False), verdicts, strict=True)],
                    fontsize=8.5)
    twin.tick_params(axis="y", length=0)
    for side in ("top", "right"):
        twin.spines[side].set_visible(False)
    sides = "← worse | better →" if direction == "maximize" else "← better | worse →"
    fig.supxlabel(f"difference in {metric_label(metric)}: arm − {baseline} "
                  f"(mean and {percent(CONFIDENCE)} CI, unadjusted)   {sides}", fontsize=10)
    handles: list[Artist] = [Patch(color="0.85", label=f"equivalence margin ±{margin:g}")]
    handles += [Line2D([], [], marker="o", ls="-", color=VERDICT_COLORS[v], label=v)
                for v in VERDICT_COLORS if v in verdicts]
    fig.legend(handles=handles, loc="outside upper center", ncol=len(handles), fontsize=8.5,
               frameon=False)
    return fig


def pairwise_figure(
    frame: pd.DataFrame,
    *,
    arms: Sequence[str] | None = None,
    alpha: float = 0.05,
    metric: str = "test_acc",
) -> Figure:
    """All-pairs heatmap: cell (row, column) = mean(row) − mean(column), with Holm p.

    `frame` is `family_frame` of a ``pairs="all"`` family; only the lower triangle is drawn
    (the upper one is its mirror). Significant cells (Holm p < `alpha`) are starred.
    """
    present = list(dict.fromkeys([*frame.get("baseline", []), *frame.get("arm", [])]))
    arms = [a for a in arm_order(arms, present) if a in set(present)]
    k = len(arms)
    if k < 2:
        return empty_figure((6, 3), "fewer than two arms to compare")
    idx = {a: i for i, a in enumerate(arms)}
    diff = np.full((k, k), np.nan)
    pval = np.full((k, k), np.nan)
    for row in frame.itertuples(index=False):
        if row.arm in idx and row.baseline in idx:
            i, j = idx[row.arm], idx[row.baseline]
            diff[i, j], diff[j, i] = row.diff, -row.diff
            pval[i, j] = pval[j, i] = row.p_adjusted
    d, p = diff[1:, :-1], pval[1:, :-1]
    rows, cols = arms[1:], arms[:-1]
    mask = np.triu(np.ones_like(d, dtype=bool), k=1) | np.isnan(d)
    annot = np.empty(d.shape, dtype=object)
    for i in range(d.shape[0]):
        for j in range(d.shape[1]):
            annot[i, j] = "" if mask[i, j] else (
                f"{number(d[i, j], signed=True)}{'*' if p[i, j] < alpha else ''}\n"
                f"p={p_value(p[i, j], minus=MINUS)}")
    vmax = float(np.nanmax(np.abs(d))) if np.isfinite(d).any() else 1.0
    size = 1.05 * (k - 1) + 2.6
    fig = new_figure(figsize=(size + 1.6, size), layout="constrained")
    ax = fig.subplots()
    with warnings.catch_warnings():  # seaborn 0.13 calls the deprecated Colormap.set_bad
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        sns.heatmap(pd.DataFrame(d, index=rows, columns=cols), mask=mask, annot=annot, fmt="",
                    cmap="RdBu", center=0, vmin=-vmax, vmax=vmax, linewidths=1,
                    linecolor="white", annot_kws={"fontsize": 9}, square=True, ax=ax,
                    cbar_kws={"label": f"row − column, {metric_label(metric)}", "shrink": 0.8})
    ax.set_xlabel("column arm")
    ax.set_ylabel("row arm")
    ax.tick_params(axis="x", rotation=30)
    setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")  # type: ignore[arg-type]  # setp takes lists
    ax.tick_params(axis="y", rotation=0)
    ax.set_title(f"All pairs: row − column; p Holm-adjusted over the {len(frame)} pairs\n"
                 f"(* = significant at α = {alpha:g})", fontsize=10.5)
    return fig


def detectable(n_seeds, sd: float, *, paired: bool, alpha: float, power: float) -> np.ndarray:
    """`detectable_difference` at each n in `n_seeds`, NaN where it cannot be computed.

    Called one n at a time: for a few n (e.g. 59, 71, 121 at alpha 0.0125) statsmodels'
    ``solve_power`` returns a 1-element array, which `detectable_difference` cannot convert
    to a float on numpy 2; those points are left out of the curve rather than failing.
    """
    out = []
    for n in np.atleast_1d(np.asarray(n_seeds, dtype=np.int64)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out.append(float(detectable_difference(np.int64(n), sd, paired=paired,
                                                        alpha=alpha, power=power)))
            except (TypeError, ValueError, FloatingPointError):
                out.append(math.nan)
    return np.asarray(out)


def power_figure(
    family: Family,
    *,
    max_seeds: int | None = None,
    palette: Mapping[str, object] | None = None,
) -> Figure:
    """Smallest true difference each comparison can detect vs seeds per arm (log-log).

    Uses `detectable_difference` with each comparison's observed seed sd (of the paired
    differences when paired), its power and alpha / m (Holm's first step, as for
    ``seeds_needed``). The dashed line is the equivalence margin, the dotted line the seeds
    run so far; where a curve crosses the margin is the number of seeds needed.
    """
    comps = [c for c in family.comparisons if c.sd > 0 and np.isfinite(c.sd)]
    if not comps:
        return empty_figure((9, 5), "no comparison with a non-zero seed sd: power cannot be "
                            "estimated")
    fig = new_figure(figsize=(9, 5), layout="constrained")
    ax = fig.subplots()
    n_now = max(c.n_arm for c in comps)
    needed = [c.sensitivity.seeds_needed for c in comps if c.sensitivity.seeds_needed]
    top = max([4 * n_now, 20, *(int(1.3 * n) for n in needed)])
    top = int(min(max_seeds or top, 2000))
    grid = np.unique(np.geomspace(2, max(top, 3), 60).round().astype(int))
    palette = dict(palette or arm_palette(
        [family.baseline or comps[0].baseline_name, *(c.arm_name for c in comps)]))
    m = comps[0].family_size
    for c in comps:
        dd = detectable(grid, c.sd, paired=c.paired, alpha=c.alpha / m, power=c.sensitivity.power)
        at_n = detectable(max(c.n_arm, 2), c.sd, paired=c.paired, alpha=c.alpha / m,
                          power=c.sensitivity.power)[0]
        keep = np.isfinite(dd)
        need = (f"{c.sensitivity.seeds_needed} seeds for ±{c.margin:g}" if c.sensitivity.seeds_needed
                else "seeds needed n/a")
        color = palette[c.arm_name]
        ax.plot(grid[keep], dd[keep], color=color, lw=2,
                label=f"{c.arm_name} vs {c.baseline_name} (sd {significant(c.sd)}; {need})")
        ax.plot([c.n_arm], [at_n], "o", color=color, ms=7, zorder=4)
        if c.sensitivity.seeds_needed and c.sensitivity.seeds_needed <= grid[-1]:
            ax.plot([c.sensitivity.seeds_needed], [c.margin], "x", color=color, ms=9, mew=2, zorder=4)
    margin = comps[0].margin
    ax.axhline(margin, color="black", ls="--", lw=1.2, label=f"equivalence margin {margin:g}")
    ax.axvline(n_now, color="0.35", ls=":", lw=1.5, label=f"seeds run so far ({n_now})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(2, grid[-1])
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.set_xlabel("seeds per arm")
    ax.set_ylabel("smallest detectable true difference (points)")
    design = "paired t-test" if comps[0].paired else "two-sample t-test"
    ax.set_title(f"Detectable difference at {percent(comps[0].sensitivity.power)} power ({design}, two-sided "
                 f"α = {comps[0].alpha:g}/{m}, Holm's first step; observed sd)", fontsize=10.5)
    ax.grid(which="both", alpha=0.25)
    ax.legend(fontsize=8.5, loc="upper right", framealpha=0.92)
    return fig
