"""Runs dispatched through joblib to a real Dask distributed cluster started by the test."""

import os
import subprocess
import sys

import pandas as pd
import pytest

distributed = pytest.importorskip("dask.distributed")


@pytest.mark.slow  # the same dispatch as the user-experiment Dask test, which stays in the default suite
def test_study_runs_on_a_local_dask_cluster(tmp_path):
    from conftest import data_source

    if data_source() is None:
        pytest.skip("no CIFAR-10 source")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        worker_pids = set(client.run(os.getpid).values())
        cmd = [sys.executable, "-m", "study.run", "--preset", "smoke", "--results", str(tmp_path), "--seeds", "2",
               "--arms", "baseline,no_bn", "--set", "train_size=300", "--set", "width=4",
               "--backend", "dask", "--scheduler", cluster.scheduler_address]
        env = {**os.environ, "SEEDWISE_DATA": data_source()}
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    (study_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    runs = pd.read_csv(study_dir / "runs.csv")
    assert len(runs) == 4 and set(runs["status"]) == {"complete"}
    from study.spec import load_spec
    from study.store import RunStore

    spec = load_spec()
    store = RunStore(study_dir, study_dir.name, spec.identity("smoke", {"train_size": 300, "width": 4}),
                     spec.arm_names, {})
    ran_on = {int(t.user_attrs["worker"].rsplit(":", 1)[1]) for t in store.trials()}
    assert ran_on <= worker_pids  # every run executed in a Dask worker process


def test_backend_errors_are_one_line(tmp_path):
    cmd = [sys.executable, "-m", "study.run", "--preset", "smoke", "--results", str(tmp_path), "--seeds", "1"]
    env = {**os.environ}
    res = subprocess.run([*cmd, "--backend", "dask"], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2 and "--backend dask needs --scheduler" in res.stderr
    res = subprocess.run([*cmd, "--backend", "dask", "--scheduler", "tcp://127.0.0.1:9"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert res.returncode == 2 and "cannot reach the Dask scheduler" in res.stderr and "Traceback" not in res.stderr


def test_a_user_experiment_runs_on_a_local_dask_cluster(tmp_path):
    """A function experiment is imported inside the Dask workers (the spec's folder on their path)."""
    pytest.importorskip("sklearn")
    from pathlib import Path

    spec = Path(__file__).resolve().parents[1] / "examples" / "digits" / "spec.toml"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        worker_pids = set(client.run(os.getpid).values())
        cmd = [sys.executable, "-m", "study.run", "--spec", str(spec), "--results", str(tmp_path), "--seeds", "1",
               "--arms", "baseline,tanh", "--backend", "dask", "--scheduler", cluster.scheduler_address]
        res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    runs = pd.read_csv(tmp_path / "digits-mlp" / "runs.csv")
    assert len(runs) == 2 and set(runs["status"]) == {"complete"}
    assert {int(w.rsplit(":", 1)[1]) for w in runs["worker"]} <= worker_pids
