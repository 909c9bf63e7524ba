"""What optuna-dashboard shows for an ablation study: the verdicts, first, and what its
optimisation panels mean here.

optuna-dashboard is built for optimisation. Its study page shows, in this fixed order, the
history, "Hyperparameter Importance", the timeline, the figures saved into the study (among
themselves in no fixed order), then the "Best Trial" card. For an ablation the trials are (arm, seed) runs: study.store keeps `arm` as
the only trial parameter and the seed as a user attribute, so the importance panel shows `arm`
alone (1 by construction, not an effect size) and the Best Trial card names an arm but no seed;
that card is still the luckiest single run, not the best arm, and cannot be removed.

`publish` therefore writes, whenever the report is written: the study note (verdict table and
what the generic panels mean here), and three plotly figures saved with
`optuna_dashboard.save_plotly_graph_object` under fixed ids, so each report replaces them and
they sit on the study page above the Best Trial card: the verdict table (which says the card is
a lucky seed), and the report's distribution and forest figures, drawn from the same data. It
also names the objective ("test_acc", the value every ablation trial stores) so the axes do not
say "Objective 0".

`verdict_plotly`, `distribution_plotly` and `forest_plotly` are pure (frames in, figure out);
only `publish` touches the storage, and never fails the report: it returns a message saying
what it did.

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

from analysis.contract import COMPLETE, redact
from analysis.formatting import interval, number, p_value, percent, significant
from analysis.report.figures import CONFIDENCE, VERDICT_COLORS, t_interval

__all__ = ["BEST_TRIAL_CAVEAT", "DashboardData", "FIGURE_IDS", "OBJECTIVE", "distribution_plotly",
           "forest_plotly", "note_text", "publish", "verdict_plotly"]

OBJECTIVE = "test_acc"  # study.store records every ablation trial's test_acc as its value
FIGURE_IDS = {"verdicts": "seedwise-verdicts", "distribution": "seedwise-distribution",
              "forest": "seedwise-forest"}
# Said on the study page itself (the verdict table), next to the card it is about.
BEST_TRIAL_CAVEAT = ("the Best Trial card is the luckiest seed (one run), not the best arm "
                     "nor a recommendation")
WIDGET_CAVEATS = (
    "**Reading the dashboard for an ablation.** The trials are (arm, seed) runs, not an "
    f"optimisation: {BEST_TRIAL_CAVEAT}. *Hyperparameter Importance* shows `arm`, the study's "
    "only parameter, at 1 by construction: it is not an effect size (the seed is a user "
    "attribute, a replicate, not a hyperparameter; a study stored when the seed was a parameter "
    "too lists `seed` there until `python -m study.migrate` is run on it). The *History* plot's "
    "best-so-far line is a running maximum over the seeds of all arms. Read the verdicts above, "
    "and the seedwise figures on the study's main page (*Verdicts*, *per arm over seeds*, "
    "*Difference from the baseline*), instead.")


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


def verdict_plotly(data: DashboardData):
    """The verdict table on the study page: the baseline, then each arm's difference from it
    with its 95% CI, Holm-adjusted p and verdict (in the verdict's colour); an arm the analysis
    could not judge keeps its row, marked so. Its subtitle says what the Best Trial card beside
    it is."""
    import plotly.graph_objects as go

    ok = data.runs[(data.runs["status"] == COMPLETE) & data.runs[data.metric].notna()]
    base = ok.loc[ok["arm"] == data.baseline, data.metric]
    frame = data.comparisons
    rows = [(data.baseline, str(len(base)), number(base.mean()) if len(base) else "n/a",
             "(baseline)", "", "")]
    rows += [(str(r.arm), str(int(r.n_arm)), number(r.mean_arm), number(r.diff, signed=True),
              interval(r.ci_low, r.ci_high, signed=True), p_value(r.p_adjusted))
             for r in frame.itertuples()]
    verdicts = ["", *map(str, frame["verdict"])]
    for arm in data.arms:
        if arm != data.baseline and arm not in set(frame["arm"]):
            vals = ok.loc[ok["arm"] == arm, data.metric]
            rows.append((arm, str(len(vals)), number(vals.mean()) if len(vals) else "n/a", "", "", ""))
            verdicts.append("not judged")
    colors = ["black", *(VERDICT_COLORS.get(v, "black") for v in verdicts[1:])]
    columns = [list(col) for col in zip(*rows, strict=True)]
    fig = go.Figure(go.Table(
        columnwidth=[1.4, 0.7, 0.9, 1.1, 1.5, 0.8, 1.3],
        header={"values": ["arm", "seeds", "mean", f"diff vs {data.baseline}",
                           f"{percent(CONFIDENCE)} CI", "Holm p", "verdict"],
                "align": "left", "font": {"size": 13}, "fill_color": "#eeeeee"},
        cells={"values": [*columns, verdicts], "align": "left", "height": 28,
               "font": {"size": 13, "color": [["black"] * len(rows)] * 6 + [colors]}}))
    fig.update_layout(
        # The caveat on a line of its own: the dashboard's cards are narrow.
        title=f"Verdicts: {data.metric_label} vs {data.baseline}<br><sup>one row per arm over its "
              f"seeds</sup><br><sup>{BEST_TRIAL_CAVEAT[0].upper()}{BEST_TRIAL_CAVEAT[1:]}</sup>",
        template="plotly_white", height=450, margin={"l": 10, "r": 10, "t": 100, "b": 10})
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
            save_plotly_graph_object(st, verdict_plotly(data), graph_object_id=FIGURE_IDS["verdicts"])
            save_plotly_graph_object(st, forest_plotly(data), graph_object_id=FIGURE_IDS["forest"])
    except ImportError as e:
        return f"{done}; no dashboard figures ({e.name or 'plotly'} is not installed)"
    except Exception as e:  # noqa: BLE001 - figures are a bonus on top of the note
        return f"{done}; no dashboard figures: {type(e).__name__}: {e}"
    return f"{done}, with its per-arm figures"
