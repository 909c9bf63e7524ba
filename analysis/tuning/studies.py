"""The tuning side of a study: Optuna tuning studies stored next to an ablation study.

`tuning_trials` reads them (the only I/O here); the figure functions are pure and return
matplotlib Figures: optimization history, the map of two searched parameters (lr x
step_size for the built-in search), parameter importances.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from analysis.contract import TUNING_KIND
from analysis.report.figures import metric_label, new_figure
from analysis.tuning.race_study import (
    RaceSummary,
    expected_values,
    is_race,
    race_data,
    race_plan,
    race_retire,
    race_summary,
)


@dataclass(frozen=True)
class Tuning:
    name: str  # Optuna study name
    arm: str
    trials: pd.DataFrame  # number, state, status, value, lr, step_size (, gamma)
    importances: dict[str, float]  # PED-ANOVA importances of the params (empty when too few trials)
    best: dict  # number, value, params
    log_params: frozenset[str] = frozenset()  # the params searched on a log scale
    objective: str = "val_acc"  # the metric tuned on (the tuning study's "objective")
    direction: str = "maximize"
    race: RaceSummary | None = None  # a race study (study.tune --race): its winner, finalists, drops

    @property
    def candidate_values(self) -> np.ndarray:
        """One validation score per candidate configuration tried, paired across candidates
        where the study can: a race's candidates on their shared leading seeds, else each
        completed trial's value (one trial, one configuration)."""
        if self.race is not None:
            return expected_values(self.race.data)[0]
        done = self.trials[self.trials["state"] == "COMPLETE"]
        return done["value"].to_numpy(dtype=float)

    @property
    def objective_label(self) -> str:
        return metric_label(self.objective)


def tuning_trials(storage_url: str, ablation_study: str) -> list[Tuning]:
    """Every tuning study in `storage_url` that belongs to `ablation_study`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = []
    for summary in optuna.get_all_study_summaries(storage=storage_url):
        attrs = summary.user_attrs
        if attrs.get("kind") != TUNING_KIND or attrs.get("ablation_study") != ablation_study:
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=storage_url)
        rows = [{"number": t.number, "state": t.state.name, "status": t.user_attrs.get("status", ""),
                 "value": t.value, **t.params} for t in study.get_trials(deepcopy=False)]
        trials = pd.DataFrame(rows)
        complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        importances: dict[str, float] = {}
        if len(complete) >= 4:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:  # PED-ANOVA: needs no scikit-learn (fANOVA, the default, does)
                    importances = dict(optuna.importance.get_param_importances(
                        study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()))
                except (RuntimeError, ValueError, ImportError):
                    importances = {}
        best = {}
        race = None
        if is_race(attrs):  # the race's winner, never its best single run (the winner's curse)
            race = race_summary(race_data(study.get_trials(deepcopy=False), race_plan(attrs),
                                              retire=race_retire(attrs)))
            if race.state.incumbent is not None:
                chosen = race.winner.candidate
                best = {"number": chosen, "value": race.means.get(chosen), "params": race.data.params[chosen]}
        elif complete:
            b = study.best_trial
            best = {"number": b.number, "value": b.value, "params": b.params}
        log_params = frozenset(name for t in study.get_trials(deepcopy=False)
                               for name, dist in t.distributions.items() if getattr(dist, "log", False))
        out.append(Tuning(summary.study_name, attrs.get("arm", "?"), trials, importances, best, log_params,
                          str(attrs.get("objective", "val_acc")), str(attrs.get("direction", "maximize")), race))
    return out


def selection_rows(results_dir: Path) -> list[dict] | None:
    """The rows of the selection.json that `study.tune --confirm` writes (one per confirmed arm:
    selected val score, fresh-seed scores, params); None when there is none."""
    path = Path(results_dir) / "selection.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["rows"]


def winner_is_default(results_dir: Path) -> bool:
    """Whether a confirmation's winner was the arm's untuned params (`study.tune --confirm` then
    runs them once, as the untuned arm: there is no tuned arm to compare)."""
    path = Path(results_dir) / "selection.json"
    return path.exists() and bool(json.loads(path.read_text()).get("winner_is_default"))


def selection_table(results_dir: Path) -> pd.DataFrame | None:
    """The selection rows as a frame, params flattened to `params.lr`, `params.step_size`."""
    flat = []
    for row in selection_rows(results_dir) or []:
        item = {}
        for k, v in row.items():
            if isinstance(v, dict):
                item.update({f"{k}.{k2}": v2 for k2, v2 in v.items()})
            else:
                item[k] = v
        flat.append(item)
    return pd.DataFrame(flat) if flat else None


def history_figure(t: Tuning) -> Figure:
    """Validation accuracy per trial (pruned/diverged marked) and the best so far."""
    fig = new_figure(figsize=(7.5, 3.8), constrained_layout=True)
    ax = fig.subplots()
    df = t.trials
    done = df[df["state"] == "COMPLETE"]
    other = df[df["state"] != "COMPLETE"]
    ax.scatter(done["number"], done["value"], color="tab:blue", label="complete", zorder=3)
    if len(other):  # no final value: a rug along the bottom edge, not a fake accuracy
        ax.scatter(other["number"], np.full(len(other), 0.04), transform=ax.get_xaxis_transform(),
                   marker="x", color="tab:red", label="pruned / failed (no final value)", zorder=3)
    if len(done):
        in_order = done.sort_values("number")["value"]
        best = in_order.cummin() if t.direction == "minimize" else in_order.cummax()
        ax.step(done.sort_values("number")["number"], best, where="post", color="black", label="best so far")
    ax.set(xlabel="trial", ylabel=t.objective_label, title=f"Optimization history: tuning `{t.arm}`")
    ax.xaxis.get_major_locator().set_params(integer=True)  # type: ignore[call-arg]  # a MaxNLocator
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    return fig


TRIAL_COLUMNS = ("number", "state", "status", "value")  # the rest of `Tuning.trials`: params


def space_axes(t: Tuning) -> tuple[str, str] | None:
    """The two searched parameters the space figure plots: lr x step_size where both were
    searched (the built-in search), else the two most important numeric ones (then the first
    two); None when fewer than two numeric parameters were searched."""
    numeric = [c for c in t.trials.columns if c not in TRIAL_COLUMNS
               and pd.api.types.is_numeric_dtype(t.trials[c])
               and not pd.api.types.is_bool_dtype(t.trials[c])]
    if {"lr", "step_size"} <= set(numeric):
        return "lr", "step_size"
    ranked = [p for p in t.importances if p in numeric] + [p for p in numeric if p not in t.importances]
    return (ranked[0], ranked[1]) if len(ranked) >= 2 else None


PARAM_LABELS = {"lr": "learning rate", "step_size": "StepLR step size"}  # else the name itself


def param_label(name: str) -> str:
    return PARAM_LABELS.get(name, name)


def _axis_label(name: str, log: bool) -> str:
    return (param_label(name) + (" (epochs)" if name == "step_size" else "")
            + (" (log scale)" if log else ""))


def space_figure(t: Tuning) -> Figure | None:
    """Where the tuner looked: the two parameters of `space_axes`, coloured by the tuning
    metric; None when the search has fewer than two numeric parameters."""
    axes = space_axes(t)
    if axes is None:
        return None
    x, y = axes
    fig = new_figure(figsize=(7.5, 4.0), constrained_layout=True)
    ax = fig.subplots()
    df = t.trials
    done = df[df["state"] == "COMPLETE"]
    pts = ax.scatter(done[x], done[y], c=done["value"], cmap="viridis", s=60,
                     edgecolor="black", linewidth=0.4, zorder=3)
    fig.colorbar(pts, ax=ax, label=t.objective_label)
    other = df[df["state"] != "COMPLETE"]
    ax.scatter(other[x], other[y], marker="x", color="tab:red", label="pruned / failed", zorder=3)
    if t.best and x in t.best["params"] and y in t.best["params"]:
        ax.scatter([t.best["params"][x]], [t.best["params"][y]], s=250, facecolor="none",
                   edgecolor="red", linewidth=2, label=f"best (trial {t.best['number']})", zorder=4)
    for name, set_scale in ((x, ax.set_xscale), (y, ax.set_yscale)):
        if name in t.log_params:
            set_scale("log")
    ax.legend(loc="upper left", fontsize=8, frameon=True)
    ax.set(xlabel=_axis_label(x, x in t.log_params), ylabel=_axis_label(y, y in t.log_params),
           title=f"Search space explored: tuning `{t.arm}`")
    ax.grid(alpha=0.3)
    return fig


def importance_figure(t: Tuning) -> Figure:
    fig = new_figure(figsize=(6, 2.2), constrained_layout=True)
    ax = fig.subplots()
    if t.importances:
        names = list(t.importances)
        sns.barplot(x=[t.importances[n] for n in names], y=names, ax=ax, color="tab:blue")
        ax.set(xlabel="importance (PED-ANOVA, Optuna)", xlim=(0, 1))
    else:
        ax.text(0.5, 0.5, "too few completed trials for importances", ha="center", va="center")
        ax.set_axis_off()
    ax.set_title(f"Parameter importance: tuning `{t.arm}`")
    return fig
