"""The small end-of-study table: per arm n, mean +- sd, 95% CI; each arm minus the baseline.

Deliberately small (the full statistics live in `analysis`). Each arm minus the baseline is
the verdicts' own difference and interval when the family is given (`analysis.compare_arms`),
else the same primary test on the complete runs (`analysis.stats.paired.primary_test`: the
skew-guarded paired t on common seeds, Welch otherwise): the table and the verdicts printed
below it never show two intervals for one difference.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from analysis.contract import COMPLETE, DIVERGED, FAILED
from analysis.formatting import number, significant
from analysis.stats.describe import t_interval
from analysis.stats.paired import primary_test

if TYPE_CHECKING:
    from analysis.stats.family import Family


def summarize(runs: pd.DataFrame, arms: list[str], baseline: str, metric: str = "test_acc",
              family: Family | None = None) -> pd.DataFrame:
    """Per arm: n complete seeds, `failed` seeds (failed and never stored since: a failure later
    retried successfully is not counted, nor is each attempt), `diverged` seeds, mean, sd, CI,
    and the difference from the baseline: `family`'s comparison of the arm with `baseline`
    when given (failures counted as its plan says), else `primary_test` on complete runs."""
    if metric not in runs.columns:  # no run stored the metric yet (every run failed)
        runs = runs.assign(**{metric: np.nan})
    ok = runs[(runs["status"] == COMPLETE) & runs["arm"].isin(arms)]
    base = ok[ok["arm"] == baseline].set_index("seed")[metric]
    rows = []
    for arm in arms:
        sel = runs[runs["arm"] == arm]
        vals = ok[ok["arm"] == arm].set_index("seed")[metric]
        ci = t_interval(vals.to_numpy())  # (mean, low, high)
        failed = set(sel.loc[sel["status"] == FAILED, "seed"]) - set(sel.loc[sel["status"] != FAILED, "seed"])
        row = {"arm": arm, "n": len(vals), "failed": len(failed),
               "diverged": int((sel["status"] == DIVERGED).sum()),
               "mean": vals.mean() if len(vals) else np.nan,
               "sd": vals.std(ddof=1) if len(vals) > 1 else np.nan,
               "ci_low": ci[1] if ci else np.nan, "ci_high": ci[2] if ci else np.nan,
               "diff": np.nan, "diff_low": np.nan, "diff_high": np.nan, "paired": ""}
        if arm != baseline:
            row.update(_difference(arm, baseline, vals, base, family))
        rows.append(row)
    return pd.DataFrame(rows)


def _difference(arm: str, baseline: str, vals: pd.Series, base: pd.Series,
                family: Family | None) -> dict:
    """diff, diff_low, diff_high and how it was paired, for the row of `arm` (empty: "-")."""
    if family is not None:
        found = [c for c in family.comparisons if (c.arm_name, c.baseline_name) == (arm, baseline)]
        if not found:  # not judged (the verdicts say why)
            return {}
        c = found[0]
        return {"diff": c.diff, "diff_low": c.ci_low, "diff_high": c.ci_high,
                "paired": f"paired, n={c.n_arm}" if c.paired else "Welch"}
    common = vals.index.intersection(base.index)
    if len(common) >= 2:
        x, y, how = vals[common].to_numpy(), base[common].to_numpy(), f"paired, n={len(common)}"
    elif len(vals) >= 2 and len(base) >= 2:
        x, y, how = vals.to_numpy(), base.to_numpy(), "Welch"
    else:
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zero variance: the verdicts below say so
        ci = primary_test(x, y, paired=how != "Welch").ci
    if ci is None:
        return {}
    return {"diff": ci.estimate, "diff_low": ci.low, "diff_high": ci.high, "paired": how}


def render(table: pd.DataFrame, baseline: str, metric: str = "test_acc", direction: str = "maximize",
           percent: bool = True) -> str:
    """Plain-text table for the terminal (the caller prints it). `percent`: the built-in
    experiment's accuracies, shown to 2 decimals; other metrics to 4 significant digits."""
    def f(v, signed=False):
        return (number(v, signed=signed, missing="-") if percent
                else significant(v, 4, signed=signed, missing="-"))

    units = "(percent)" if percent else f"({'lower' if direction == 'minimize' else 'higher'} is better)"
    rows = []
    for r in table.itertuples():
        if r.arm == baseline:
            diff = "(baseline)"
        elif np.isnan(r.diff):
            diff = "-"
        else:
            diff = (f"{f(r.diff, True)} [{f(r.diff_low, True)}, {f(r.diff_high, True)}] "
                    f"{r.paired}")
        rows.append((r.arm, r.n, r.failed + r.diverged, f"{f(r.mean)} +- {f(r.sd)}",
                     f"[{f(r.ci_low)}, {f(r.ci_high)}]", diff))
    # Columns as wide as their widest cell plus two spaces: 4 significant digits can be long.
    w_arm = max([16, *(len(str(r[0])) + 2 for r in rows)])
    w_ms = max([16, *(len(r[3]) + 2 for r in rows)])
    w_ci = max([18, *(len(r[4]) + 2 for r in rows)])
    lines = [f"{metric} {units} per arm; differences are arm - {baseline} with the 95% interval "
             "of the verdicts' primary test",
             f"{'arm':<{w_arm}}{'n':>3}{'fail':>5}  {'mean +- sd':<{w_ms}}{'95% CI':<{w_ci}}{'diff vs ' + baseline}"]
    for arm, n, fails, ms, ci, diff in rows:
        lines.append(f"{arm:<{w_arm}}{n:>3}{fails:>5}  {ms:<{w_ms}}{ci:<{w_ci}}{diff}")
    lines.append("fail: seeds that diverged, or failed with no stored run since (not attempts).")
    lines.append("Intervals use seed-to-seed variation only; `seedwise report` adds tests, "
                 "multiple-comparison correction, equivalence and test-set noise.")
    return "\n".join(lines)
