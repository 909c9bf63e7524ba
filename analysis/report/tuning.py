"""The report's section on tuning: the Optuna tuning studies stored beside an ablation study
(what was searched, the best trial, the parameters' importance, three figures each) and the
confirmation of the selected parameters on fresh evaluation seeds (the ``<study>-tuned`` study
next to it), which measures how much the winner's validation score was selection luck; and,
when several arms were tuned (`study.tune --arm A,B,... --confirm N`), the tuned-vs-tuned answer
(the ``<study>-tuned-per-arm`` study) next to the fixed-lr answer on the same seeds.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import pandas as pd

from analysis.contract import COMPLETE, PER_ARM_FILE, per_arm_study_name
from analysis.formatting import MINUS, interval, number, p_value, param_value, significant
from analysis.load import StudyData, StudyNotFound, compare_arms, family_frame, load_study
from analysis.report.blocks import Heading, Para, Report
from analysis.report.race import budget_section, race_section
from analysis.report.tables import seed_ranges
from analysis.tuning.studies import (
    Tuning,
    history_figure,
    importance_figure,
    param_label,
    selection_table,
    space_axes,
    space_figure,
    tuning_trials,
    winner_is_default,
)


def tuning_section(rep: Report, study: StudyData) -> None:
    """Tuning studies stored beside this ablation, and the confirmation of their winner."""
    url = study.storage_url
    if url is None:
        return
    try:
        tunings = tuning_trials(url, study.meta.get("study", study.path.name))
    except Exception as e:  # an unreadable storage must not cost the rest of the report
        rep.add(Heading("Tuning"),
                Para(f"The tuning studies could not be read ({type(e).__name__}); skipped."))
        return
    if not tunings:
        return
    rep.add(Heading("Tuning (Optuna)"))
    for t in tunings:
        if t.race is not None:  # a race (study.tune --race): analysis.report.race
            race_section(rep, t)
        else:
            rep.add(Para(_tuning_text(t)))
        space, score = space_axes(t), _score_words(t)
        suffix = t.arm + ("_race" if t.race is not None else "")
        for key, fig, caption in (
                # a race's best single run is the winner's curse it avoids: no best-so-far figure
                ("tuning_history", None if t.race is not None else history_figure(t),
                 f"{score[0].upper()}{score[1:]} of every "
                 "tuning trial and the best so far; crosses: trials pruned or failed before a "
                 "final value."),
                ("tuning_space", space_figure(t), "Where the sampler looked: "
                 + (" x ".join(param_label(p) for p in space) if space else "")
                 + f", coloured by {score}; the best trial circled."),
                ("tuning_importance", importance_figure(t), "Importance of each parameter for "
                 f"reaching the {'top validation accuracies' if t.objective == 'val_acc' else 'best ' + score} "
                 "(Optuna PED-ANOVA evaluator).")):
            if fig is not None:  # the space figure needs two numeric parameters
                rep.add_figure(f"{key}_{suffix}", fig, caption)
    budget_section(rep, tunings)
    _confirmation(rep, study.path.parent / f"{study.path.name}-tuned")
    _per_arm(rep, study, study.path.parent / per_arm_study_name(study.path.name))


def _score_words(t: Tuning) -> str:
    """The tuning metric in prose: ``validation accuracy`` (the built-in objective), else its
    name as the spec declares it, e.g. ```val_loss```."""
    return "validation accuracy" if t.objective == "val_acc" else f"`{t.objective}`"


def _tuning_text(t: Tuning) -> str:
    """One tuning study: trials by state, how it searched, the best trial, the importances."""
    states = t.trials["state"].value_counts().to_dict()
    diverged = int((t.trials["status"] == "diverged").sum())
    text = (f"`{t.name}` tuned `{t.arm}` over {len(t.trials)} trials "
            f"({', '.join(f'{n} {k.lower()}' for k, n in states.items())}"
            f"{f'; {diverged} diverged' if diverged else ''}) with a seeded TPE sampler and a "
            + ("median pruner on per-epoch **validation** accuracy" if t.objective == "val_acc" else
               f"median pruner on the per-epoch `{t.objective}` ({t.direction}d)")
            + "; the test set was never scored "
            "during tuning, and tuning seeds (100000 + trial) are disjoint from evaluation seeds.")
    if t.best:
        params = ", ".join(f"{k} = {significant(v, 4)}" if isinstance(v, float) else f"{k} = {v}"
                           for k, v in t.best["params"].items())
        text += (f" Best: trial {t.best['number']}, {params}, "
                 + (f"validation accuracy {number(t.best['value'])}%." if t.objective == "val_acc"
                    else f"`{t.objective}` {significant(t.best['value'], 4)}."))
    if t.importances:
        text += (" Importance (PED-ANOVA): "
                 + ", ".join(f"{k} {number(v)}" for k, v in t.importances.items()) + ".")
    return text


def _confirmation(rep: Report, confirm_dir: Path) -> None:
    """The selected trials' validation score against their fresh-seed scores, and the tuned
    arms compared with the baseline on fresh seeds (the study in `confirm_dir`)."""
    selection = selection_table(confirm_dir)
    if selection is not None:
        rep.add(Para("**Confirmation on fresh seeds.** The winner's validation score was "
                     "selected as the best of many noisy trials, so it overstates what the "
                     "parameters give on new seeds:"))
        rep.add_table("selection", selection, "Confirmation of the selected trial(s) on fresh "
                      "evaluation seeds: the validation score that won the selection against "
                      "the same parameters' fresh-seed scores. The gap is the selection bias "
                      "(winner's curse).")
    if not (confirm_dir / "runs.csv").exists():
        return
    if winner_is_default(confirm_dir):
        others = pd.read_csv(confirm_dir / "runs.csv", usecols=["arm"])["arm"].nunique() > 1  # --top-k's
        rep.add(Para(f"**The winner is the default configuration: "
                     f"{'the other choices are compared with it' if others else 'nothing to compare'}.** The "
                     f"confirmation study `{confirm_dir.name}` ran the untuned params once on the fresh seeds; "
                     "its row above is the winner's, and its gap is what the selection overstated."))
        if not others:
            return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            tuned = family_frame(compare_arms(load_study(confirm_dir)))
        except (StudyNotFound, ValueError) as e:  # say why, keep the rest of the report
            rep.add(Para(f"The confirmation study `{confirm_dir.name}` could not be compared: {e}"))
            return
    for r in tuned.itertuples():
        rep.add(Para(f"**`{r.arm}` vs `{r.baseline}` on fresh seeds** (study "
                     f"`{confirm_dir.name}`, {r.n_arm} paired seeds): Δ = "
                     f"{number(r.diff, signed=True)} points, 95% CI "
                     f"{interval(r.ci_low, r.ci_high, signed=True)}, {r.test} p = "
                     f"{significant(r.p_value)} (Holm {significant(r.p_adjusted)}): "
                     f"**{r.verdict}**. {r.verdict_reason}"))


def _per_arm(rep: Report, study: StudyData, per_arm_dir: Path) -> None:
    """Each tuned arm against the baseline twice, on the same seeds: at the fixed (untuned)
    params of this study, and with every arm at its own tuned params (`per_arm_dir`)."""
    file = per_arm_dir / PER_ARM_FILE
    if not (file.exists() and (per_arm_dir / "runs.csv").exists()):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            record = json.loads(file.read_text())
            tuned = load_study(per_arm_dir)
            seeds = set(tuned.runs.loc[tuned.runs["status"] == COMPLETE, "seed"])
            arms = [a["arm"] for a in record["arms"]]
            fixed = family_frame(compare_arms(fixed_lr_counterpart(study, tuned)))
            tuned_frame = family_frame(compare_arms(tuned))
        except (OSError, ValueError, KeyError, StudyNotFound) as e:  # say why, keep the rest
            rep.add(Para(f"The per-arm tuning study `{per_arm_dir.name}` could not be compared: {e}"))
            return
    rep.add(Para(f"**Every arm at its own tuned params** (study `{per_arm_dir.name}`, seeds "
                 f"{seed_ranges(seeds)}): each arm of {', '.join(f'`{a}`' for a in arms)} was tuned in "
                 "its own study on validation, and its best params were run on the same fresh seeds. "
                 "The fixed-lr answer is this study's runs on those seeds, so both columns pair the "
                 "same seeds; each column is Holm-corrected over its own comparisons."))
    rep.add_table("tuned_per_arm", per_arm_table(record, fixed, tuned_frame),
                  "Each arm against the baseline at the fixed (untuned) params and with every arm at "
                  "its own tuned params: the difference, its CI, the Holm-adjusted p and the verdict.")


def fixed_lr_counterpart(study: StudyData, tuned: StudyData) -> StudyData:
    """`study`'s runs of the arms and seeds that the per-arm study `tuned` completed: the
    fixed-lr answer paired on the same seeds as the tuned one."""
    ok = tuned.runs[tuned.runs["status"] == COMPLETE]
    same = study.runs["arm"].isin(set(ok["arm"])) & study.runs["seed"].isin(set(ok["seed"]))
    return replace(study, runs=study.runs[same])


def per_arm_table(record: dict, fixed: pd.DataFrame, tuned: pd.DataFrame) -> pd.DataFrame:
    """One row per arm: untuned -> tuned params, then the fixed-lr and the tuned answer."""
    def answer(frame: pd.DataFrame, arm: str) -> tuple[str, str]:
        row = frame[frame["arm"] == arm]
        if row.empty:
            return "-", "-"
        r = row.iloc[0]
        return (f"{number(r['diff'], signed=True, minus=MINUS)} "
                f"{interval(r['ci_low'], r['ci_high'], signed=True, minus=MINUS)}, "
                f"p {p_value(r['p_adjusted'], minus=MINUS)} (n = {int(r['n_arm'])})", str(r["verdict"]))

    rows = []
    for a in record["arms"]:
        params = ", ".join(f"{k} {param_value(a['untuned'].get(k))} → {param_value(v)}" for k, v in a["params"].items())
        fixed_diff, fixed_verdict = answer(fixed, a["arm"])
        tuned_diff, tuned_verdict = answer(tuned, a["arm"])
        rows.append({"arm": a["arm"], "params: untuned → tuned": f"{params} ({'trial' if isinstance(a['trial'], int) else 'race candidate'} {a['trial']})",
                     "fixed lr: Δ [CI], Holm p": fixed_diff, "fixed lr: verdict": fixed_verdict,
                     "tuned per arm: Δ [CI], Holm p": tuned_diff, "tuned per arm: verdict": tuned_verdict})
    return pd.DataFrame(rows)
