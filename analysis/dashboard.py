"""What optuna-dashboard shows for an ablation study: the verdict note and the per-arm figures.

optuna-dashboard is built for optimisation: its "best trial" is the luckiest seed of some arm
and its hyperparameter importance ranks `seed` above `arm`. `publish` writes what the dashboard
should show instead, whenever the report is written: the study note (verdict table, what the
generic widgets mean here) and two plotly figures made from the same data as the report's
distribution and forest figures, saved with `optuna_dashboard.save_plotly_graph_object` under
fixed ids so that each report replaces them. It also names the objective ("test_acc", the
value every ablation trial stores) so the dashboard's axes do not say "Objective 0".

`distribution_plotly` and `forest_plotly` are pure (frames in, figure out); only `publish`
touches the storage, and never fails the report: it returns a message saying what it did.

Arrays go into the figures as plain lists: plotly >= 6 would otherwise store numpy arrays as
base64 typed arrays, which the plotly.js bundled with older optuna-dashboard releases cannot
read.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .contract import COMPLETE, redact
from .figures import CONFIDENCE, VERDICT_COLORS, t_interval
from .numbers import interval, number, percent, significant

__all__ = ["DashboardData", "FIGURE_IDS", "OBJECTIVE", "distribution_plotly", "forest_plotly",
           "note_text", "publish"]

OBJECTIVE = "test_acc"  # study.store records every ablation trial's test_acc as its value
FIGURE_IDS = {"distribution": "seedwise-distribution", "forest": "seedwise-forest"}
WIDGET_CAVEATS = (
    "**Reading the dashboard for an ablation.** The trials are (arm, seed) runs, not an "
    "optimisation: the *Best Trial* is the luckiest seed of one arm, not the best arm; "
    "*Hyperparameter Importance* ranks `seed` next to `arm` because it explains the spread of "
    "single runs, not the difference between arms; and the *History* plot's best-so-far line "
    "is a running maximum over the seeds of all arms. Read the verdicts above and the two "
    "seedwise figures on the study's main page (*per arm over seeds*, *Difference from the "
    "baseline*) instead.")


@dataclass(frozen=True)
class DashboardData:
    """The inputs of the report's distribution and forest figures, kept for the dashboard."""

    runs: pd.DataFrame  # runs as the report analyses them (arm, seed, status, metric)
    comparisons: pd.DataFrame  # `family_frame` of the baseline family (may be empty)
    arms: Sequence[str]
    baseline: str
    metric: str
    metric_label: str
    margin: float
    palette: Mapping[str, object]


def _hex(color) -> str:
    if isinstance(color, str):
        return color
    r, g, b = (int(round(255 * float(c))) for c in tuple(color)[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def distribution_plotly(data: DashboardData):
    """Every complete run per arm (one point per seed, seed in the hover) and each arm's mean
    with its 95% t interval: the report's distribution figure, interactive."""
    import plotly.graph_objects as go

    ok = data.runs[(data.runs["status"] == COMPLETE) & data.runs[data.metric].notna()]
    fig = go.Figure()
    for arm in data.arms:
        sel = ok[ok["arm"] == arm]
        vals = sel[data.metric].to_numpy(dtype=float)
        if not len(vals):
            continue
        color = _hex(data.palette.get(arm, "#555555"))
        fig.add_trace(go.Box(
            x=[arm] * len(vals), y=vals.tolist(), name=arm, boxpoints="all", jitter=0.4, pointpos=0,
            fillcolor="rgba(0,0,0,0)", line={"color": "rgba(0,0,0,0)"},
            marker={"color": color, "size": 7, "opacity": 0.75},
            customdata=sel["seed"].tolist(), hoveron="points",
            hovertemplate=f"{arm}, seed %{{customdata}}: %{{y:.2f}}<extra></extra>"))
        ci = t_interval(vals)
        if ci is not None and np.isfinite(ci[1]):
            mean, lo, hi = ci
            fig.add_trace(go.Scatter(
                x=[arm], y=[mean], mode="markers", marker={"symbol": "diamond", "size": 10,
                                                            "color": "black"},
                error_y={"type": "data", "symmetric": False, "array": [hi - mean],
                         "arrayminus": [mean - lo], "color": "black", "thickness": 2},
                name=f"{arm} mean", showlegend=False,
                hovertemplate=(f"{arm}: mean %{{y:.2f}}, {percent(CONFIDENCE)} CI "
                               f"[{number(lo)}, {number(hi)}], n = {len(vals)}<extra></extra>")))
    fig.update_layout(
        title=f"{data.metric_label.capitalize()} per arm over seeds<br><sup>points: one "
              f"seed; diamond: mean and {percent(CONFIDENCE)} t interval</sup>",
        yaxis_title=data.metric_label, xaxis={"categoryorder": "array",
                                             "categoryarray": list(data.arms)},
        showlegend=False, template="plotly_white", height=480)
    return fig


def forest_plotly(data: DashboardData):
    """Difference of each arm from the baseline with its 95% CI, coloured by verdict; grey
    band: the equivalence margin. The report's forest figure, interactive."""
    import plotly.graph_objects as go

    frame = data.comparisons
    fig = go.Figure()
    fig.add_vrect(x0=-data.margin, x1=data.margin, fillcolor="lightgrey", opacity=0.5,
                  line_width=0, layer="below")
    fig.add_vline(x=0, line_color="#444", line_width=1)
    for verdict, rows in frame.groupby("verdict", sort=False):
        diff = rows["diff"].to_numpy(dtype=float)
        text = [f"{v}: {number(d, signed=True)} {interval(lo, hi, signed=True)}, "
                f"Holm p {significant(p)}"
                for v, d, lo, hi, p in zip(rows["arm"], diff, rows["ci_low"], rows["ci_high"],
                                           rows["p_adjusted"].astype(float), strict=True)]
        fig.add_trace(go.Scatter(
            x=diff.tolist(), y=list(rows["arm"]), mode="markers+text", name=str(verdict),
            text=[number(d, signed=True) for d in diff], textposition="top center",
            marker={"size": 11, "color": VERDICT_COLORS.get(str(verdict), "black")},
            error_x={"type": "data", "symmetric": False,
                     "array": (rows["ci_high"] - rows["diff"]).clip(lower=0).tolist(),
                     "arrayminus": (rows["diff"] - rows["ci_low"]).clip(lower=0).tolist(),
                     "thickness": 2, "width": 6},
            hovertext=text, hovertemplate="%{hovertext}<extra></extra>"))
    fig.update_layout(
        title=f"Difference from {data.baseline}<br><sup>{percent(CONFIDENCE)} CI, coloured by "
              f"verdict; grey band: equivalence margin ±{data.margin:g}</sup>",
        xaxis_title=f"{data.metric_label}: arm − {data.baseline}",
        yaxis={"categoryorder": "array", "categoryarray": list(frame["arm"])[::-1]},
        legend_title_text="verdict", showlegend=True, template="plotly_white",
        height=200 + 60 * max(len(frame), 1))
    return fig


def note_text(results_markdown: str, caption: str, verdicts: Sequence[str], *, name: str,
              flags: Sequence[str] = ()) -> str:
    """The study note (Markdown, as optuna-dashboard renders it)."""
    lines = [f"## seedwise verdicts: {name}", "", caption, "", results_markdown]
    lines += [f"- {v}" for v in verdicts]
    if flags:
        lines += ["", "**Integrity problems:**", ""] + [f"- {f}" for f in flags]
    lines += ["", WIDGET_CAVEATS,
              "", "Written by `python -m analysis.report`, which refreshes this note; the full "
              "report (figures, methods, provenance) is its `report.html`."]
    return "\n".join(lines) + "\n"


def publish(storage_url: str | None, study_name: str, note: str,
            data: DashboardData | None) -> str:
    """Write the note, the metric name and the figures into the study; a one-line message."""
    if not storage_url:
        return "skipped the Optuna note: no Optuna storage found for this study"
    try:
        import optuna
        from optuna_dashboard import save_note

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        st = optuna.load_study(study_name=study_name, storage=storage_url)
        if st.metric_names is None and len(st.directions) == 1:
            with warnings.catch_warnings():  # "experimental" since optuna 3.2, still in 5
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                st.set_metric_names([OBJECTIVE])
        save_note(st, note)
    except Exception as e:  # storage unavailable, read-only, dashboard missing: never fatal
        return (f"skipped the Optuna note: {type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}")
    done = f"saved the verdict note on Optuna study {st.study_name!r} ({redact(storage_url)})"
    if data is None:
        return done
    try:
        from optuna_dashboard import save_plotly_graph_object

        save_plotly_graph_object(st, distribution_plotly(data),
                                 graph_object_id=FIGURE_IDS["distribution"])
        if len(data.comparisons):
            save_plotly_graph_object(st, forest_plotly(data), graph_object_id=FIGURE_IDS["forest"])
    except ImportError as e:
        return f"{done}; no dashboard figures ({e.name or 'plotly'} is not installed)"
    except Exception as e:  # noqa: BLE001 - figures are a bonus on top of the note
        return f"{done}; no dashboard figures: {type(e).__name__}: {e}"
    return f"{done}, with its per-arm figures"
