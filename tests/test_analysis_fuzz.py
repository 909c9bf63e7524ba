"""Fuzz the analysis CLIs with malformed runs tables (issue 12): missing columns, NaN and inf,
strings, duplicates, single seeds, constant arms, odd statuses and file names. Every case
must end in a result (exit 0) or a one-line error (exit 2), never a traceback."""

import contextlib
import io
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.compare import main as compare_main
from analysis.report import main as report_main

COLUMNS = ("arm", "seed", "status", "test_acc")
CELLS = {
    "arm": [None, "", "a b", 7, "baseline"],
    "seed": [None, 1.5, "s", -1, 10**6, 0],
    "status": [None, "failed", "diverged", "running", "complete"],
    "test_acc": [np.nan, np.inf, -np.inf, None, "abc", "1e2", -3.0, 150.0, 0.7, 10.0, 0.0],
}


@st.composite
def tables(draw):
    """A clean study of 1-3 arms x 1-6 seeds, then 0-4 corruptions of the kinds people bring."""
    arms = ["baseline", "x", "y"][:draw(st.sampled_from([2, 3, 2, 1]))]
    n_seeds = draw(st.integers(1, 6))
    gen = np.random.default_rng(draw(st.integers(0, 2**16)))
    shape = draw(st.sampled_from(["noisy", "constant", "identical", "copy", "fractions",
                                  "chance"]))
    base = 70 + gen.normal(0, 1, n_seeds)
    rows = []
    for i, arm in enumerate(arms):
        for s in range(n_seeds):
            value = {"noisy": 70 + i + gen.normal(0, 1), "constant": 70.0 + i,
                     "identical": 70.0 + s, "fractions": 0.7 + 0.01 * gen.normal(),
                     "copy": base[s] + (i == 2) * gen.normal(1, 0.5),  # x is the baseline
                     "chance": 10.0 if gen.random() < 0.5 else 60 + gen.normal()}[shape]
            rows.append({"arm": arm, "seed": s, "status": "complete", "test_acc": value})
    df = pd.DataFrame(rows, columns=list(COLUMNS)).astype(object)
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["cell", "cell", "cell", "duplicate", "duplicate", "drop",
                                     "single", "single", "empty"]))
        if kind == "cell" and len(df) and len(df.columns):
            col = draw(st.sampled_from(list(df.columns)))
            df.iat[draw(st.integers(0, len(df) - 1)), list(df.columns).index(col)] = draw(
                st.sampled_from(CELLS[col]))
        elif kind == "duplicate" and len(df):
            df = pd.concat([df, df.iloc[[draw(st.integers(0, len(df) - 1))]]], ignore_index=True)
        elif kind == "drop":
            df = df.drop(columns=[draw(st.sampled_from(COLUMNS))], errors="ignore")
        elif kind == "single" and "arm" in df and "seed" in df:
            df = df[(df["arm"] != "x") | (df["seed"] == 0)]
        elif kind == "empty":
            df = df.iloc[:0]
    return df


def run_cli(main, argv):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def check(rc, err):
    assert rc in (0, 2), err
    assert "Traceback" not in err
    if rc == 2:
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and err.rstrip().endswith(errors[0].rstrip()), err


FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(table=tables(), name=st.sampled_from(["runs.csv", "my_runs.csv"]),
       extra=st.sampled_from([[], ["--pairs", "all"], ["--json"], ["--metric", "val_acc"],
                              ["--direction", "minimize"], ["--chance", "10"],
                              ["--failures", "learned"], ["--margin", "0.005"]]))
def test_compare_cli_never_crashes(table, name, extra):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        table.to_csv(path, index=False)
        rc, _, err = run_cli(compare_main, [str(path), *extra])
    check(rc, err)


@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(table=tables(), name=st.sampled_from(["runs.csv", "my_runs.csv"]))
def test_report_cli_never_crashes(table, name):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        table.to_csv(path, index=False)
        rc, _, err = run_cli(report_main, [str(path), "--out", str(Path(tmp) / "out"),
                                           "--no-note", "--dpi", "20"])
        import matplotlib.pyplot as plt

        plt.close("all")
    check(rc, err)


@pytest.mark.parametrize("module", ["analysis.compare", "analysis.report"])
def test_real_subprocess_gives_one_line_and_exit_2(tmp_path, module):
    pd.DataFrame({"arm": ["baseline", "baseline", "x"], "seed": [0, 0, 0],
                  "test_acc": [70.0, 71.0, "oops"]}).to_csv(tmp_path / "bad.csv", index=False)
    args = [str(tmp_path / "bad.csv")] + (["--out", str(tmp_path / "o"), "--no-note"]
                                          if module == "analysis.report" else [])
    res = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and res.stderr.count("\n") == 1
    assert "is not a number in row(s) 4" in res.stderr
