"""The paper's tuning numbers (`analysis.paper` gathers them): the Optuna tuning studies, the
confirmation of the selected trial on fresh seeds, and the per-arm tuning record.

Formatting follows `analysis.formatting` like the rest of the paper."""

from __future__ import annotations

import json
from pathlib import Path

from analysis.contract import DB_FILE, PER_ARM_FILE
from analysis.formatting import count, number, param_value


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
    return out


def selection_numbers(rows: list[dict]) -> dict[str, str]:
    out = {}
    for row in rows:
        arm = row.get("arm", "?")
        for key, value in row.items():
            if isinstance(value, float):
                out[f"sel.{arm}.{key}"] = number(value, 4 if "lr" in key else 2)
            elif isinstance(value, dict):
                for k2, v2 in value.items():
                    out[f"sel.{arm}.{key}.{k2}"] = f"{v2:.4g}" if isinstance(v2, float) else str(v2)
            else:
                out[f"sel.{arm}.{key}"] = str(value)
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

