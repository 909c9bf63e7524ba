"""A timed function run (`--timeout`) starts from a fork server, never as a fork of the caller:
a process whose torch has run OpenMP threads (a notebook, a pytest process that trained before)
used to fork children that deadlocked until their timeout. The child still sends back its
result, or its exception with the user's traceback; it never reruns the caller's script; and a
function of the caller's own script or notebook is refused in one line, before anything is
stored. (Killing the study with its runs' processes: tests/test_run_limits.py.)

Each test writes a researcher's experiment into tmp_path; module names differ from test to
test, since the tests that run in this process import them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.contract import COMPLETE, FAILED
from study import run_study
from study.experiment import Experiment, ExperimentError
from study.worker import execute_user

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}

TORCH_TRAIN = '''
import torch

def train(config, seed):
    torch.manual_seed(seed)
    x, y = torch.randn(512, 32), torch.randn(512, 1)
    model = torch.nn.Linear(32, 1)
    opt = torch.optim.SGD(model.parameters(), lr=config["lr"])
    for _ in range(20):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"val_loss": loss.item()}
'''


def spec_for(folder: Path, experiment: str, seeds: int = 2) -> Path:
    spec = folder / "spec.toml"
    spec.write_text(f'experiment = "{experiment}"\nname = "probe"\nseeds = {seeds}\n[base]\nlr = 0.05\n'
                    '[analysis]\nmetric = "val_loss"\ndirection = "minimize"\nmargin = 0.01\n'
                    '[arms.baseline]\n[arms.high_lr]\nlr = 0.1\n')
    return spec


@pytest.mark.slow
def test_a_timed_run_after_torch_ran_threads_in_this_process_finishes_instead_of_hanging(tmp_path):
    """This process trains with several intra-op threads first, as a notebook would; a forked
    child of it then hung on a futex until its timeout. Each run takes well under a second."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        model = torch.nn.Linear(256, 256)
        for _ in range(20):
            model(torch.randn(512, 256)).square().mean().backward()
        (tmp_path / "torch_probe.py").write_text(TORCH_TRAIN)
        result = run_study(spec_for(tmp_path, "torch_probe:train"), results=tmp_path / "results", jobs=1,
                           timeout=45)
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.runs.get("error")  # a hung run would have "timed out after 45 s"
    assert set(result.runs["status"]) == {COMPLETE} and len(result.runs) == 4


FAILING = '''
class ShardError(Exception):
    """The user's own exception: the caller never imported this module."""


def train(config, seed):
    if seed == 1:
        raise ShardError(f"shard {seed} is truncated")
    return {"val_loss": 0.5}
'''


def test_a_timed_runs_exception_comes_back_with_its_type_message_and_the_users_traceback(tmp_path):
    (tmp_path / "shard_reader.py").write_text(FAILING)
    experiment = Experiment(reference="shard_reader:train", folder=str(tmp_path))
    _, [(seed, failure)], _ = execute_user("baseline", 1, {"lr": 0.1}, experiment, "val_loss", "cpu", 1, None,
                                           timeout=30)
    assert seed == 1 and failure["error"] == "ShardError: shard 1 is truncated"
    assert 'shard_reader.py", line 8, in train' in failure["traceback"]
    _, [(_, outcome)], _ = execute_user("baseline", 0, {"lr": 0.1}, experiment, "val_loss", "cpu", 1, None,
                                        timeout=30)
    assert outcome.metrics == {"val_loss": 0.5} and "shard_reader.py" in outcome.code["code_files"]


def test_a_function_of_the_callers_own_script_is_refused_with_a_timeout_before_anything_is_stored(tmp_path,
                                                                                                  monkeypatch):
    # as a notebook cell defines it: runs without a timeout find it in this process
    monkeypatch.setattr(sys.modules["__main__"], "train", lambda config, seed: {"val_loss": 0.5}, raising=False)
    spec = spec_for(tmp_path, "__main__:train", seeds=1)
    assert run_study(spec, results=tmp_path / "untimed", jobs=1).exit_code == 0
    with pytest.raises(ExperimentError, match=r"experiment '__main__:train': with a timeout each run executes in "
                                              r"a fresh process.*move train into a \.py file beside the spec"):
        run_study(spec, results=tmp_path / "results", jobs=1, timeout=30)
    assert not (tmp_path / "results").exists()


SCRIPT = '''
import sys
from study import run_study

# No `if __name__ == "__main__":` guard: a run's process must not import this script again.
print("script started", flush=True)
result = run_study(sys.argv[1], results=sys.argv[2], jobs=1, timeout=60)
print("exit", result.exit_code, sorted(set(result.runs["status"])), flush=True)
'''


def test_a_script_without_a_main_guard_runs_its_study_once(tmp_path):
    (tmp_path / "quick_train.py").write_text('def train(config, seed):\n    return {"val_loss": config["lr"] + seed}\n')
    (tmp_path / "run_it.py").write_text(SCRIPT)
    res = subprocess.run([sys.executable, str(tmp_path / "run_it.py"), str(spec_for(tmp_path, "quick_train:train")),
                          str(tmp_path / "results")], capture_output=True, text=True, env=ENV, cwd=tmp_path,
                         timeout=240)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("script started") == 1 and f"exit 0 ['{COMPLETE}']" in res.stdout
    assert res.stderr.count("4 runs to do") == 1


def test_a_run_that_kills_itself_is_failed_with_how_it_died(tmp_path):
    (tmp_path / "self_kill.py").write_text('import os, signal\n\ndef train(config, seed):\n'
                                           '    os.kill(os.getpid(), signal.SIGKILL)\n')
    result = run_study(spec_for(tmp_path, "self_kill:train", seeds=1), results=tmp_path / "results", jobs=1,
                       timeout=30)
    assert set(result.runs["status"]) == {FAILED}
    assert set(result.runs["error"]) == {"RuntimeError: the run's process died before returning (killed by signal 9 "
                                         "(SIGKILL: out of memory?))"}


def test_timed_runs_started_from_several_threads_leave_multiprocessing_as_they_found_it():
    """A Dask worker runs several tasks at once, in threads: each launch of a timed run drops
    the main module from what its own child prepares, and from nothing else, not even after."""
    import threading
    from multiprocessing import spawn

    from study.lifeline import run_in_child

    expected = spawn.get_preparation_data("x")
    assert "init_main_from_name" in expected or "init_main_from_path" in expected  # pytest's own main
    pids: list[int] = []

    def runs() -> None:
        pids.extend(run_in_child(os.getpid, (), 60) for _ in range(8))

    threads = [threading.Thread(target=runs) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(pids)) == 32  # every run ran, each in a process of its own
    assert spawn.get_preparation_data("x") == expected  # other users of spawn keep their main module
