"""The paper's numbers: every `{{placeholder}}` of `paper/README.template.md` computed from
`results/` (`gather`), or, for the notebook's own printed results and the planning constants,
from NOTEBOOK and PLANNING below."""

from __future__ import annotations

import itertools
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from analysis.contract import COMPLETE, DB_FILE, confirm_study_name, per_arm_study_name
from analysis.formatting import count, number, p_relation
from analysis.load import StudyData, compare_arms, family_frame, load_study
from analysis.paper.tuning import per_arm_numbers, selection_numbers, tuning_numbers
from analysis.report.sequential import read_record
from analysis.report.tuning import fixed_lr_counterpart
from analysis.sequential.plan import SequentialPlan
from analysis.stats.skew_guard import MIN_PAIRS
from analysis.stats.test_set_noise import mcnemar_exact, single_run_gap
from analysis.stats.variance import (
    SOURCES,
    VarianceDecomposition,
    declared_deterministic,
    decompose_variance,
    seed_column,
)
from analysis.tuning.studies import selection_rows

# What the course notebook printed and did (its outputs and code), not results of ours.
NOTEBOOK: dict[str, Any] = {"bn_sched": 75.49, "bn_nosched": 74.87, "nobn": 74.08, "n_test": 10_000,
            "n_train": 50_000, "lr": 0.1, "text_lr": 0.001}
# Planning constants of the single-run power analysis (section 1).
PLANNING: dict[str, Any] = {"alpha": 0.05, "power": 0.8, "seed_sds": (0.2, 0.4, 1.0), "confidence": 0.95}
CHANCE = 10.0  # CIFAR-10 has ten classes: a run at <= CHANCE + 1 points never learned
# How the text names a spending function (the keys are analysis.sequential.boundaries's).
SPENDING_NAMES = {"obrien-fleming": "O'Brien-Fleming-type", "pocock": "Pocock-type",
                  "power": "power-family (ρ = {})", "hsd": "Hwang-Shih-DeCani (γ = {})"}
SEQUENTIAL_STUDY = "notebook-ablation-quick-sequential"  # issue 13: the quick questions, seeds until decided
VARIANCE_STUDY = "notebook-ablation-quick-variance"  # issue 14: python -m study.variance --arm baseline
RACE_STUDY = "notebook-ablation-quick-race"  # issue 26: paper/racing_study.sh (sections 4 and 5 raced)
CONFIG_KEYS = ("width", "train_size", "val_size", "test_size", "epochs", "lr", "step_size", "gamma")


# The paper's ways of writing numbers; `analysis.formatting` owns the rules.
def _f(x, digits=2, sign=False):
    """Fixed decimals: 74.87 / +0.62."""
    return number(x, digits, signed=sign)


def _n(x) -> str:
    """A count or config value as the text writes it: 45,000 / 0.1 / 10."""
    return count(x)


def _p(p):
    """A p-value with its relation, so the template writes "p {{key}}" -> "p = 0.004"."""
    return p_relation(p)


def study_numbers(prefix: str, study: StudyData) -> dict[str, str]:
    """Per-arm means/sds and every arm-vs-baseline comparison of one study."""
    out: dict[str, str] = {}
    runs = study.runs
    ok = runs[runs["status"] == COMPLETE]
    out[f"{prefix}.n_runs"] = str(len(ok))
    out[f"{prefix}.preset"] = study.meta.get("preset", "?")
    out[f"{prefix}.device"] = ", ".join(sorted(set(ok["device"].dropna())))
    out[f"{prefix}.precision"] = ", ".join(sorted(set(ok["precision"].dropna())))
    out[f"{prefix}.wall_min"] = _f(ok["wall_time_s"].sum() / 60, 0)
    plan = study.plan
    out[f"{prefix}.margin"] = _n(float(plan["margin"]))
    out[f"{prefix}.alpha"] = _n(float(plan["alpha"]))
    base_cfg = study.meta.get("arms", {}).get(plan["baseline"], {}).get("config", {})
    for key in CONFIG_KEYS:
        if key in base_cfg:
            out[f"{prefix}.cfg.{key}"] = _n(base_cfg[key])
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
        learned = v[v > CHANCE + 1]
        out[f"{prefix}.{arm}.at_chance"] = f"{len(v) - len(learned)} of {len(v)}"
        out[f"{prefix}.{arm}.n_learned"] = str(len(learned))
        out[f"{prefix}.{arm}.learned_min"] = _f(learned.min()) if len(learned) else "n/a"
        out[f"{prefix}.{arm}.learned_max"] = _f(learned.max()) if len(learned) else "n/a"
        out[f"{prefix}.{arm}.lr"] = " ".join(_f(x, 3) for x in
                                            study.epochs[(study.epochs["arm"] == arm) & (study.epochs["seed"] == g["seed"].iloc[0])]["lr"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        family = compare_arms(study)
    frame = family_frame(family)
    out[f"{prefix}.n_comparisons"] = str(len(frame))
    for c in family.comparisons:  # the exact test beside each verdict (n = 5 leans on normality)
        for test, p_adj in zip(c.robustness, c.robust_p_adjusted, strict=True):
            if "permutation" in test.name:
                out[f"{prefix}.{c.arm_name}.exact_p"] = _p(p_adj)
    if family.comparisons:  # the level of every interval in the study's tables
        out[f"{prefix}.ci_level"] = f"{100 * family.comparisons[0].confidence:g}%"
    for r in frame.itertuples():
        k = f"{prefix}.{r.arm}"
        out[f"{k}.diff"] = _f(r.diff, sign=True)
        out[f"{k}.ci"] = f"[{_f(r.ci_low, sign=True)}, {_f(r.ci_high, sign=True)}]"
        out[f"{k}.p_adj"] = _p(r.p_adjusted)
        out[f"{k}.verdict"] = r.verdict
        out[f"{k}.n_pairs"] = str(r.n_arm)
        out[f"{k}.seeds_needed"] = str(r.seeds_needed)
        out[f"{k}.effect"] = f"{r.effect_size_name} = {_f(r.effect_size)}"
        out[f"{k}.test"] = r.test
        out[f"{k}.min_exact_p"] = f"{r.min_attainable_p:.2g}"
        out[f"{k}.seeds_needed_observed"] = _n(r.seeds_needed_observed) if r.seeds_needed_observed else "n/a"
    return out


def stage_numbers(prefix: str, study: StudyData, arm: str) -> dict[str, str]:
    """How the study grew, and what `arm` vs baseline said after each stage.

    A stage is a stretch of consecutive runs (by trial number) at one git commit: each
    extension of a study was run from a new commit, so runs.csv's provenance records when
    seeds were added. The interim verdicts re-analyse the runs stored by the end of a stage."""
    if not {"trial_number", "git_commit"} <= set(study.runs.columns):
        return {}
    runs = study.runs.sort_values("trial_number")
    stage = (runs["git_commit"] != runs["git_commit"].shift()).cumsum().to_numpy()
    out = {f"{prefix}.n_stages": str(int(stage.max()))}
    for i in range(1, int(stage.max()) + 1):
        now = runs[stage == i]
        per_arm = now.groupby("arm")["seed"].nunique()
        k = f"{prefix}.stage{i}"
        out[f"{k}.n_arms"] = str(len(per_arm))
        out[f"{k}.arms"] = ", ".join(f"`{a}`" for a in study.arms() if a in per_arm.index)
        out[f"{k}.added"] = (str(per_arm.iloc[0]) if per_arm.nunique() == 1
                             else f"{per_arm.min()}-{per_arm.max()}")
        out[f"{k}.seeds"] = f"{int(now['seed'].min())}-{int(now['seed'].max())}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = family_frame(compare_arms(replace(study, runs=runs[stage <= i])))
        for r in frame[frame["arm"] == arm].itertuples():
            out[f"{k}.{arm}.n_pairs"] = str(r.n_arm)
            out[f"{k}.{arm}.diff"] = _f(r.diff, sign=True)
            out[f"{k}.{arm}.ci"] = f"[{_f(r.ci_low, sign=True)}, {_f(r.ci_high, sign=True)}]"
            out[f"{k}.{arm}.verdict"] = r.verdict
            needed = r.seeds_needed_observed
            out[f"{k}.{arm}.seeds_needed_observed"] = _n(needed) if needed else "n/a"
    return out


def same_config_noise(prefix: str, study: StudyData, arm: str, gap: float) -> dict[str, str]:
    """How different are two seeds of one configuration? (the notebook's 0.62-point 'effect')"""
    vals = study.runs[(study.runs["arm"] == arm) & (study.runs["status"] == COMPLETE)]["test_acc"].astype(float)
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


def variance_numbers(prefix: str, d: VarianceDecomposition) -> dict[str, str]:
    """Placeholders for a variance decomposition: per component its sd, variance with CI,
    net component with CI, run count and share (percent of the all-sources variance, small-k
    bias removed; "test": of all + test); the sum of shares with its interval and what it
    says about additivity."""
    total = d.shares_total
    out = {f"{prefix}.sum_of_shares": _f(100 * total.estimate, 0) + "%" if total is not None else "n/a",
           f"{prefix}.sum_of_shares_ci": (f"[{_f(100 * total.low, 0)}%, {_f(100 * total.high, 0)}%]"
                                          if total is not None else "n/a"),
           f"{prefix}.additivity": d.additivity,
           f"{prefix}.ci_level": f"{100 * d.confidence:g}%"}
    for c in d.components():
        k = f"{prefix}.{c.source}"
        out[f"{k}.n"] = str(c.n_runs)
        out[f"{k}.sd"] = _f(c.sd)
        out[f"{k}.var"] = _f(c.variance)
        out[f"{k}.ci"] = f"[{_f(c.ci.low)}, {_f(c.ci.high)}]" if c.ci else "n/a"
        out[f"{k}.net"] = _f(c.net) if c.net is not None else "n/a"
        out[f"{k}.net_ci"] = f"[{_f(c.net_ci.low)}, {_f(c.net_ci.high)}]" if c.net_ci else "n/a"
        out[f"{k}.share"] = _f(100 * c.share, 0) + "%" if c.share is not None else "n/a"
        out[f"{k}.share_ci"] = (f"[{_f(100 * c.share_ci.low, 0)}%, {_f(100 * c.share_ci.high, 0)}%]"
                                if c.share_ci else "n/a")
        if c.test_noise is not None:
            out[f"{k}.test_noise"] = _f(c.test_noise)
    ranked = sorted((c for c in d.sources if c.net is not None), key=lambda c: -c.net)  # type: ignore[operator]  # not None: filtered
    if ranked:
        out[f"{prefix}.largest"] = ranked[0].source
    return out


def variance_study_numbers(prefix: str, study: StudyData) -> dict[str, str]:
    """`<prefix>.*` for a study of `python -m study.variance` (its runs.csv carries the design's
    seed columns), decomposed as the runner does: reference seeds 0, and the test-set terms
    from the stored predictions (without them, from the configured test size)."""
    if not all(seed_column(s) in study.runs.columns for s in SOURCES):
        return {}
    ok = study.runs[study.runs["status"] == COMPLETE].sort_values("seed").reset_index(drop=True)
    configs = [a.get("config", {}) for a in study.meta.get("arms", {}).values()]
    n_test = next((c["test_size"] for c in configs if "test_size" in c), None)
    arms = set(ok["arm"])
    correct = study.correct_rows(arms.pop(), [int(s) for s in ok["seed"]]) if len(arms) == 1 else None
    deterministic, _ = declared_deterministic(ok, bit_exact=True)  # the paper's studies are the built-in engine's
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        numbers = variance_numbers(prefix, decompose_variance(ok, reference=0, correct=correct, n_test=n_test,
                                                              deterministic=deterministic))
    return {**numbers, f"{prefix}.n_runs": str(len(ok)),
            f"{prefix}.device": ", ".join(sorted(set(ok["device"].dropna()))) if "device" in ok else "n/a",
            f"{prefix}.precision": ", ".join(sorted(set(ok["precision"].dropna()))) if "precision" in ok else "n/a"}


def notebook_numbers() -> dict[str, str]:
    plan_args = {k: PLANNING[k] for k in ("alpha", "power", "seed_sds", "confidence")}
    g = single_run_gap(NOTEBOOK["bn_sched"], NOTEBOOK["nobn"], NOTEBOOK["n_test"], **plan_args)
    s = single_run_gap(NOTEBOOK["bn_sched"], NOTEBOOK["bn_nosched"], NOTEBOOK["n_test"], **plan_args)
    out = {"nb.gap": _f(g.gap, sign=True), "nb.gap.p": _p(g.pvalue), "nb.gap.z": _f(g.statistic),
           "nb.gap.ci": f"[{_f(g.ci_low, sign=True)}, {_f(g.ci_high, sign=True)}]",
           "nb.gap.ci_level": f"{100 * g.confidence:g}%",
           "nb.sched_gap": _f(s.gap, sign=True), "nb.sched_gap.p": _p(s.pvalue),
           "nb.alpha": _n(PLANNING["alpha"]), "nb.power": f"{100 * PLANNING['power']:g}%"}
    for key in ("bn_sched", "bn_nosched", "nobn"):
        out[f"nb.{key}"] = _f(NOTEBOOK[key])
    for key in ("n_test", "n_train", "lr", "text_lr"):
        out[f"nb.{key}"] = _n(NOTEBOOK[key])
    for i, plan in enumerate(g.seeds_needed_for):
        out[f"nb.seeds_at_sd_{plan.seed_sd:.1f}"] = str(plan.seeds_per_arm)
        out[f"nb.plan{i}.sd"] = _f(plan.seed_sd, 1)
        out[f"nb.plan{i}.seeds"] = str(plan.seeds_per_arm)
    # Test-set sampling noise of one score at the notebook's accuracy: the margin's yardstick.
    p = NOTEBOOK["bn_sched"] / 100
    se = 100 * float(np.sqrt(p * (1 - p) / NOTEBOOK["n_test"]))
    out["nb.test_se"] = _f(se)
    out["nb.test_hw"] = _f(float(stats.norm.ppf(0.5 + PLANNING["confidence"] / 2)) * se)
    out["nb.ci_level"] = f"{100 * PLANNING['confidence']:g}%"
    return out


def gather(results: Path) -> dict[str, tuple[str, str]]:
    """Every computed number: name -> (value, where it comes from)."""
    found: dict[str, tuple[str, str]] = {}

    def add(numbers: dict[str, str], source: str) -> None:
        found.update({k: (v, source) for k, v in numbers.items()})

    add(notebook_numbers(), "analysis.paper NOTEBOOK (what the notebook printed and did) and PLANNING")
    add({"skew.min_pairs": str(MIN_PAIRS)}, "analysis.stats.skew_guard.MIN_PAIRS")
    for prefix, name in (("quick", "notebook-ablation-quick"), ("full", "notebook-ablation-full")):
        path = results / name
        if (path / "runs.csv").exists():
            study = load_study(path)
            src = f"{path}/runs.csv, study.json"
            add(study_numbers(prefix, study), src)
            add(stage_numbers(prefix, study, "no_scheduler"), f"{path}/runs.csv (trial_number, git_commit)")
            add(same_config_noise(prefix, study, "no_scheduler", NOTEBOOK["bn_sched"] - NOTEBOOK["bn_nosched"]),
                f"{path}/runs.csv and stored predictions")
    if (results / "fidelity-quick" / "runs.csv").exists():
        add(study_numbers("fid", load_study(results / "fidelity-quick")), f"{results}/fidelity-quick/runs.csv")
    add(tuning_numbers(results / "notebook-ablation-quick", "notebook-ablation-quick"),
        f"{results}/notebook-ablation-quick/{DB_FILE} (Optuna tuning studies)")
    variance = results / VARIANCE_STUDY
    if (variance / "runs.csv").exists():
        add(variance_study_numbers("var", load_study(variance)), f"{variance}/runs.csv (variance design)")
    sequential = results / SEQUENTIAL_STUDY
    if (sequential / "runs.csv").exists() and read_record(sequential) is not None:
        add(sequential_numbers("seq", sequential), f"{sequential}/sequential.json, runs.csv")
        if "quick.n_runs" in found and "seq.n_runs" in found:
            hand, seq = int(found["quick.n_runs"][0]), int(found["seq.n_runs"][0])
            add({"seq.runs_saved": str(hand - seq), "seq.runs_saved_pct": _f(100 * (hand - seq) / hand, 0)},
                f"{results}/notebook-ablation-quick/runs.csv and {sequential}/runs.csv")
    add_confirmation(add, results / confirm_study_name("notebook-ablation-quick"), "tuned", "sel")
    per_arm = results / per_arm_study_name(SEQUENTIAL_STUDY)
    if (per_arm / "runs.csv").exists():  # issue 14: every BN arm at its own tuned lr and step size
        ablation = results / SEQUENTIAL_STUDY
        add(tuning_numbers(ablation, SEQUENTIAL_STUDY, prefix="pa.tune", learned_above=CHANCE + 1),
            f"{ablation}/{DB_FILE} (the per-arm tuning studies)")
        add_per_arm(add, load_study(ablation), per_arm, "pa")
    add_race(add, results / RACE_STUDY)
    return found


def add_confirmation(add, tuned: Path, prefix: str, sel_prefix: str) -> None:
    """`<prefix>.*` and `<sel_prefix>.*`: a `--confirm` study (the tuned params next to the
    untuned arm on fresh seeds) and its selection table, when it exists."""
    if (tuned / "runs.csv").exists():
        add(study_numbers(prefix, load_study(tuned)), f"{tuned}/runs.csv, study.json")
        add(selection_numbers(selection_rows(tuned) or [], prefix=sel_prefix), f"{tuned}/selection.json")


def add_per_arm(add, fixed: StudyData, per_arm: Path, prefix: str) -> None:
    """`<prefix>.*` (per_arm.json), `<prefix>.tuned.*` and `<prefix>.fixed.*`: every arm at its
    own tuned params (`--arm A,B,... --confirm N`) and the same arms and seeds in the ablation
    study `fixed`, at its fixed params."""
    tuned_per_arm = load_study(per_arm)
    add(per_arm_numbers(prefix, per_arm), f"{per_arm}/per_arm.json")
    add(study_numbers(f"{prefix}.tuned", tuned_per_arm), f"{per_arm}/runs.csv")
    add(study_numbers(f"{prefix}.fixed", fixed_lr_counterpart(fixed, tuned_per_arm)),
        f"{fixed.path}/runs.csv, the per-arm study's arms and seeds")


def add_race(add, ablation: Path) -> None:
    """`race.*`: the study of paper/racing_study.sh. `race.*` its fixed-lr runs, `race.tune.*`
    each arm's race, `race.tuned.*` and `race.sel.*` the baseline's winner confirmed on fresh
    seeds (section 4), `race.pa.*` every arm at its own winner (section 5) and
    `race.pa.fixed.*` the same arms and seeds at the fixed lr."""
    if not (ablation / "runs.csv").exists():
        return
    fixed = load_study(ablation)
    add(study_numbers("race", fixed), f"{ablation}/runs.csv, study.json")
    add(tuning_numbers(ablation, ablation.name, prefix="race.tune", learned_above=CHANCE + 1),
        f"{ablation}/{DB_FILE} (the race studies)")
    add_confirmation(add, ablation.parent / confirm_study_name(ablation.name), "race.tuned", "race.sel")
    per_arm = ablation.parent / per_arm_study_name(ablation.name)
    if (per_arm / "runs.csv").exists():
        add_per_arm(add, fixed, per_arm, "race.pa")


def collect(results: Path) -> dict[str, str]:
    """name -> value of every computed number (what the template's placeholders get)."""
    return {k: v for k, (v, _) in gather(results).items()}


def sequential_numbers(prefix: str, path: Path) -> dict[str, str]:
    """A study run `--until-decided` (its sequential.json and runs): the pre-registered plan,
    and per comparison the look it stopped at, its seeds, repeated CI and adjusted p-value."""
    record = read_record(path)
    if record is None:
        return {}
    plan = SequentialPlan.from_dict(record["plan"])
    runs = load_study(path).runs
    ok = runs[runs["status"] == COMPLETE]
    out = {f"{prefix}.n_runs": str(len(ok)), f"{prefix}.wall_min": _f(ok["wall_time_s"].sum() / 60, 0),
           f"{prefix}.device": ", ".join(sorted(set(ok["device"].dropna()))),
           f"{prefix}.precision": ", ".join(sorted(set(ok["precision"].dropna()))),
           f"{prefix}.first_look": str(plan.first_look), f"{prefix}.look_every": str(plan.look_every),
           f"{prefix}.max_seeds": str(plan.max_seeds), f"{prefix}.alpha": _n(plan.alpha),
           f"{prefix}.margin": _n(plan.margin), f"{prefix}.n_comparisons": str(len(plan.arms)),
           f"{prefix}.ci_level": f"{100 * (1 - plan.alpha):g}%",  # the repeated CI's level
           f"{prefix}.spending": SPENDING_NAMES[plan.spending].format(_n(plan.spending_param)),
           f"{prefix}.state": ("decided" if record.get("next_look") is None
                               else f"still open (next look at {record['next_look']} seeds per arm)"),
           f"{prefix}.deviations": str(len(record.get("deviations") or [])),
           # The rule the plan was registered under (version 1 predates the skew guard).
           f"{prefix}.rule": ("with the skew guard" if plan.skew_guard else
                              f"without the skew guard: plan version {plan.version}, registered "
                              "before it existed")}
    out[f"{prefix}.{plan.baseline}.seeds"] = str(int(ok[ok["arm"] == plan.baseline]["seed"].nunique()))
    for c in record["comparisons"]:
        k = f"{prefix}.{c['arm']}"
        out[f"{k}.verdict"] = c["decision"]
        out[f"{k}.n_pairs"] = str(c["n"])
        out[f"{k}.seeds"] = str(c["seeds"])
        out[f"{k}.look"] = str(len(c["looks"]))
        out[f"{k}.diff"] = _f(c["diff"], sign=True)
        ci = c.get("ci") or [None, None]
        out[f"{k}.ci"] = f"[{_f(ci[0], sign=True)}, {_f(ci[1], sign=True)}]"
        out[f"{k}.p_adj"] = _p(c["p_adjusted"]) if c.get("p_adjusted") is not None else "n/a"
    return out
