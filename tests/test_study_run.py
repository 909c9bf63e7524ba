"""End to end: the real CLI on the real CIFAR-10 copy, smoke preset, in subprocesses."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from conftest import data_source

from study.spec import load_spec
from study.store import RunStore

pytestmark = pytest.mark.skipif(data_source() is None, reason="no CIFAR-10 source (set SEEDWISE_DATA)")


def run_cli(*args, tmp_path, timeout=300, env=None):
    cmd = [sys.executable, "-m", "study.run", "--preset", "smoke", "--results", str(tmp_path), *args]
    env = {**os.environ, "SEEDWISE_DATA": data_source(), **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def open_store(tmp_path, name="notebook-ablation-smoke"):
    spec = load_spec()
    return RunStore(tmp_path / name, name, spec.identity("smoke"), spec.arm_names, {})


def test_smoke_study_end_to_end_and_resume(tmp_path):
    first = run_cli("--seeds", "2", "--jobs", "2", tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "baseline" in first.stdout and "diff vs baseline" in first.stdout
    out = tmp_path / "notebook-ablation-smoke"
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 10 and set(runs["status"]) == {"complete"}
    assert sorted(runs.groupby("arm")["n_bn"].first().to_dict().items()) == sorted(
        {"baseline": 6, "no_scheduler": 6, "no_bn": 0, "notebook_no_bn": 1, "alternating_bn": 3}.items())
    # pairing: the same seed has the same init hash in every arm (equal architectures)
    assert runs.groupby("seed")["init_hash"].nunique().eq(1).all()
    assert runs["data_fingerprint"].nunique() == 1 and runs["git_commit"].notna().all()
    epochs = pd.read_csv(out / "epochs.csv")
    assert len(epochs) == 10 * 2
    lr = epochs.pivot_table(index="arm", columns="epoch", values="lr", aggfunc="first")
    assert lr.loc["baseline"].tolist() == [0.1, 0.05] and lr.loc["no_scheduler"].tolist() == [0.1, 0.1]
    study_json = json.loads((out / "study.json").read_text())
    assert study_json["preset"] == "smoke" and study_json["arms"]["notebook_no_bn"]["config"]["bn"] == [4]

    store = open_store(tmp_path)
    trials = store.trials()
    assert len(trials) == 10
    t = trials[0]
    assert t.params == {"arm": t.user_attrs["arm"]} and t.value == pytest.approx(t.user_attrs["metrics"]["test_acc"])
    assert sorted(t.intermediate_values) == [1, 2]
    preds = store.predictions(t)
    assert preds.shape == (1000,) and preds.dtype == np.uint8
    import optuna.artifacts

    assert [m.filename for m in optuna.artifacts.get_all_artifact_meta(t, storage=store.storage)] == ["test_predictions.npy"]

    again = run_cli("--seeds", "2", tmp_path=tmp_path)
    assert again.returncode == 0 and "nothing to do" in again.stderr
    assert len(open_store(tmp_path).trials()) == 10

    more = run_cli("--seeds", "3", "--arms", "baseline,no_bn", "--jobs", "1", tmp_path=tmp_path)
    assert more.returncode == 0, more.stderr
    new = pd.read_csv(out / "runs.csv")
    assert len(new) == 12 and set(new[new["seed"] == 2]["arm"]) == {"baseline", "no_bn"}


def test_dry_run_shows_plan_and_trains_nothing(tmp_path):
    res = run_cli("--seeds", "3", "--dry-run", tmp_path=tmp_path)
    assert res.returncode == 0
    assert "5 arms x 3 seeds" in res.stdout and "ETA" in res.stdout and "15 to do" in res.stdout
    assert not (tmp_path / "notebook-ablation-smoke").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--arms", "baseline,no_nb"], "did you mean 'no_bn'"),
    (["--set", "epoch=3"], "did you mean 'epochs'"),
    (["--seeds", "0"], "--seeds must be a positive integer"),
    (["--group", "0"], "--group must be a positive integer"),
    (["--data", "/nonexistent/cifar.tar.gz"], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    res = run_cli(*args, tmp_path=tmp_path)
    assert res.returncode == 2
    assert message in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") <= 1


def test_storage_errors_are_one_line_and_hide_passwords(tmp_path):
    not_db = tmp_path / "not.db"
    garbage = os.urandom(5000)
    not_db.write_bytes(garbage)
    res = run_cli("--storage", f"sqlite:///{not_db}", tmp_path=tmp_path)
    assert res.returncode == 2 and "file is not a database" in res.stderr and "Traceback" not in res.stderr
    assert not_db.read_bytes() == garbage  # nothing written into it
    res = run_cli("--storage", "postgresql://user:s3cret@127.0.0.1:9/db", tmp_path=tmp_path)
    assert res.returncode == 2 and "s3cret" not in res.stderr + res.stdout and "***" in res.stderr


def test_corrupt_archive_is_a_clear_error(tmp_path):
    bad = tmp_path / "cifar.tar.gz"
    bad.write_bytes(os.urandom(4096))
    res = run_cli("--data", str(bad), tmp_path=tmp_path, env={"SEEDWISE_CACHE": str(tmp_path / "cache")})
    assert res.returncode == 2 and "not a readable tar archive" in res.stderr and "Traceback" not in res.stderr


def test_results_of_another_spec_never_mix(tmp_path):
    assert run_cli("--seeds", "1", "--arms", "baseline", "--study", "x", tmp_path=tmp_path).returncode == 0
    clash = run_cli("--seeds", "1", "--arms", "baseline", "--study", "x", "--set", "epochs=1", tmp_path=tmp_path)
    assert clash.returncode == 2 and "different spec" in clash.stderr
    assert len(pd.read_csv(tmp_path / "x" / "runs.csv")) == 1


def test_a_failing_run_is_recorded_and_the_study_goes_on(tmp_path):
    # lr = 1e6 diverges (a recorded outcome, not a failure); the study still finishes
    res = run_cli("--seeds", "1", "--arms", "baseline,no_bn", "--set", "lr=1e6", tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    runs = pd.read_csv(next(tmp_path.iterdir()) / "runs.csv")
    assert set(runs["status"]) == {"diverged"} and runs["diverged_epoch"].eq(1).all()
    assert "DIVERGED" in res.stderr


def test_seeds_trained_together_are_recorded_as_a_group(tmp_path):
    res = run_cli("--seeds", "2", "--arms", "baseline", "--group", "2", tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "up to 2 seed(s) per train_many call" in res.stderr
    runs = pd.read_csv(tmp_path / "notebook-ablation-smoke" / "runs.csv")
    assert runs["group"].tolist() == ["0 1", "0 1"] and set(runs["status"]) == {"complete"}
    assert runs["init_hash"].nunique() == 2


def stored_trials(db) -> dict[int, float]:
    with sqlite3.connect(db / "study.db") as con:
        rows = con.execute("select t.number, v.value from trials t join trial_values v "
                           "on t.trial_id = v.trial_id where t.state = 'COMPLETE'").fetchall()
    return dict(rows)


# SIGTERM takes the same path as Ctrl-C (dispatch._terminate raises KeyboardInterrupt), so it
# runs with -m slow: each case trains a whole smoke study, about a minute on 2 cores.
@pytest.mark.parametrize("sig", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow),
                                 signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_signal_then_rerun_keeps_every_finished_run(tmp_path, sig):
    """Ctrl-C / SIGTERM stop cleanly; even kill -9 loses only the run in flight: the rerun
    keeps every stored run unchanged and ends with exactly the planned runs, no duplicates."""
    cmd = [sys.executable, "-m", "study.run", "--preset", "smoke", "--results", str(tmp_path),
           "--seeds", "4", "--jobs", "1", "--set", "train_size=2000"]
    env = {**os.environ, "SEEDWISE_DATA": data_source()}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    db = None
    deadline = time.time() + 480  # generous: a loaded 2-core CI machine trains a smoke run in ~30 s
    while time.time() < deadline:  # wait until a few runs are stored
        dirs = list(tmp_path.iterdir())
        if dirs and (dirs[0] / "study.db").exists():
            db = dirs[0]
            try:
                if len(stored_trials(db)) >= 2:
                    break
            except sqlite3.OperationalError:  # the schema is still being created
                pass
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"two runs were not stored within 480 s: {proc.communicate()[1][-2000:]}")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130, err
        assert "rerun the same command to continue" in err and "Traceback" not in err
    before = stored_trials(db)
    assert 2 <= len(before) < 20
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    after = stored_trials(db)
    assert len(after) == 20 and all(after[n] == v for n, v in before.items())  # earlier runs untouched
    final = pd.read_csv(db / "runs.csv")
    assert len(final) == 20 and not final.duplicated(["arm", "seed"]).any()


@pytest.mark.parametrize("device", ["cuda", "cuda:3", "banana", "mps"])
def test_a_device_this_machine_lacks_is_one_line_and_exit_2_with_nothing_stored(tmp_path, device, capsys):
    """Not a failed run per planned run on every rerun: bad input, refused before any storage."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 3:
        pytest.skip("this machine has the device")
    from study import run as study_run

    code = study_run.main(["--preset", "smoke", "--seeds", "1", "--results", str(tmp_path), "--device", device])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: --device") and device in err[-1]
    assert list(tmp_path.iterdir()) == []  # no study.db, no study.json

