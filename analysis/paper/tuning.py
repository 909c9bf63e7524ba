"""The paper's tuning numbers (`analysis.paper` gathers them): the Optuna tuning studies, the
confirmation of the selected trial on fresh seeds, and the per-arm tuning record.

Formatting follows `analysis.formatting` like the rest of the paper."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from analysis.contract import DB_FILE, PER_ARM_FILE
from analysis.formatting import count, interval, number, param_value
from analysis.tuning.race_study import DEFAULT, SEED_OFFSET, RaceSummary

# Budgets (candidates) at which the paper quotes the expected best validation score.
EXPECTED_BEST_AT = (1, 5, 10)


def tuning_numbers(path: Path, ablation: str, prefix: str = "tune", *, learned_above: float | None = None
                   ) -> dict[str, str]:
    """`<prefix>.<arm>.*`: each tuning study stored beside `ablation` (in its study.db): trials
    by state, wall time, the searched space and the values tried in it, the best trial and the
    parameter importances; with `learned_above`, how many complete trials scored above it
    (the paper's "learned at all": above chance)."""
    db = path / DB_FILE
    if not db.exists():
        return {}
    import optuna

    from analysis.tuning.studies import tuning_trials

    out = {}
    url = f"sqlite:///{db}"
    for t in tuning_trials(url, ablation):
        trials = optuna.load_study(study_name=t.name, storage=url).get_trials(deepcopy=False)
        starts = [x.datetime_start for x in trials if x.datetime_start]
        ends = [x.datetime_complete for x in trials if x.datetime_complete]
        k = f"{prefix}.{t.arm}"
        out[f"{k}.n_trials"] = str(len(trials))
        out[f"{k}.n_complete"] = str(sum(x.state.name == "COMPLETE" for x in trials))
        out[f"{k}.n_pruned"] = str(sum(x.state.name == "PRUNED" for x in trials))
        out[f"{k}.wall_min"] = number((max(ends) - min(starts)).total_seconds() / 60, 1) if starts and ends else "n/a"
        seeds = [x.user_attrs["seed"] for x in trials if "seed" in x.user_attrs]
        if seeds:
            out[f"{k}.min_seed"] = count(int(min(seeds)))
        for name, dist in (trials[0].distributions if trials else {}).items():
            out[f"{k}.space.{name}.low"] = count(dist.low)  # type: ignore[attr-defined]  # int/float ranges
            out[f"{k}.space.{name}.high"] = count(dist.high)  # type: ignore[attr-defined]
            tried = [x.params[name] for x in trials if name in x.params]
            out[f"{k}.tried.{name}"] = f"{param_value(min(tried))} to {param_value(max(tried))}" if tried else "n/a"
        if learned_above is not None:
            values = [x.value for x in trials if x.state.name == "COMPLETE" and x.value is not None]
            out[f"{k}.n_learned"] = f"{sum(v > learned_above for v in values)} of {len(values)}"
        if t.best:
            out[f"{k}.best_trial"] = str(t.best["number"])
            out[f"{k}.best_val"] = number(t.best["value"])
            for name, value in t.best["params"].items():
                out[f"{k}.best.{name}"] = param_value(value)
        for name, value in t.importances.items():
            out[f"{k}.importance.{name}"] = number(value)
        if t.race is not None:
            out.update(race_numbers(k, t.race, learned_above))
    return out


def race_numbers(k: str, race: RaceSummary, learned_above: float | None = None) -> dict[str, str]:
    """`<k>.race.*` for one race (study.tune --race): its runs, candidates, rounds and drops;
    the winner with its mean over the shared tuning seeds and its lead over the default (the
    arm's own params); the remaining selection gap; the expected best validation score at a few
    budgets; with `learned_above`, which candidates learned at all (mean above it) and at what lr."""
    s, data, w = race.state, race.data, race.winner
    row = {c: data.table[i, : s.rounds] for i, c in enumerate(data.candidates)}
    r = f"{k}.race"
    out = {f"{r}.runs": str(data.runs), f"{r}.n_candidates": str(len(data.candidates)),
           f"{r}.rounds": str(s.rounds), f"{r}.n_dropped": str(len(s.dropped)),
           f"{r}.n_finalists": str(len(s.live)), f"{r}.winner": w.candidate,
           f"{r}.winner_is_default": "yes" if w.candidate == DEFAULT else "no",
           f"{r}.reason": w.reason,
           f"{r}.seeds": (f"{SEED_OFFSET}-{SEED_OFFSET + s.rounds - 1}" if s.rounds > 1 else
                          str(SEED_OFFSET) if s.rounds else "none")}
    means = {c: float(np.nanmean(v)) for c, v in row.items() if np.isfinite(v).any()}
    out[f"{r}.winner_mean"] = number(means.get(w.candidate))
    out[f"{r}.default_mean"] = number(means.get(DEFAULT))
    out[f"{r}.default_dropped"] = "yes" if any(d.candidate == DEFAULT for d in s.dropped) else "no"
    for name, value in data.params[w.candidate].items():
        out[f"{r}.winner.{name}"] = param_value(value)
    for name, value in data.params[DEFAULT].items():
        out[f"{r}.default.{name}"] = param_value(value)
    v = w.versus_default
    out[f"{r}.vs_default.diff"] = number(v.diff, signed=True) if v else "n/a"
    out[f"{r}.vs_default.ci"] = interval(v.ci_low, v.ci_high, signed=True) if v else "n/a"
    out[f"{r}.vs_default.n"] = str(v.n) if v else "n/a"
    out[f"{r}.gap"] = number(race.gap.bound) if race.gap is not None and len(s.live) > 1 else "n/a"
    curve = race.expected_best
    for n in (*EXPECTED_BEST_AT, len(curve)):
        if 0 < n <= len(curve):
            out[f"{r}.expected_best.{n}"] = number(curve[n - 1])
    out[f"{r}.expected_best.n"] = str(len(curve))
    out[f"{r}.expected_best.all"] = number(curve[-1]) if len(curve) else "n/a"
    out[f"{r}.expected_best.seeds"] = str(race.expected_values)
    if learned_above is not None:  # the lrs tried are tuning_numbers' `tried.lr`
        lrs = {c: p["lr"] for c, p in data.params.items() if "lr" in p}
        learned = [c for c, m in means.items() if m > learned_above]
        out[f"{r}.n_learned"] = f"{len(learned)} of {len(means)}"
        learned_lrs = [lrs[c] for c in learned if c in lrs]
        out[f"{r}.learned_lr"] = (f"{param_value(min(learned_lrs))} to {param_value(max(learned_lrs))}"
                                  if learned_lrs else "none")
        best_learner = max(learned, key=means.__getitem__, default=None)
        out[f"{r}.best_learner_mean"] = number(means[best_learner]) if best_learner else "n/a"
    return out


def selection_numbers(rows: list[dict], prefix: str = "sel") -> dict[str, str]:
    """`<prefix>.<arm>.*`: each row of a confirmation's selection.json (selected and fresh-seed
    scores, the selection gap, the params)."""
    out = {}
    for row in rows:
        arm = row.get("arm", "?")
        for key, value in row.items():
            if isinstance(value, float):
                out[f"{prefix}.{arm}.{key}"] = number(value, 4 if "lr" in key else 2)
            elif isinstance(value, dict):
                for k2, v2 in value.items():
                    out[f"{prefix}.{arm}.{key}.{k2}"] = f"{v2:.4g}" if isinstance(v2, float) else str(v2)
            else:
                out[f"{prefix}.{arm}.{key}"] = str(value)
    return out


def per_arm_numbers(prefix: str, per_arm_dir: Path) -> dict[str, str]:
    """`<prefix>.<arm>.*` from a per-arm confirmation's per_arm.json: the tuning trial each arm
    got, its selected validation score, its tuned and its untuned params."""
    file = per_arm_dir / PER_ARM_FILE
    if not file.exists():
        return {}
    record = json.loads(file.read_text())
    seeds = record.get("seeds") or []
    out = {f"{prefix}.n_arms": str(len(record["arms"])),
           f"{prefix}.arms": ", ".join(f"`{a['arm']}`" for a in record["arms"])}
    if seeds:
        out[f"{prefix}.seeds"] = f"{min(seeds)}-{max(seeds)}"
        out[f"{prefix}.n_seeds"] = str(len(seeds))
    for a in record["arms"]:
        k = f"{prefix}.{a['arm']}"
        out[f"{k}.trial"] = str(a["trial"])
        out[f"{k}.selected"] = number(a["selected"])
        for name, value in a["params"].items():
            out[f"{k}.{name}"] = param_value(value)
            out[f"{k}.untuned_{name}"] = param_value(a["untuned"].get(name))
    return out

