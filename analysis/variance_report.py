"""The report's section for a study of `python -m study.variance`: where its arm's run-to-run
variance comes from.

It shows the record the runner wrote (variance.json: `analysis.variance.decompose_variance` of
the stored runs, with the test-set terms from the stored predictions), so the report, the
runner's printout and variance.csv always say the same; nothing is recomputed here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .numbers import percent, significant
from .report_blocks import Heading, Para, Report

VARIANCE_FILE = "variance.json"  # written by study.variance next to runs.csv
SOURCE_NAMES = {"init": "weight init", "order": "data order", "augment": "augmentation",
                "split": "train/validation split", "all": "all sources at once",
                "none": "none (reference repeated: nondeterminism)", "test": "test-set sample (binomial)"}


def read_variance(results_dir: Path) -> dict | None:
    """The runner's variance.json, or None when the study is not a variance study."""
    file = Path(results_dir) / VARIANCE_FILE
    if not file.exists():
        return None
    return json.loads(file.read_text())


def variance_table(doc: dict) -> pd.DataFrame:
    """One row per component: runs, sd, variance with CI, share with CI, test noise."""
    rows = []
    for c in doc["components"]:
        has_ci, has_share_ci = c.get("ci_low") is not None, c.get("share_low") is not None
        rows.append({
            "source varied": SOURCE_NAMES.get(c["source"], c["source"]),
            "runs": "" if c["source"] == "test" else c["n_runs"],  # a binomial term, not runs
            "sd": significant(c["sd"], missing="-"),
            "variance [CI]": significant(c["variance"], missing="-") + (
                f" [{significant(c['ci_low'])}, {significant(c['ci_high'])}]" if has_ci else ""),
            "share [CI]": percent(c["share"], missing="-") + (
                f" [{percent(c['share_low'])}, {percent(c['share_high'])}]" if has_share_ci else ""),
            "test noise": significant(c.get("test_noise"), missing="-")})
    return pd.DataFrame(rows)


def variance_section(rep: Report, results_dir: Path) -> None:
    """The decomposition of a variance study; nothing for any other study."""
    try:
        doc = read_variance(results_dir)
    except (OSError, ValueError) as e:  # say why, keep the rest of the report
        rep.add(Para(f"The variance record `{VARIANCE_FILE}` could not be read: {e}"))
        return
    if doc is None:
        return
    level = f"{100 * doc['confidence']:g}%"
    rep.add(Heading("Where the variance comes from", level=3))
    text = (f"`{doc['arm']}` was trained {doc['complete']} times: {doc['k']} runs for each source "
            f"({', '.join(f'`{s}`' for s in doc['sources'])}) in which only that source's seed changed, "
            f"and {doc['k']} in which all changed. Each group's sample variance estimates its source's "
            "variance component (one-way random effects, one run per level), with a chi-square "
            f"{level} CI that assumes normal scores; a share is the component over the all-sources "
            "variance (F interval). The test-set row is the binomial variance of one score on the test "
            "set: shared by every run, so not in any group's variance, but a fresh test sample moves "
            "every score by that much; its share is of all sources plus the test set. Test noise: the "
            "part of a group's variance that comes from its runs disagreeing on the fixed test set.")
    if doc.get("sum_of_shares") is not None:
        text += (f" The sources' shares add up to {percent(doc['sum_of_shares'])}: well above 100% means "
                 "one perturbed source decorrelates a run almost as much as all of them.")
    left_out = [f"{doc[k]} {k}" for k in ("diverged", "failed") if doc.get(k)]
    if left_out:
        text += (f" Left out: {' and '.join(left_out)} run(s); a divergence is an outcome of the recipe, "
                 "to be read as a rate beside this table.")
    rep.add(Para(text))
    rep.add_table("variance", variance_table(doc), f"Variance components of {doc['metric']} "
                  f"(units squared; sd in units), {level} intervals; from `{VARIANCE_FILE}`.")
