"""Faults of the machine, done for real: a full disk and a read-only one (small tmpfs mounts).

Mounting needs root (as on this project's machines and CI); elsewhere these tests skip.
"""

import os
import subprocess
import sys

import numpy as np
import optuna
import pandas as pd
import pytest
from conftest import data_source

from study.store import trial_predictions

pytestmark = pytest.mark.skipif(data_source() is None, reason="no CIFAR-10 source (set SEEDWISE_DATA)")
STUDY = "notebook-ablation-smoke"


def run(results, storage, *args):
    cmd = [sys.executable, "-m", "study.run", "--preset", "smoke", "--arms", "baseline", "--results", str(results),
           "--storage", storage, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SEEDWISE_DATA": data_source()})


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs: a real file system that really fills up."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk, leave_bytes: int):
    st = os.statvfs(disk)
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave_bytes))


def stored(db):
    study = optuna.load_study(study_name=STUDY, storage=db)
    return sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)


@pytest.mark.slow  # trains a study on a tiny tmpfs; the default suite keeps the disk-full-before-any-run test
def test_disk_full_while_storing_predictions_fails_those_runs_only(small_disk, tmp_path):
    """16 KiB left: study.json and test_labels.npy fit, then at most two runs' predictions. The
    runs that cannot store theirs are recorded as failed with the reason, the others complete,
    no partial file is left, and after space is freed the same command redoes only the failed."""
    db = f"sqlite:///{tmp_path / 'study.db'}"  # the database lives elsewhere; the results disk fills
    fill(small_disk, 16 * 1024)
    first = run(small_disk, db, "--seeds", "4")
    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stderr
    trials = stored(db)
    assert sorted(t.user_attrs["seed"] for t in trials) == [0, 1, 2, 3]
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert failed and len(failed) + len(complete) == 4
    for t in failed:
        assert "No space left on device" in t.user_attrs["error"] and t.user_attrs["status"] == "failed"
    artifacts = small_disk / STUDY / "artifacts"
    store = optuna.artifacts.FileSystemArtifactStore(str(artifacts))
    for t in complete:  # every stored prediction file is whole
        assert trial_predictions(store, t).shape == (1000,)
    assert len(list(artifacts.iterdir())) == len(complete)  # and nothing else is there
    values = {t.number: t.value for t in complete}

    (small_disk / "filler").unlink()
    second = run(small_disk, db, "--seeds", "4")
    assert second.returncode == 0, second.stderr
    trials = stored(db)
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.user_attrs["seed"] for t in done) == [0, 1, 2, 3]
    assert {t.number: t.value for t in done if t.number in values} == values  # kept unchanged
    for t in done:
        assert trial_predictions(store, t).shape == (1000,)
    runs = pd.read_csv(small_disk / STUDY / "runs.csv")  # exported whole once there is room
    assert (runs["status"] == "complete").sum() == 4 and (runs["status"] == "failed").sum() == len(failed)
    assert not list((small_disk / STUDY).glob(".*.tmp"))


def test_disk_full_before_any_run_is_one_line_and_exit_2(small_disk, tmp_path):
    fill(small_disk, 0)
    res = run(small_disk, f"sqlite:///{tmp_path / 'study.db'}", "--seeds", "1")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "No space left on device" in res.stderr and res.stderr.strip().count("\n") <= 1


@pytest.mark.parametrize("storage", ["default", "elsewhere"])
def test_read_only_results_directory_is_one_line_and_exit_2(small_disk, tmp_path, storage):
    """The study's directory exists but its file system is read-only. Nothing is created in
    the storage either (an external database gets no half-made study)."""
    (small_disk / STUDY).mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    db = f"sqlite:///{tmp_path / 'study.db'}"
    res = run(small_disk, db if storage == "elsewhere" else f"sqlite:///{small_disk / STUDY / 'study.db'}",
              "--seeds", "1")
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and res.stderr.strip().count("\n") <= 1
    assert "Read-only file system" in res.stderr or "readonly" in res.stderr.lower() or \
        "unable to open" in res.stderr
    if storage == "elsewhere":
        assert not (tmp_path / "study.db").exists() or not optuna.get_all_study_names(db)
    assert not np.any([p.is_file() for p in (small_disk / STUDY).rglob("*")])


def test_a_run_that_cannot_be_stored_leaves_no_orphan_predictions(tmp_path, monkeypatch):
    """The database refuses the trial after its predictions were written: the file goes too."""
    from study.experiment import Outcome
    from study.spec import load_spec
    from study.store import RunStore

    spec = load_spec()
    store = RunStore(tmp_path / STUDY, STUDY, spec.identity("smoke"), spec.arm_names, {})
    result = Outcome(status="complete", metrics={"test_acc": 50.0, "val_acc": 50.0},
                     predictions=np.zeros(1000, np.uint8), wall_time_s=1.0)

    def record_run(store, arm, seed, outcome, attrs):
        store.record_outcome(arm, seed, outcome, attrs, "test_acc")

    def database_gone(trial):
        raise RuntimeError("database is locked")

    monkeypatch.setattr(store.study, "add_trial", database_gone)
    with pytest.raises(RuntimeError, match="locked"):
        record_run(store, "baseline", 0, result, {})
    assert list((tmp_path / STUDY / "artifacts").iterdir()) == []
    monkeypatch.undo()
    record_run(store, "baseline", 0, result, {})
    assert len(list((tmp_path / STUDY / "artifacts").iterdir())) == 1 and len(store.trials()) == 1
