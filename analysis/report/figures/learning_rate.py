"""The learning-rate figure: the lr each run's optimizer actually used against the schedule its
configuration asks for, the check that catches a scheduler attached to an optimizer that never
steps."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from numpy.typing import ArrayLike

from analysis.formatting import param_value
from analysis.report.figures.common import arm_order, arm_palette, empty_figure, new_figure


def configured_lr(config: Mapping[str, Any], epochs: ArrayLike) -> np.ndarray | None:
    """The per-epoch lr that `config` asks for (StepLR or constant); None if not known.

    StepLR(step_size, gamma) on the optimizer that steps: ``lr * gamma ** ((epoch-1) //
    step_size)`` during 1-based `epoch`; ``scheduler = "none"``: constant ``lr``. A config
    without a `scheduler` key declares no schedule (a user experiment's `lr` may be
    scheduled inside its code): None, nothing to check against.
    """
    try:
        lr = float(config["lr"])
        scheduler = config["scheduler"]
        ep = np.asarray(epochs, dtype=int)
        if scheduler == "none":
            return np.full(ep.shape, lr)
        if scheduler == "step":
            return lr * float(config["gamma"]) ** ((ep - 1) // int(config["step_size"]))
    except (KeyError, TypeError, ValueError):
        return None
    return None


def _schedule_text(config: Mapping[str, object] | None) -> str:
    if not config:
        return "config unknown"
    lr = param_value(config.get("lr"))
    if config.get("scheduler") == "step":
        return f"config: StepLR({config.get('step_size')}, {config.get('gamma')}), lr {lr}"
    if config.get("scheduler") == "none":
        return f"config: constant lr {lr}"
    if "scheduler" not in config:
        return f"config: lr {lr}, no schedule declared" if "lr" in config else "no schedule declared"
    return f"config: scheduler {config.get('scheduler')!r}"


def lr_schedule_figure(
    epochs: pd.DataFrame,
    *,
    arms: Sequence[str] | None = None,
    configs: Mapping[str, Mapping[str, object]] | None = None,
    palette: Mapping[str, object] | None = None,
) -> Figure:
    """The learning rate each run's optimizer actually used, per epoch, one panel per arm.

    Solid: the lr read from the optimizer that stepped (every seed drawn; they overlap when
    they agree). Dashed: the schedule the arm's configuration asks for (`configured_lr`). A
    panel whose effective lr departs from its configuration is titled in red, and arms whose
    panels look the same ran the same schedule whatever their configs say: the figure that
    catches a scheduler attached to an optimizer that never steps.
    """
    configs = configs or {}
    present = list(epochs["arm"]) if "arm" in epochs else []
    arms = arm_order(arms, present)
    palette = dict(palette or arm_palette(arms))
    data = epochs.copy()
    if "lr" in data:
        data["lr"] = pd.to_numeric(data["lr"], errors="coerce")
    if data.empty or "lr" not in data or not data["lr"].notna().any():
        return empty_figure((8, 3), "no per-epoch learning rates recorded")
    ncols = min(len(arms), 3)
    nrows = math.ceil(len(arms) / ncols)
    fig = new_figure(figsize=(4.4 * ncols, 3.0 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    top = float(data["lr"].max())
    all_epochs = np.sort(data["epoch"].dropna().unique().astype(int))
    for ax in axes.flat[len(arms):]:
        ax.set_axis_off()
    for ax, arm in zip(axes.flat, arms, strict=False):
        expected = _arm_panel(ax, data[data["arm"] == arm], arm, configs.get(arm), all_epochs,
                              palette.get(arm))
        if expected is not None:
            top = max(top, float(expected.max()))
    # The lowest drawn panel of each column carries the epoch ticks: with sharex, matplotlib
    # only labels the last row, which leaves a column above an empty slot without any.
    for col in range(ncols):
        drawn = [r for r in range(nrows) if r * ncols + col < len(arms)]
        low = axes[drawn[-1], col]
        low.tick_params(labelbottom=True)
        low.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel("lr used")
    axes[0][0].set_ylim(0, top * 1.15)
    axes[0][0].xaxis.get_major_locator().set_params(integer=True)
    handles = [Line2D([], [], color="0.35", lw=2.2, marker="o", ms=3.5,
                      label="effective lr (read from the optimizer), one line per seed"),
               Line2D([], [], color="black", lw=1.1, ls="--",
                      label="lr the arm's configuration asks for")]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=8.5, frameon=False)
    fig.suptitle("Effective learning rate per epoch")
    return fig


def _arm_panel(ax, sel: pd.DataFrame, arm: str, cfg: Mapping[str, object] | None,
               all_epochs: np.ndarray, color) -> np.ndarray | None:
    """Draw one arm's panel: each seed's effective lr, the configured schedule (dashed), a
    title in red when they disagree or the seeds ran different schedules. Returns the
    configured schedule (None when unknown)."""
    seqs = []
    for _, run in sel.groupby("seed", sort=True):
        run = run.sort_values("epoch")
        ax.plot(run["epoch"], run["lr"], drawstyle="steps-mid", color=color,
                lw=2.2, alpha=0.6, marker="o", ms=3.5)
        seqs.append(tuple(np.round(run["lr"].to_numpy(dtype=float), 12)))
    expected = configured_lr(cfg, all_epochs) if cfg else None
    mismatch = False
    if expected is not None:
        ax.plot(all_epochs, expected, drawstyle="steps-mid", color="black", lw=1.1, ls="--")
        want = dict(zip(all_epochs.tolist(), expected, strict=True))
        for _, row in sel.iterrows():
            e = int(row["epoch"])
            if e in want and np.isfinite(row["lr"]) and not math.isclose(
                    row["lr"], want[e], rel_tol=1e-6, abs_tol=1e-12):
                mismatch = True
                break
    n_distinct = len(set(seqs))
    note = (f"{len(seqs)} seed{'s' if len(seqs) != 1 else ''}"
            + ("" if n_distinct <= 1 else f", {n_distinct} different schedules"))
    title = f"{arm}\n{_schedule_text(cfg)}"
    if mismatch:
        title += "\nEFFECTIVE LR DIFFERS FROM CONFIG"
    ax.set_title(title, fontsize=9.5, color="#b2182b" if mismatch or n_distinct > 1 else "black")
    ax.text(0.97, 0.05, note, transform=ax.transAxes, ha="right", va="bottom", fontsize=8,
            color="0.3")
    ax.grid(alpha=0.3)
    return expected
