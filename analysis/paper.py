"""`python -m analysis.paper`: render paper/README.md from its hand-written template.

The prose is written by hand in `paper/README.template.md`; every number in it is a
`{{placeholder}}` computed here from `results/`, so no number is ever typed. An unknown
placeholder is an error, and so is a placeholder whose study is missing.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
import warnings
from pathlib import Path

import numpy as np

from .load import StudyData, compare_arms, family_frame, load_study
from .testset import mcnemar_exact, single_run_gap
from .tuning import selection_rows

NOTEBOOK = {"bn_sched": 75.49, "bn_nosched": 74.87, "nobn": 74.08, "n_test": 10_000}


def _f(x, digits=2, sign=False):
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "n/a"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _p(p):
    """A p-value with its relation, so the template writes "p {{key}}" -> "p = 0.004"."""
    return "< 0.0001" if p < 1e-4 else f"= {p:.2g}" if p < 0.01 else f"= {p:.3f}"


def study_numbers(prefix: str, study: StudyData) -> dict[str, str]:
    """Per-arm means/sds and every arm-vs-baseline comparison of one study."""
    out: dict[str, str] = {}
    runs = study.runs
    ok = runs[runs["status"] == "complete"]
    out[f"{prefix}.n_runs"] = str(len(ok))
    out[f"{prefix}.preset"] = study.meta.get("preset", "?")
    out[f"{prefix}.device"] = ", ".join(sorted(set(ok["device"].dropna())))
    out[f"{prefix}.precision"] = ", ".join(sorted(set(ok["precision"].dropna())))
    out[f"{prefix}.wall_min"] = _f(ok["wall_time_s"].sum() / 60, 0)
    for arm, g in ok.groupby("arm"):
        v = g["test_acc"].astype(float)
        out[f"{prefix}.{arm}.n"] = str(len(v))
        out[f"{prefix}.{arm}.seeds"] = f"{int(g['seed'].min())}-{int(g['seed'].max())}"
        out[f"{prefix}.{arm}.mean"] = _f(v.mean())
        out[f"{prefix}.{arm}.val_mean"] = _f(g["val_acc"].astype(float).mean())
        out[f"{prefix}.{arm}.sd"] = _f(v.std(ddof=1)) if len(v) > 1 else "n/a"
        out[f"{prefix}.{arm}.min"] = _f(v.min())
        out[f"{prefix}.{arm}.max"] = _f(v.max())
        out[f"{prefix}.{arm}.n_bn"] = str(int(g["n_bn"].iloc[0]))
        out[f"{prefix}.{arm}.lr"] = " ".join(_f(x, 3) for x in
                                            study.epochs[(study.epochs["arm"] == arm) & (study.epochs["seed"] == g["seed"].iloc[0])]["lr"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = family_frame(compare_arms(study))
    for r in frame.itertuples():
        k = f"{prefix}.{r.arm}"
        out[f"{k}.diff"] = _f(r.diff, sign=True)
        out[f"{k}.ci"] = f"[{_f(r.ci_low, sign=True)}, {_f(r.ci_high, sign=True)}]"
        out[f"{k}.p_adj"] = _p(r.p_adjusted)
        out[f"{k}.verdict"] = r.verdict
        out[f"{k}.n_pairs"] = str(r.n_arm)
        out[f"{k}.seeds_needed"] = str(r.seeds_needed)
        out[f"{k}.effect"] = f"{r.effect_size_name} = {_f(r.effect_size)}"
    return out


def same_config_noise(prefix: str, study: StudyData, arm: str, gap: float) -> dict[str, str]:
    """How different are two seeds of one configuration? (the notebook's 0.62-point 'effect')"""
    vals = study.runs[(study.runs["arm"] == arm) & (study.runs["status"] == "complete")]["test_acc"].astype(float)
    diffs = [abs(a - b) for a, b in itertools.combinations(vals, 2)]
    out = {f"{prefix}.same.pairs": str(len(diffs)),
           f"{prefix}.same.median_gap": _f(float(np.median(diffs))),
           f"{prefix}.same.max_gap": _f(max(diffs)),
           f"{prefix}.same.frac_ge_gap": f"{sum(d >= gap for d in diffs)} of {len(diffs)}"}
    correct = study.correct_matrix(arm)
    if correct is not None and len(correct[0]) >= 2:
        ps = [mcnemar_exact(a, b).pvalue for a, b in itertools.combinations(correct[1], 2)]
        out[f"{prefix}.same.mcnemar_sig"] = f"{sum(p < 0.05 for p in ps)} of {len(ps)}"
        out[f"{prefix}.same.mcnemar_min_p"] = _p(min(ps))
    return out


def notebook_numbers() -> dict[str, str]:
    g = single_run_gap(NOTEBOOK["bn_sched"], NOTEBOOK["nobn"], NOTEBOOK["n_test"])
    s = single_run_gap(NOTEBOOK["bn_sched"], NOTEBOOK["bn_nosched"], NOTEBOOK["n_test"])
    out = {"nb.gap": _f(g.gap, sign=True), "nb.gap.p": _p(g.pvalue), "nb.gap.z": _f(g.statistic),
           "nb.gap.ci": f"[{_f(g.ci_low, sign=True)}, {_f(g.ci_high, sign=True)}]",
           "nb.sched_gap": _f(s.gap, sign=True), "nb.sched_gap.p": _p(s.pvalue)}
    for plan in g.seeds_needed_for:
        out[f"nb.seeds_at_sd_{plan.seed_sd:.1f}"] = str(plan.seeds_per_arm)
    return out


def collect(results: Path) -> dict[str, str]:
    numbers = notebook_numbers()
    for prefix, name in (("quick", "notebook-ablation-quick"), ("full", "notebook-ablation-full")):
        path = results / name
        if (path / "runs.csv").exists():
            study = load_study(path)
            numbers.update(study_numbers(prefix, study))
            numbers.update(same_config_noise(prefix, study, "no_scheduler", NOTEBOOK["bn_sched"] - NOTEBOOK["bn_nosched"]))
    if (results / "fidelity-quick" / "runs.csv").exists():
        numbers.update(study_numbers("fid", load_study(results / "fidelity-quick")))
    numbers.update(tuning_numbers(results / "notebook-ablation-quick", "notebook-ablation-quick"))
    tuned = results / "notebook-ablation-quick-tuned"
    if (tuned / "runs.csv").exists():
        study = load_study(tuned)
        numbers.update(study_numbers("tuned", study))
        numbers.update(selection_numbers(selection_rows(tuned) or []))
    return numbers


def tuning_numbers(path: Path, ablation: str) -> dict[str, str]:
    """Trials, pruning and wall time of the tuning study stored beside `ablation`."""
    db = path / "study.db"
    if not db.exists():
        return {}
    import optuna

    from .tuning import tuning_trials

    out = {}
    url = f"sqlite:///{db}"
    for t in tuning_trials(url, ablation):
        trials = optuna.load_study(study_name=t.name, storage=url).get_trials(deepcopy=False)
        starts = [x.datetime_start for x in trials if x.datetime_start]
        ends = [x.datetime_complete for x in trials if x.datetime_complete]
        k = f"tune.{t.arm}"
        out[f"{k}.n_trials"] = str(len(trials))
        out[f"{k}.n_complete"] = str(sum(x.state.name == "COMPLETE" for x in trials))
        out[f"{k}.n_pruned"] = str(sum(x.state.name == "PRUNED" for x in trials))
        out[f"{k}.wall_min"] = _f((max(ends) - min(starts)).total_seconds() / 60, 1) if starts and ends else "n/a"
        if t.best:
            out[f"{k}.best_trial"] = str(t.best["number"])
            out[f"{k}.best_val"] = _f(t.best["value"])
            out[f"{k}.best_lr"] = f"{t.best['params']['lr']:.3g}"
            out[f"{k}.best_step"] = str(t.best["params"]["step_size"])
        for name, value in t.importances.items():
            out[f"{k}.importance.{name}"] = _f(value)
    return out


def selection_numbers(rows: list[dict]) -> dict[str, str]:
    out = {}
    for row in rows:
        arm = row.get("arm", "?")
        for key, value in row.items():
            if isinstance(value, float):
                out[f"sel.{arm}.{key}"] = _f(value, 4 if "lr" in key else 2)
            elif isinstance(value, dict):
                for k2, v2 in value.items():
                    out[f"sel.{arm}.{key}.{k2}"] = f"{v2:.4g}" if isinstance(v2, float) else str(v2)
            else:
                out[f"sel.{arm}.{key}"] = str(value)
    return out


PLACEHOLDER = re.compile(r"\{\{\s*([\w.\-]+)\s*\}\}")


def render(template: str, numbers: dict[str, str]) -> str:
    missing = sorted({m for m in PLACEHOLDER.findall(template) if m not in numbers})
    if missing:
        raise KeyError(f"placeholders without a computed value: {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda m: numbers[m.group(1)], template)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.paper", description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default="results")
    p.add_argument("--template", default="paper/README.template.md")
    p.add_argument("--out", default="paper/README.md")
    p.add_argument("--list", action="store_true", help="print every available placeholder and its value")
    args = p.parse_args(argv)
    numbers = collect(Path(args.results))
    if args.list:
        for k, v in sorted(numbers.items()):
            print(f"{k} = {v}")
        return 0
    try:
        text = render(Path(args.template).read_text(), numbers)
    except (KeyError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
