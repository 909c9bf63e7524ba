"""Several workers on one PostgreSQL study (the multi-machine recipe), on a real server.

.ci/run starts a throwaway server on loopback and sets SEEDWISE_TEST_POSTGRES; elsewhere these
tests skip.
"""

import os
import subprocess
import sys
import uuid

import pytest

URL = os.environ.get("SEEDWISE_TEST_POSTGRES")
pytestmark = pytest.mark.skipif(not URL, reason="no PostgreSQL server (SEEDWISE_TEST_POSTGRES unset)")


def test_workers_on_one_postgres_study_train_each_run_once(tmp_path):
    from conftest import data_source

    if data_source() is None:
        pytest.skip("no CIFAR-10 source")
    name = f"pg-{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, "-m", "study.run", "--preset", "smoke", "--results", str(tmp_path), "--seeds", "3",
           "--jobs", "1", "--storage", URL, "--study", name, "--set", "train_size=300", "--set", "width=4",
           "--set", "val_size=100", "--set", "test_size=100"]
    env = {**os.environ, "SEEDWISE_DATA": data_source(), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    assert sum(o[1].count(": test_acc ") for o in outs) == 15  # 5 arms x 3 seeds, each trained once
    assert all("postgres@" in o[1] for o in outs)  # the storage is named (user, no password)
    import optuna

    trials = optuna.load_study(study_name=name, storage=URL).get_trials()
    keys = [(t.params["arm"], t.user_attrs["seed"]) for t in trials]
    assert len(keys) == 15 and len(set(keys)) == 15


def test_workers_on_one_postgres_study_run_a_user_experiment_once(tmp_path):
    """The same recipe for a user's command experiment (examples/command), no CIFAR needed."""
    pytest.importorskip("sklearn")
    from pathlib import Path

    spec = Path(__file__).resolve().parents[1] / "examples" / "command" / "spec.toml"
    name = f"pg-user-{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, "-m", "study.run", "--spec", str(spec), "--results", str(tmp_path), "--seeds", "2",
           "--jobs", "1", "--storage", URL, "--study", name]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    assert sum(o[1].count(": test_error ") for o in outs) == 6  # 3 arms x 2 seeds, each run once
    import optuna

    trials = optuna.load_study(study_name=name, storage=URL).get_trials()
    assert len({(t.params["arm"], t.user_attrs["seed"]) for t in trials}) == len(trials) == 6
