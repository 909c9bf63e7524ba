"""`--data` / `--data-root` reach a module experiment's workers (issue 24): the runner sets
$SEEDWISE_DATA / $SEEDWISE_DATA_ROOT (absolute paths) in every worker's environment (joblib
processes, the forked child of a timed run, a `train_many` group, a command), and
study.cifar.experiment loads the source they name, once per source."""

import os

import pytest

from analysis.contract import COMPLETE
from study import run_study
from study.cifar import experiment as cifar_experiment
from study.experiment import DATA_ENV, DATA_ROOT_ENV, InputError

READER = '''
import json, os, sys


def seen(seed):
    return {"val_loss": 1.0 / (seed + 1), "info": {"data_seen": os.environ.get("SEEDWISE_DATA", "-"),
            "root_seen": os.environ.get("SEEDWISE_DATA_ROOT", "-"), "pid": os.getpid()}}


def train(config, seed):
    return seen(seed)


def train_many(config, seeds):
    return [seen(s) for s in seeds]


if __name__ == "__main__":
    print(json.dumps(seen(int(sys.argv[1]))))
'''


@pytest.fixture
def study_folder(tmp_path, monkeypatch):
    folder = tmp_path / "speech_augment"
    folder.mkdir()
    (folder / "reader.py").write_text(READER)
    (tmp_path / "librispeech_subset").mkdir()
    monkeypatch.chdir(tmp_path)  # --data given relative to where the command runs
    for name in (DATA_ENV, DATA_ROOT_ENV):
        monkeypatch.delenv(name, raising=False)
    return folder


def spec(folder, head: str):
    path = folder / "spec.toml"
    path.write_text(f'{head}\nname = "augment"\nseeds = 4\n[base]\nspecaugment = false\n'
                    '[analysis]\nmetric = "val_loss"\n[arms.baseline]\n[arms.specaugment]\nspecaugment = true\n')
    return path


@pytest.mark.parametrize(("head", "how"), [
    ('experiment = "reader:train"', {"jobs": 2}),  # loky worker processes
    ('experiment = "reader:train"', {"jobs": 1, "timeout": 60}),  # each run in a forked child
    ('experiment = "reader:train"', {"jobs": 2, "group": 2}),  # train_many in a worker
    ('command = "python reader.py {seed}"', {"jobs": 2}),  # a program, run in the spec's folder
])
def test_data_reaches_every_worker_as_an_absolute_path(study_folder, head, how):
    result = run_study(spec(study_folder, head), results=study_folder.parent / "results", data="librispeech_subset",
                       data_root="corpora", **how)
    assert result.exit_code == 0
    runs = result.runs
    assert (runs["status"] == COMPLETE).all() and len(runs) == 8
    assert set(runs["data_seen"]) == {str(study_folder.parent / "librispeech_subset")}
    assert set(runs["root_seen"]) == {str(study_folder.parent / "corpora")}
    if how["jobs"] == 2 and "command" not in head:
        assert os.getpid() not in set(runs["pid"])  # really other processes
    assert DATA_ENV not in os.environ and DATA_ROOT_ENV not in os.environ  # the runner's own is left as it was


def test_without_data_the_workers_environment_is_the_users(study_folder, monkeypatch):
    monkeypatch.setenv(DATA_ENV, "/datasets/from-the-shell")
    result = run_study(spec(study_folder, 'experiment = "reader:train"'), results=study_folder.parent / "results",
                       jobs=1, timeout=60)
    assert result.exit_code == 0 and set(result.runs["data_seen"]) == {"/datasets/from-the-shell"}
    assert set(result.runs["root_seen"]) == {"-"}  # the default --data-root is not exported


def test_a_data_path_that_does_not_exist_stops_before_anything_is_stored(study_folder):
    with pytest.raises(InputError, match="--data points to .*librispeech_full', which does not exist"):
        run_study(spec(study_folder, 'experiment = "reader:train"'), results="results", data="librispeech_full")
    assert not (study_folder.parent / "results").exists()


def test_the_builtin_module_loads_the_source_the_environment_names_once_per_source(monkeypatch):
    loads: list[tuple] = []
    monkeypatch.setattr("study.cifar.data.load_cifar10", lambda data, root: loads.append((data, root)) or len(loads))
    cifar_experiment.use_source()
    try:
        monkeypatch.setenv(DATA_ENV, "/data/cifar10-jpeg.tar.gz")
        monkeypatch.setenv(DATA_ROOT_ENV, "/data/root")
        assert cifar_experiment.dataset() == cifar_experiment.dataset() == 1  # loaded once
        monkeypatch.delenv(DATA_ENV)  # another study in the same worker, without --data
        assert cifar_experiment.dataset() == 2
        assert loads == [("/data/cifar10-jpeg.tar.gz", "/data/root"), (None, "/data/root")]
        cifar_experiment.use_source("/explicit", "/explicit-root")  # the process's own choice wins
        assert cifar_experiment.dataset() == 3 and loads[-1] == ("/explicit", "/explicit-root")
        cifar_experiment.use_data("installed")  # type: ignore[arg-type]
        monkeypatch.setenv(DATA_ENV, "/elsewhere")
        assert cifar_experiment.dataset() == "installed"
    finally:
        cifar_experiment.use_source()


def test_data_reaches_dask_workers(study_folder):
    """A Dask worker was started before the study, from another shell: the path travels with each task."""
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        worker_pids = set(client.run(os.getpid).values())
        result = run_study(spec(study_folder, 'experiment = "reader:train"'), results=study_folder.parent / "results",
                           data="librispeech_subset", backend="dask", scheduler=cluster.scheduler_address, jobs=2)
    assert result.exit_code == 0
    assert set(result.runs["data_seen"]) == {str(study_folder.parent / "librispeech_subset")}
    assert set(result.runs["pid"]) <= worker_pids
