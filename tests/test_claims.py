"""Several workers on one study: atomic claims, and real concurrent processes."""

import os
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest
import sqlalchemy as sa

from study.claims import Claims


@pytest.fixture
def engine(tmp_path):
    return sa.create_engine(f"sqlite:///{tmp_path / 'claims.db'}")


OPEN_STORE = """
import sys, time
from pathlib import Path
from study.store import RunStore
(Path(sys.argv[1]) / f"ready-{sys.argv[2]}").touch()
go = Path(sys.argv[1]) / "go"
while not go.exists():  # imports done: all workers open the new study at the same moment
    time.sleep(0.01)
RunStore(Path(sys.argv[1]) / "study", "s", "identity", ("a", "b"), {"k": 1})
"""


def test_workers_opening_a_new_sqlite_study_together_all_succeed(tmp_path):
    # Optuna creates its tables outside one transaction; without the lock next to study.db, some
    # of several workers started together failed with "table studies already exists" (CI, stop 18).
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_STORE, str(tmp_path), str(i)], stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": os.getcwd()}) for i in range(8)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    (tmp_path / "go").touch()
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [e[-400:] for e in errors if e]


def test_a_run_is_claimed_once(engine):
    a, b = Claims(engine, "s"), Claims(engine, "s")
    assert a.claim("baseline", 0) and not b.claim("baseline", 0)
    assert b.claim("baseline", 1)  # other runs are free
    assert Claims(engine, "other-study").claim("baseline", 0)  # claims are per study
    assert b.busy_elsewhere() == [("baseline", 0)]
    a.release("baseline", 0)
    assert b.claim("baseline", 0)
    b.finish("baseline", 0)  # its result is stored: nobody trains it again, nor takes it over
    assert a.claim_run("baseline", 0) == "done" and b.claim_run("baseline", 2) == "mine"
    assert a.claim_run("baseline", 1) == "busy" and b.busy_elsewhere() == []
    with a.engine.begin() as con:  # a done mark never goes stale
        con.execute(a.table.update().values(heartbeat=0.0))
    assert a.claim_run("baseline", 0) == "done"
    a.close(), b.close()


def test_a_dead_workers_claim_is_taken_over(engine):
    a = Claims(engine, "s")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # a pid that no longer exists
    with engine.begin() as con:
        con.execute(a.table.insert().values(study="s", arm="x", seed=0, owner=f"{socket.gethostname()}:{dead}:zz",
                                            heartbeat=time.time()))
        con.execute(a.table.insert().values(study="s", arm="x", seed=1, owner="elsewhere:1:zz",
                                            heartbeat=time.time() - 3600))  # heartbeat stopped
        con.execute(a.table.insert().values(study="s", arm="x", seed=2, owner="elsewhere:1:zz",
                                            heartbeat=time.time()))  # alive on another host
    assert a.claim("x", 0) and a.claim("x", 1) and not a.claim("x", 2)
    a.close()


def test_concurrent_workers_split_the_study_without_duplicates(tmp_path):
    from conftest import data_source

    if data_source() is None:
        pytest.skip("no CIFAR-10 source")
    cmd = [sys.executable, "-m", "study.run", "--preset", "smoke", "--results", str(tmp_path), "--seeds", "4",
           "--jobs", "1", "--set", "train_size=300", "--set", "val_size=100", "--set", "test_size=100",
           "--set", "width=4"]
    env = {**os.environ, "SEEDWISE_DATA": data_source(), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-1500:] for o in outs]
    trained = [o[1].count(": test_acc ") for o in outs]
    assert sum(trained) == 20, trained  # every run trained exactly once across the workers
    assert sum(n > 0 for n in trained) >= 2, trained  # and the work was really shared
    (study_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    import sqlite3

    with sqlite3.connect(study_dir / "study.db") as con:
        n_trials = con.execute("select count(*) from trials").fetchone()[0]
        leftover = con.execute("select count(*) from seedwise_claims where owner != 'done'").fetchone()[0]
        marked_done = con.execute("select count(*) from seedwise_claims where owner = 'done'").fetchone()[0]
    assert n_trials == 20 and leftover == 0 and marked_done == 20
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0 and "nothing to do" in rerun.stderr
    runs = pd.read_csv(study_dir / "runs.csv")
    assert len(runs) == 20 and not runs.duplicated(["arm", "seed"]).any()


def test_a_study_deleted_and_made_again_runs_its_runs_again(tmp_path):
    """`optuna delete-study` removes a study's trials but not seedwise's claims beside them: the
    study made again under the same name found every run marked done and trained nothing,
    silently (a user dropping an old confirmation to confirm a new tuning winner)."""
    import optuna

    from study.store import RunStore

    store = RunStore(tmp_path / "study", "s-tuned", "identity-1", ("baseline", "tuned"), {})
    claims = store.claims()
    assert claims.claim_run("tuned", 0) == "mine"
    claims.finish("tuned", 0)  # as the runner marks a stored run
    claims.close()
    optuna.delete_study(study_name="s-tuned", storage=store.url)
    again = RunStore(tmp_path / "study", "s-tuned", "identity-2", ("baseline", "tuned"), {}).claims()
    assert again.claim_run("tuned", 0) == "mine"
    again.close()
