"""Report sections that depend on what the study recorded: failure rates per arm, and the list
of sections the report leaves out (with why), so a plain CSV of ``arm, seed, metric`` gets a
report that says what it could not show instead of crashing or showing empty figures.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from . import failures as FL
from .plan import MetricPlan


def failures_paragraph(classified: pd.DataFrame, arms: Sequence[str], plan: MetricPlan,
                       tolerance: float | None) -> tuple[str, pd.DataFrame | None]:
    """The text about failures and, when any arm has one, the per-arm outcome table."""
    if plan.chance is None:
        rule = ("No chance level is known for `" + plan.metric + "` (declare `chance` in the "
                "analysis plan or pass --chance), so only divergence counts as a failure.")
    else:
        rule = (f"A run **did not learn** when its final `{plan.metric}` is within "
                f"{tolerance:.3g} of chance ({plan.chance:g}, from {plan.chance_source}), "
                "i.e. within the test-set noise of a model that learned nothing.")
    table = FL.outcome_table(classified, arms)
    if not (table["did not learn"].sum() + table["diverged"].sum()):
        return f"**Failures.** {rule} No run diverged or failed to learn.", None
    basis = ("all runs: a run that did not learn counts with its final value, a diverged run "
             + (f"at chance ({plan.chance:g})" if plan.chance is not None else
                "cannot be scored (no chance level) and is left out of the mean, which withholds "
                "a *better* verdict from an arm that diverges more often")
             if plan.population == "all" else
             "only the runs that learned; failure rates are compared on their own")
    bimodal = table.loc[table["bimodal"] == "YES", "arm"].tolist()
    text = (f"**Failures are outcomes.** {rule} The mean comparisons use {basis}; each verdict "
            "states both arms' failure rates, Fisher's exact test of their difference "
            "(Holm-adjusted) and the difference under the other choice."
            + (" Bimodal arms (runs that learned mixed with runs that did not): "
               + ", ".join(f"`{a}`" for a in bimodal)
               + ": their t intervals describe a mixture, not a typical run." if bimodal else ""))
    return text, table


def omitted_sections(study, plan: MetricPlan, *, predictions: bool, lr_recorded: bool) -> list[str]:
    """Sections left out of the report for lack of data, each with the reason."""
    out = []
    if not study.meta:
        out.append("the arms' configurations, configuration checks and most provenance: no "
                   "study.json beside the runs table")
    if study.epochs.empty:
        out.append("learning curves and the learning-rate check: no epochs.csv (per-epoch "
                   "records)")
    elif not lr_recorded:
        out.append("the learning-rate check: epochs.csv has no `lr` column")
    if plan.metric == "test_acc" and not predictions:
        out.append("test-set noise of the differences: no per-example predictions stored "
                   "(study.db with artifacts and test_labels.npy)")
    if plan.metric != "test_acc":
        out.append(f"test-set noise: it applies to test_acc, not `{plan.metric}`")
    if "n_bn" not in study.runs:
        out.append("the BatchNorm check: runs have no `n_bn` column")
    return out
