"""Figures of the runs themselves: each seed's final value per arm, and the learning curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from analysis.formatting import number, percent
from analysis.report.figures.common import (
    CONFIDENCE,
    arm_order,
    arm_palette,
    complete_runs,
    empty_figure,
    metric_label,
    new_figure,
    t_interval,
)


def distribution_figure(
    runs: pd.DataFrame,
    *,
    metric: str = "test_acc",
    arms: Sequence[str] | None = None,
    baseline: str | None = None,
    palette: Mapping[str, object] | None = None,
    seed: int = 0,
) -> Figure:
    """Every seed's value per arm (points) with the mean and its 95% t interval (black).

    Only complete runs are plotted; the tick label gives n and any failed/diverged runs.
    `seed` fixes the horizontal jitter (seaborn draws it from NumPy's global generator).
    """
    arms = arm_order(arms, runs["arm"])
    palette = dict(palette or arm_palette(arms))
    ok = complete_runs(runs, metric)
    ok = ok[ok["arm"].isin(arms)]
    figsize = (max(6.5, 1.5 * len(arms) + 2.5), 4.8)
    if ok.empty:
        return empty_figure(figsize, f"no complete runs with {metric}")
    fig = new_figure(figsize=figsize, layout="constrained")
    ax = fig.subplots()
    state = np.random.get_state()
    np.random.seed(seed)  # same figure bytes for the same data; the caller's state is restored
    try:
        sns.stripplot(data=ok, x="arm", y=metric, order=arms, hue="arm", hue_order=arms,
                      palette=palette, jitter=0.12, size=6, alpha=0.75, edgecolor="white",
                      linewidth=0.5, legend=False, ax=ax)
    finally:
        np.random.set_state(state)
    labels = []
    for i, arm in enumerate(arms):
        sel = runs[runs["arm"] == arm]
        vals = ok.loc[ok["arm"] == arm, metric].to_numpy(dtype=float)
        bad = int((sel["status"] != "complete").sum())
        labels.append(f"{arm}\nn={len(vals)}" + (f" (+{bad} not complete)" if bad else ""))
        ci = t_interval(vals)
        if ci is None:
            continue
        mean, lo, hi = ci
        x = i + 0.3
        if np.isfinite(lo):
            ax.errorbar(x, mean, yerr=[[mean - lo], [hi - mean]], fmt="D", color="black",
                        markersize=6, capsize=5, elinewidth=1.6, zorder=5)
        else:
            ax.plot(x, mean, "D", color="black", markersize=6, zorder=5)
        ax.annotate(number(mean), (x, mean), xytext=(7, 0), textcoords="offset points",
                    va="center", ha="left", fontsize=8.5)
    if baseline is not None and baseline in set(ok["arm"]):
        base_mean = float(ok.loc[ok["arm"] == baseline, metric].mean())
        ax.axhline(base_mean, color="0.4", lw=1, ls="--", zorder=0,
                   label=f"{baseline} mean ({number(base_mean)})")
    ax.errorbar([], [], yerr=[], fmt="D", color="black", capsize=5,
                label=f"mean and {percent(CONFIDENCE)} t interval over seeds")
    ax.plot([], [], "o", color="0.5", alpha=0.75, label="one seed")
    ax.set_xticks(range(len(arms)), labels)
    ax.set_xlim(-0.6, len(arms) - 0.2)
    ax.set_xlabel("")
    ax.set_ylabel(metric_label(metric))
    ax.set_title(f"{metric_label(metric).capitalize()} per arm over seeds")
    ax.legend(loc="best", fontsize=8.5, framealpha=0.9)
    ax.grid(axis="y", alpha=0.3)
    return fig


def _band(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    rows = []
    for epoch, grp in frame.groupby("epoch", sort=True):
        ci = t_interval(pd.to_numeric(grp[metric], errors="coerce"))
        if ci is not None:
            rows.append((epoch, *ci))
    return pd.DataFrame(rows, columns=["epoch", "mean", "low", "high"])


def learning_curves_figure(
    epochs: pd.DataFrame,
    *,
    runs: pd.DataFrame | None = None,
    arms: Sequence[str] | None = None,
    metrics: Sequence[str] = ("val_acc", "train_loss"),
    palette: Mapping[str, object] | None = None,
) -> Figure:
    """Per arm and epoch: mean over seeds (line) and its 95% t band, one panel per metric.

    With `runs`, only runs whose status is ``complete`` are averaged (a diverged run's NaN
    losses would end the curve). Metrics that were never measured are left out.
    """
    arms = arm_order(arms, epochs.get("arm", []))
    palette = dict(palette or arm_palette(arms))
    data = epochs
    if runs is not None and not epochs.empty:
        keep = runs.loc[runs["status"] == "complete", ["arm", "seed"]]
        data = epochs.merge(keep, on=["arm", "seed"], how="inner")
    metrics = [m for m in metrics if m in data and pd.to_numeric(data[m], errors="coerce").notna().any()]
    if data.empty or not metrics:
        return empty_figure((8, 3), "no per-epoch records")
    fig = new_figure(figsize=(6.0 * len(metrics), 4.6), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for arm in arms:
            band = _band(data[data["arm"] == arm], metric)
            if band.empty:
                continue
            color = palette.get(arm)
            ax.plot(band["epoch"], band["mean"], color=color, lw=1.8, marker="o", ms=3,
                    label=arm)
            ax.fill_between(band["epoch"], band["low"], band["high"], color=color, alpha=0.2,
                            lw=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric_label(metric))
        ax.set_title(metric_label(metric).capitalize())
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 5),
               fontsize=9, frameon=False)
    fig.suptitle(f"Learning curves: mean over complete runs and {percent(CONFIDENCE)} t band over seeds")
    return fig
