"""A user's own experiment, unknown to seedwise, through the whole toolkit (issue 11).

The examples in examples/ run end to end on scikit-learn's digits: run, kill and resume, two
workers on one storage, compare, report, tuning. The contract's edges (failures, divergence,
pairing, bad specs) are checked with tiny numpy experiments written into tmp_path."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits" / "spec.toml"
COMMAND = ROOT / "examples" / "command" / "spec.toml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
pytest.importorskip("sklearn")


def cli(module: str, *args, timeout=240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=ENV, cwd=ROOT)


def trials(db: Path) -> list[tuple[str, int]]:
    """(arm, seed) of every stored run, read straight from the SQLite file (none while the
    storage is still being created)."""
    if not db.exists():
        return []
    with sqlite3.connect(db) as con:
        if not con.execute("select 1 from sqlite_master where name = 'trial_user_attributes'").fetchone():
            return []
        rows = con.execute("select a.value_json, s.value_json from trial_user_attributes a join "
                           "trial_user_attributes s on a.trial_id = s.trial_id "
                           "where a.key = 'arm' and s.key = 'seed'").fetchall()
    return [(json.loads(a), json.loads(s)) for a, s in rows]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The PyTorch example, 4 arms x 2 seeds, run once for the tests that read its results."""
    root = tmp_path_factory.mktemp("digits")
    res = cli("study.run", "--spec", DIGITS, "--seeds", 2, "--results", root, "--jobs", 2)
    assert res.returncode == 0, res.stderr[-3000:]
    return root / "digits-mlp", res


def test_function_experiment_is_recorded_like_the_builtin(digits):
    out, res = digits
    assert "test_acc (higher is better) per arm" in res.stdout and "paired, n=2" in res.stdout
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 8 and set(runs["status"]) == {"complete"}
    assert list(runs.columns[:6]) == ["arm", "seed", "status", "test_acc", "val_acc", "train_loss"]
    assert runs["git_commit"].notna().all() and runs["config_hash"].nunique() == 4
    assert (runs["epochs_run"] == 8).all()
    epochs = pd.read_csv(out / "epochs.csv")
    assert list(epochs.columns) == ["arm", "seed", "epoch", "train_loss", "val_acc"] and len(epochs) == 8 * 8
    meta = json.loads((out / "study.json").read_text())
    assert meta["experiment"] == "digits:train" and meta["preset"] is None
    assert meta["analysis"] == {"metric": "test_acc", "baseline": "baseline", "alpha": 0.05, "margin": 1.0,
                                "direction": "maximize", "chance": 10.0}
    assert meta["arms"]["tanh"]["config"]["activation"] == "tanh"
    # per-example predictions, stored as the built-in stores them, against one labels file
    labels = np.load(out / "test_labels.npy")
    assert labels.shape == (400,)
    sys.path.insert(0, str(ROOT))
    from analysis.load import load_study

    seeds, correct = load_study(out).correct_matrix("baseline")
    assert seeds == [0, 1] and correct.shape == (2, 400)
    assert correct.mean() * 100 == pytest.approx(runs[runs["arm"] == "baseline"]["test_acc"].mean())


def test_rerun_with_everything_done_trains_nothing(digits):
    out, _ = digits
    res = cli("study.run", "--spec", DIGITS, "--seeds", 2, "--results", out.parent)
    assert res.returncode == 0 and "nothing to do: all 8 runs of digits-mlp are done" in res.stderr
    assert len(trials(out / "study.db")) == 8


def test_compare_and_report_read_a_user_study(digits, tmp_path):
    out, _ = digits
    res = cli("analysis.compare", out, "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert {r["arm"] for r in rows} == {"tanh", "no_momentum", "dropout"}
    assert all(r["metric"] == "test_acc" and r["paired"] for r in rows)
    report = cli("analysis.report", out, "--out", tmp_path / "report", "--no-note")
    assert report.returncode == 0, report.stderr[-2000:]
    text = (tmp_path / "report" / "report.md").read_text()
    assert "no_momentum" in text and "test_acc" in text
    # Only what the data shows: nothing of the built-in experiment ("sign-flip" is a test's name).
    builtin = re.search(r"cifar|batchnorm|steplr|(?<!sign-)flip", text, re.IGNORECASE)
    assert builtin is None, text[max(0, builtin.start() - 200):builtin.end() + 200]
    assert "data order" in text  # it declares the streams it draws: the report says what seeds share


@pytest.fixture(scope="module")
def command_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("command")
    res = cli("study.run", "--spec", COMMAND, "--seeds", 3, "--results", root, "--jobs", 2)
    assert res.returncode == 0, res.stderr[-3000:]
    return root / "digits-softmax", res


def test_command_experiment_reads_the_last_json_line_and_keeps_a_log(command_study):
    out, res = command_study
    assert "test_error (lower is better) per arm" in res.stdout
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 9 and set(runs["status"]) == {"complete"}
    assert {"test_error", "val_error"} <= set(runs.columns) and runs["test_error"].between(0, 100).all()
    log = (out / "logs" / "l2-seed1.log").read_text().splitlines()
    assert log[0].startswith("$ ") and "--l2 0.001" in log[0] and "--seed 1" in log[0]
    final = json.loads(log[-1])
    row = runs[(runs["arm"] == "l2") & (runs["seed"] == 1)].iloc[0]
    assert row["test_error"] == final["test_error"]
    epochs = pd.read_csv(out / "epochs.csv")  # the JSON lines with "epoch" are the curves
    assert list(epochs.columns) == ["arm", "seed", "epoch", "val_error"] and len(epochs) == 9 * 5


def test_compare_follows_a_minimized_metric(command_study):
    """small_lr (lr 0.05 for 5 epochs) has a clearly *higher* test error than baseline."""
    out, _ = command_study
    res = cli("analysis.compare", out, "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = {r["arm"]: r for r in map(json.loads, filter(lambda s: s.startswith("{"), res.stdout.splitlines()))}
    assert rows["small_lr"]["diff"] > 3  # more errors: the arm is worse
    assert rows["small_lr"]["verdict"] == "worse"


def test_command_report_renders(command_study, tmp_path):
    out, _ = command_study
    report = cli("analysis.report", out, "--out", tmp_path / "report", "--no-note")
    assert report.returncode == 0, report.stderr[-2000:]
    assert "test_error" in (tmp_path / "report" / "report.md").read_text()


@pytest.mark.parametrize(("spec", "sig"), [
    pytest.param(DIGITS, signal.SIGKILL, marks=pytest.mark.slow), (COMMAND, signal.SIGKILL),
    pytest.param(DIGITS, signal.SIGINT, marks=pytest.mark.slow),
    pytest.param(COMMAND, signal.SIGINT, marks=pytest.mark.slow)])
def test_killed_study_resumes_without_training_anything_twice(tmp_path, spec, sig):
    """A real signal to the runner mid-study; the rerun does only what was not stored."""
    cmd = [sys.executable, "-m", "study.run", "--spec", str(spec), "--seeds", "2", "--results", str(tmp_path),
           "--jobs", "1", "--set", "epochs=15", "--study", "killed"]
    arms = ("baseline", "tanh", "no_momentum", "dropout") if spec == DIGITS else ("baseline", "l2", "small_lr")
    n = 2 * len(arms)
    metric = ": test_acc" if spec == DIGITS else ": test_error"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    db = tmp_path / "killed" / "study.db"
    # Interrupt once a run is stored: how many runs a loaded CI machine gets through in a given
    # time varies (a fixed 120 s wait once saw only one), so the test waits for a state, not a time.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not trials(db):
        time.sleep(0.1)
    assert trials(db), "no run was stored within 300 s"
    assert proc.poll() is None, "the study finished before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == (-9 if sig == signal.SIGKILL else 130), err[-2000:]
    before = set(trials(db))
    assert 1 <= len(before) < n
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=240)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{n - len(before)} runs to do ({len(before)} already done)" in rerun.stderr
    after = trials(db)
    assert len(after) == n and set(after) == {(a, s) for a in arms for s in range(2)}
    retrained = {line.split(":")[0] for line in rerun.stderr.splitlines() if " seed " in line and metric in line}
    assert not retrained & {f"{a} seed {s}" for a, s in before}


def test_two_workers_share_one_sqlite_study(tmp_path):
    cmd = [sys.executable, "-m", "study.run", "--spec", str(COMMAND), "--seeds", "2", "--results", str(tmp_path),
           "--jobs", "1"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
             for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    trained = [o[1].count(": test_error ") for o in outs]
    # Each run trained exactly once between the two. Whether the second worker gets any run
    # depends on how fast it starts (imports) on a loaded machine, so that is not asserted.
    assert sum(trained) == 6, trained
    runs = pd.read_csv(tmp_path / "digits-softmax" / "runs.csv")
    assert len(runs) == 6 and not runs.duplicated(["arm", "seed"]).any()
    assert runs["worker"].nunique() == sum(1 for n in trained if n)


def test_tuning_a_function_experiment_then_confirming(digits, tmp_path):
    root = tmp_path
    res = cli("study.tune", "--spec", DIGITS, "--results", root, "--trials", 3, "--confirm", 2)
    assert res.returncode == 0, res.stderr[-3000:]
    import optuna

    study = optuna.load_study(study_name="digits-mlp-tune-baseline", storage=f"sqlite:///{root / 'digits-mlp' / 'study.db'}")
    done = study.get_trials(deepcopy=False)
    assert len(done) == 3 and all({"lr", "hidden"} == set(t.params) for t in done)
    assert all(0.001 <= t.params["lr"] <= 0.5 and 16 <= t.params["hidden"] <= 128 for t in done)
    assert study.user_attrs["objective"] == "val_acc" and [t.user_attrs["seed"] for t in done] == [100000, 100001, 100002]
    assert any(t.intermediate_values for t in done)  # report() rows reach the pruner
    sel = json.loads((root / "digits-mlp-tuned" / "selection.json").read_text())
    assert {r["arm"] for r in sel["rows"]} == {"baseline", "tuned"} and sel["objective"] == "val_acc"
    runs = pd.read_csv(root / "digits-mlp-tuned" / "runs.csv")
    assert sorted(zip(runs["arm"], runs["seed"], strict=True)) == [("baseline", 0), ("baseline", 1), ("tuned", 0), ("tuned", 1)]


PER_ARM = """
from study.seeds import rng


def train(config, seed, report=None):
    # each arm has its own best lr: at the baseline's, `steep` looks worse than it is
    val = -10 * (config["lr"] - config["best_lr"]) ** 2
    return {"val": val, "score": val + config["skill"] + 0.01 * float(rng(seed, "order").normal())}
"""


def test_tuning_several_arms_compares_them_tuned_vs_tuned(tmp_path):
    """Issue 14's fair ablation: each arm tuned in its own study, then every arm at its own best
    params on the same fresh seeds; the ablation's report shows that next to the fixed-lr answer."""
    import optuna

    from analysis.load import load_study
    from analysis.report import build_report

    (tmp_path / "perarm.py").write_text(PER_ARM)
    spec = tmp_path / "perarm.toml"
    spec.write_text('experiment = "perarm:train"\nname = "perarm"\nseeds = 3\n[base]\nlr = 0.5\nbest_lr = 0.5\n'
                    'skill = 0.0\n[analysis]\nmetric = "score"\n[arms.baseline]\n[arms.steep]\nbest_lr = 0.9\n'
                    '[tune]\nmetric = "val"\ndirection = "maximize"\nlr = {low = 0.0, high = 1.0}\n')
    res = cli("study.run", "--spec", spec, "--results", tmp_path, "--jobs", 1)
    assert res.returncode == 0, res.stderr[-3000:]
    res = cli("study.tune", "--spec", spec, "--results", tmp_path, "--arm", "baseline,steep",
              "--trials", 6, "--confirm", 3)
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "perarm-tuned-per-arm"
    record = json.loads((out / "per_arm.json").read_text())
    meta = json.loads((out / "study.json").read_text())
    assert [a["arm"] for a in record["arms"]] == ["baseline", "steep"] and meta["analysis"]["baseline"] == "baseline"
    lrs = {}
    for a in record["arms"]:
        tuning = optuna.load_study(study_name=a["tuning_study"], storage=f"sqlite:///{tmp_path / 'perarm' / 'study.db'}")
        assert a["tuning_study"] == f"perarm-tune-{a['arm']}" and len(tuning.trials) == 6
        assert a["params"] == tuning.best_trial.params  # its own best, not the baseline's
        lrs[a["arm"]] = meta["arms"][a["arm"]]["config"]["lr"]
        assert lrs[a["arm"]] == a["params"]["lr"]
    assert lrs["steep"] > lrs["baseline"] and meta["arms"]["steep"]["config"]["best_lr"] == 0.9
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(zip(runs["arm"], runs["seed"], strict=True)) == [(a, s) for a in ("baseline", "steep") for s in range(3)]
    assert "each arm at its own tuned params" in res.stdout
    table, _ = build_report(load_study(tmp_path / "perarm")).tables["tuned_per_arm"]
    row = table.set_index("arm").loc["steep"]
    # at the shared lr 0.5 `steep` loses 1.6 points of val; each at its own lr the gap nearly closes
    assert row["fixed lr: Δ [CI], Holm p"].startswith("\N{MINUS SIGN}1.6") and "(n = 3)" in row["fixed lr: Δ [CI], Holm p"]
    fixed_gap = float(row["fixed lr: Δ [CI], Holm p"].split()[0].replace("\N{MINUS SIGN}", "-"))
    tuned_gap = float(row["tuned per arm: Δ [CI], Holm p"].split()[0].replace("\N{MINUS SIGN}", "-"))
    assert abs(tuned_gap) < abs(fixed_gap) / 10 and row["fixed lr: verdict"] and row["tuned per arm: verdict"]
    # the paper's numbers for this comparison come from the same records (analysis.paper)
    from analysis.paper.tuning import per_arm_numbers, tuning_numbers
    from analysis.report.tuning import fixed_lr_counterpart

    n = {**per_arm_numbers("pa", out), **tuning_numbers(tmp_path / "perarm", "perarm", prefix="pa.tune")}
    steep = record["arms"][1]
    assert n["pa.steep.lr"] == f"{steep['params']['lr']:.3g}" and n["pa.steep.untuned_lr"] == "0.5"
    assert n["pa.steep.trial"] == str(steep["trial"]) and n["pa.seeds"] == "0-2" and n["pa.n_arms"] == "2"
    assert n["pa.tune.steep.n_trials"] == "6" and n["pa.tune.steep.best_trial"] == str(steep["trial"])
    assert n["pa.tune.steep.best.lr"] == n["pa.steep.lr"] and n["pa.tune.steep.space.lr.high"] == "1"
    fixed = fixed_lr_counterpart(load_study(tmp_path / "perarm"), load_study(out)).runs
    assert sorted(zip(fixed["arm"], fixed["seed"], strict=True)) == sorted(zip(runs["arm"], runs["seed"], strict=True))
    res = cli("study.tune", "--spec", spec, "--results", tmp_path, "--arm", "steep", "--arm", "steep,nope",
              "--confirm", 2)
    assert res.returncode == 2 and "'nope'" in res.stderr and "Traceback" not in res.stderr
    res = cli("study.tune", "--spec", spec, "--results", tmp_path, "--arm", "steep,steep", "--confirm", 2)
    assert res.returncode == 2 and "names an arm twice" in res.stderr


def test_tuning_a_command_minimizes_its_metric(tmp_path):
    res = cli("study.tune", "--spec", COMMAND, "--results", tmp_path, "--trials", 2)
    assert res.returncode == 0, res.stderr[-3000:]
    import optuna

    study = optuna.load_study(study_name="digits-softmax-tune-baseline",
                              storage=f"sqlite:///{tmp_path / 'digits-softmax' / 'study.db'}")
    assert study.direction == optuna.study.StudyDirection.MINIMIZE and len(study.trials) == 2
    assert study.best_value == min(t.value for t in study.trials) and "val_error" in res.stdout


# ---- the contract's edges, with tiny numpy experiments --------------------------------------
TINY = '''
import math
import os
from study.seeds import rng


def train(config, seed, report=None):
    if config["mode"] == "raise" and seed == 1 and not os.environ.get("TINY_FIXED"):
        raise RuntimeError("boom in seed 1")
    if config["mode"] == "nan":
        report(1, loss=1.0)
        report(2, loss=math.nan)
        return {"score": math.nan}
    order = rng(seed, "order").permutation(10)
    if report:
        report(1, score=float(order[0]))
    return {"score": float(order[0]) + config["shift"], "first": float(order[1])}
'''


def tiny_spec(tmp_path, arms: str, extra: str = "") -> Path:
    (tmp_path / "tiny.py").write_text(TINY)
    spec = tmp_path / "tiny.toml"
    spec.write_text(f'experiment = "tiny:train"\nname = "tiny"\nseeds = 3\n{extra}\n[base]\nmode = "ok"\n'
                    f'shift = 0.0\n\n[analysis]\nmetric = "score"\n\n{arms}')
    return spec


def test_same_seed_same_streams_in_every_arm_and_failures_are_retried(tmp_path):
    spec = tiny_spec(tmp_path, '[arms.baseline]\n[arms.shifted]\nshift = 1.5\n[arms.flaky]\nmode = "raise"\n'
                               '[arms.diverging]\nmode = "nan"\n')
    res = cli("study.run", "--spec", spec, "--results", tmp_path / "r", "--jobs", 1)
    assert res.returncode == 1 and "1 run(s) failed" in res.stderr
    runs = pd.read_csv(tmp_path / "r" / "tiny" / "runs.csv").set_index(["arm", "seed"])
    for seed in range(3):  # pairing: the seed's order stream is the same in every arm
        assert runs.loc[("shifted", seed), "score"] == runs.loc[("baseline", seed), "score"] + 1.5
        assert runs.loc[("shifted", seed), "first"] == runs.loc[("baseline", seed), "first"]
    assert runs.loc[("baseline", 0), "score"] != runs.loc[("baseline", 1), "score"]
    failed = runs.loc[("flaky", 1)]
    assert failed["status"] == "failed" and "RuntimeError: boom in seed 1" in failed["error"]
    assert set(runs.xs("diverging", level="arm")["status"]) == {"diverged"}
    assert set(runs.xs("diverging", level="arm")["diverged_epoch"]) == {2}
    # the rerun retries the failed run only (diverged is an outcome, not an accident)
    fixed = subprocess.run([sys.executable, "-m", "study.run", "--spec", str(spec), "--results", str(tmp_path / "r")],
                           capture_output=True, text=True, env={**ENV, "TINY_FIXED": "1"}, cwd=ROOT, timeout=120)
    assert fixed.returncode == 0 and "1 runs to do (11 already done)" in fixed.stderr, fixed.stderr[-1500:]
    # runs.csv keeps the failed attempt beside its retry; the verdicts read the retry: they
    # stopped with "(arm, seed) pair(s) appear more than once ... keep one row per run".
    runs = pd.read_csv(tmp_path / "r" / "tiny" / "runs.csv")
    assert list(runs.loc[(runs["arm"] == "flaky") & (runs["seed"] == 1), "status"]) == ["failed", "complete"]
    assert "none yet" not in fixed.stdout and "flaky - baseline" in fixed.stdout, fixed.stdout[-1500:]
    again = cli("analysis.compare", tmp_path / "r" / "tiny")
    assert again.returncode == 0 and "flaky - baseline: " in again.stdout, again.stderr[-1500:]


@pytest.mark.parametrize(("args", "extra", "message"), [
    (["--set", "shfit=2"], "", "unknown config key 'shfit' in --set (did you mean 'shift'?)"),
    (["--set", "shift=abc"], "", "`shift` in --set must be a number like its default 0.0"),
    (["--preset", "quick"], "", "declares no presets ([presets.NAME] tables) and runs exactly as written"),
    ([], "[tune]\nshfit = {low = 0, high = 1}\n", "[tune] names 'shfit', which is not a config key (did you mean 'shift'?)"),
])
def test_bad_user_specs_are_one_line_and_exit_2(tmp_path, args, extra, message):
    spec = tiny_spec(tmp_path, "[arms.baseline]\n")
    if extra:
        spec.write_text(spec.read_text() + extra)
    res = cli("study.run", "--spec", spec, "--results", tmp_path / "r", *args)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_an_arm_with_an_undeclared_key_or_a_missing_module_exits_2(tmp_path):
    spec = tiny_spec(tmp_path, "[arms.baseline]\n[arms.b]\nshit = 1.0\n")
    res = cli("study.run", "--spec", spec, "--results", tmp_path / "r")
    assert res.returncode == 2 and "unknown config key 'shit' in [arms.b]" in res.stderr
    assert "did you mean 'shift'" in res.stderr
    spec.write_text(spec.read_text().replace("tiny:train", "nosuchmodule:train").replace("shit", "shift"))
    res = cli("study.run", "--spec", spec, "--results", tmp_path / "r")
    assert res.returncode == 2 and "cannot import 'nosuchmodule'" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "r").exists()  # nothing was created


def test_a_failing_command_is_a_failed_run_with_its_log_tail(tmp_path):
    (tmp_path / "fail.py").write_text("import sys\nprint('step 1 ok')\nprint('CUDA went away', file=sys.stderr)\n"
                                      "sys.exit(3 if int(sys.argv[1]) else 0)\n")
    spec = tmp_path / "cmd.toml"
    spec.write_text('command = "python fail.py {crash}"\nname = "cmd"\nseeds = 1\n[base]\ncrash = 0\n'
                    '[analysis]\nmetric = "m"\ndirection = "maximize"\n[arms.baseline]\n[arms.crash]\ncrash = 1\n')
    res = cli("study.run", "--spec", spec, "--results", tmp_path / "r", "--jobs", 1)
    assert res.returncode == 1
    runs = pd.read_csv(tmp_path / "r" / "cmd" / "runs.csv").set_index("arm")
    assert "printed no JSON object line" in runs.loc["baseline", "error"]  # exit 0 but no metrics
    assert "exited with status 3" in runs.loc["crash", "error"] and "CUDA went away" in runs.loc["crash", "error"]
