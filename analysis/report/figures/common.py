"""What every report figure shares: metric labels, verdict colours, one colour per arm, the t
interval drawn for means over seeds, and `new_figure`.

`new_figure` makes a `Figure` rendered by Agg without going through pyplot, so drawing a figure
needs no display, sets no global backend and leaves no figure open in pyplot's registry: a
figure is an ordinary object that the garbage collector frees.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.stats.describe import t_interval  # noqa: F401  (re-exported: the figures draw it)

METRIC_LABELS = {
    "test_acc": "test accuracy (%)",
    "val_acc": "validation accuracy (%)",
    "train_acc": "training accuracy (%)",
    "train_loss": "training loss",
    "lr": "learning rate",
}
VERDICT_COLORS = {
    "better": "#1a9850",
    "worse": "#d73027",
    "equivalent": "#4575b4",
    "inconclusive": "#7f7f7f",
}
CONFIDENCE = 0.95


def new_figure(**kwargs) -> Figure:
    """A matplotlib `Figure` (same keywords) drawn by the Agg canvas, outside pyplot."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def arm_palette(arms: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """One colour per arm, in order (colour-blind safe for up to 10 arms)."""
    arms = list(dict.fromkeys(arms))
    colors = (sns.color_palette("colorblind", len(arms)) if len(arms) <= 10
              else sns.color_palette("husl", len(arms)))
    return dict(zip(arms, colors, strict=True))


def arm_order(arms: Sequence[str] | None, present: Sequence[str]) -> list[str]:
    """`arms` as given, else the arms present in order of appearance."""
    present = list(dict.fromkeys(present))
    if arms is None:
        return present
    return list(arms)


def complete_runs(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The complete runs with a finite value of `metric` (made numeric)."""
    ok = runs[runs["status"] == "complete"].copy()
    ok[metric] = pd.to_numeric(ok[metric], errors="coerce")
    return ok[np.isfinite(ok[metric].to_numpy(dtype=float))]


def empty_figure(figsize: tuple[float, float], text: str) -> Figure:
    """A figure that says, in its middle, why there is nothing to draw."""
    fig = new_figure(figsize=figsize, layout="constrained")
    ax = fig.subplots()
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11)
    ax.set_axis_off()
    return fig
