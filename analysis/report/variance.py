"""The report's section for a study of `python -m study.variance`: where its arm's run-to-run
variance comes from.

It shows the record the runner wrote (variance.json: `analysis.stats.variance.decompose_variance` of
the stored runs, with the test-set terms from the stored predictions), so the report, the
runner's printout and variance.csv always say the same; nothing is recomputed here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from analysis.formatting import percent, significant
from analysis.report.blocks import Heading, Para, Report

VARIANCE_FILE = "variance.json"  # written by study.variance next to runs.csv
SOURCE_NAMES = {"init": "weight init", "order": "data order", "augment": "augmentation",
                "split": "train/validation split", "all": "all sources at once",
                "none": "none (reference repeated: nondeterminism)", "test": "test-set sample (binomial)",
                "residual": "per-run residual (test noise + nondeterminism)"}


def read_variance(results_dir: Path) -> dict | None:
    """The runner's variance.json, or None when the study is not a variance study."""
    file = Path(results_dir) / VARIANCE_FILE
    if not file.exists():
        return None
    return json.loads(file.read_text())


def variance_table(doc: dict) -> pd.DataFrame:
    """One row per component: runs, sd, variance with CI, net component with CI (records
    written before issue 23 have none: no column), share with CI, test noise."""
    def with_ci(value, low, high, fmt):
        return fmt(value, missing="-") + (f" [{fmt(low)}, {fmt(high)}]" if low is not None else "")

    has_net = any("net" in c for c in doc["components"])
    rows = []
    for c in doc["components"]:
        plug_in = c["source"] in ("test", "residual") and not c["n_runs"]  # a term, not runs
        row = {"source varied": SOURCE_NAMES.get(c["source"], c["source"]),
               "runs": "" if plug_in else c["n_runs"],
               "sd": significant(c["sd"], missing="-"),
               "variance [CI]": with_ci(c["variance"], c.get("ci_low"), c.get("ci_high"), significant)}
        if has_net:
            row["net [CI]"] = with_ci(c.get("net"), c.get("net_low"), c.get("net_high"), significant)
        row["share [CI]"] = with_ci(c["share"], c.get("share_low"), c.get("share_high"), percent)
        row["test noise"] = significant(c.get("test_noise"), missing="-")
        rows.append(row)
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
            f"and {doc['k']} in which all changed. Each group's sample variance (chi-square "
            f"{level} CI, assumes normal scores) holds its source's variance component plus the per-run "
            "residual (the runs' unshared test-set noise and any nondeterminism); `net` is the group's "
            "variance with the residual taken out, and a share is the net component over the "
            "all-sources variance, with the (k-1)/(k-3) inflation of a ratio at small k removed "
            "(generalized pivotal intervals). The test-set row is the binomial variance of one score on the test "
            "set: shared by every run, so not in any group's variance, but a fresh test sample moves "
            "every score by that much; its share is of all sources plus the test set. Test noise: the "
            "part of a group's variance that comes from its runs disagreeing on the fixed test set.")
    if "additivity" in doc:
        text += f" {_sum_sentence(doc)}"
    elif doc.get("sum_of_shares") is not None:  # a record written before issue 23
        text += (f" The sources' shares add up to {percent(doc['sum_of_shares'])}, a raw ratio of group variances "
                 "that counts the per-run residual once per source and is inflated at small k: it says "
                 "nothing about additivity (rerun `python -m study.variance` to refresh this record).")
    left_out = [f"{doc[k]} {k}" for k in ("diverged", "failed") if doc.get(k)]
    if left_out:
        text += (f" Left out: {' and '.join(left_out)} run(s); a divergence is an outcome of the recipe, "
                 "to be read as a rate beside this table.")
    rep.add(Para(text))
    rep.add_table("variance", variance_table(doc), f"Variance components of {doc['metric']} "
                  f"(units squared; sd in units), {level} intervals; from `{VARIANCE_FILE}`.")


def _sum_sentence(doc: dict) -> str:
    """The additivity reading of a record written since issue 23."""
    if doc.get("net_is_upper_bound"):
        lead = ("No replicate runs and no declared determinism: each net component is an upper bound "
                "(source + nondeterminism)")
    elif any(c["source"] == "none" for c in doc["components"]):
        lead = "The replicate runs measured the nondeterminism"
    else:
        lead = "The runs are bit-deterministic, so the residual is their unshared test noise alone"
    ci = doc.get("sum_of_shares_ci")
    if doc.get("sum_of_shares") is None or ci is None:
        return f"{lead}. Sum of shares: not computed ({doc['additivity']})."
    return (f"{lead}. Sum of the sources' and the residual's shares: {percent(doc['sum_of_shares'])} "
            f"[{percent(ci[0])}, {percent(ci[1])}], which is 100% for additive sources: {doc['additivity']}.")
