"""The report's section on tuning: the Optuna tuning studies stored beside an ablation study
(what was searched, the best trial, the parameters' importance, three figures each) and the
confirmation of the selected parameters on fresh evaluation seeds (the ``<study>-tuned`` study
next to it), which measures how much the winner's validation score was selection luck.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from .load import StudyData, StudyNotFound, compare_arms, family_frame, load_study
from .numbers import interval, number, significant
from .report_blocks import Heading, Para, Report
from .tuning import (
    Tuning,
    history_figure,
    importance_figure,
    lr_step_figure,
    selection_table,
    tuning_trials,
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
        rep.add(Para(_tuning_text(t)))
        for key, fig, caption in (
                ("tuning_history", history_figure(t), "Validation accuracy of every tuning trial "
                 "and the best so far; crosses: trials pruned or failed before a final value."),
                ("tuning_space", lr_step_figure(t), "Where the sampler looked: learning rate x "
                 "StepLR step size, coloured by validation accuracy; the best trial circled."),
                ("tuning_importance", importance_figure(t), "Importance of each parameter for "
                 "reaching the top validation accuracies (Optuna PED-ANOVA evaluator).")):
            name = f"{key}_{t.arm}"
            rep.add_figure(name, fig, caption)
    _confirmation(rep, study.path.parent / f"{study.path.name}-tuned")


def _tuning_text(t: Tuning) -> str:
    """One tuning study: trials by state, how it searched, the best trial, the importances."""
    states = t.trials["state"].value_counts().to_dict()
    diverged = int((t.trials["status"] == "diverged").sum())
    text = (f"`{t.name}` tuned `{t.arm}` over {len(t.trials)} trials "
            f"({', '.join(f'{n} {k.lower()}' for k, n in states.items())}"
            f"{f'; {diverged} diverged' if diverged else ''}) with a seeded TPE sampler and a "
            "median pruner on per-epoch **validation** accuracy; the test set was never scored "
            "during tuning, and tuning seeds (100000 + trial) are disjoint from evaluation seeds.")
    if t.best:
        params = ", ".join(f"{k} = {significant(v, 4)}" if isinstance(v, float) else f"{k} = {v}"
                           for k, v in t.best["params"].items())
        text += (f" Best: trial {t.best['number']}, {params}, validation accuracy "
                 f"{number(t.best['value'])}%.")
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
