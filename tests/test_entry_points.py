"""The `seedwise` command and the `run_study` Python API reach the same runner as `python -m`."""

import os
import subprocess
import sys
import tomllib
from importlib import import_module
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = '''
from study.seeds import rng


def train(config, seed):
    return {"score": float(rng(seed, "order").integers(100)) + config["shift"]}
'''


@pytest.fixture
def spec(tmp_path):
    (tmp_path / "tiny_api.py").write_text(TINY)
    path = tmp_path / "tiny.toml"
    path.write_text('experiment = "tiny_api:train"\nname = "tiny"\nseeds = 2\n[base]\nshift = 0.0\n'
                    '[analysis]\nmetric = "score"\nmargin = 1.0\n[arms.baseline]\n[arms.up]\nshift = 2.0\n')
    return path


def test_pyproject_declares_the_seedwise_script():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, func = scripts["seedwise"].partition(":")
    assert getattr(import_module(module), func).__module__ == "study.cli"


def cli(*args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "study.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=240, cwd=ROOT)


def test_seedwise_run_compare_report_share_the_python_m_options(spec, tmp_path):
    res = cli("run", "--spec", spec, "--results", tmp_path / "r", "--jobs", "1")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "score (higher is better) per arm" in res.stdout
    out = tmp_path / "r" / "tiny"
    dry = cli("run", "--spec", spec, "--results", tmp_path / "r", "--dry-run")
    assert dry.returncode == 0 and "4 done, 0 to do" in dry.stdout
    compare = cli("compare", out)
    assert compare.returncode == 0 and "up - baseline: +2.00" in compare.stdout, compare.stderr[-2000:]
    report = cli("report", out, "--out", tmp_path / "report", "--no-note")
    assert report.returncode == 0 and (tmp_path / "report" / "report.md").exists(), report.stderr[-2000:]
    bad = cli("rnu")
    assert bad.returncode == 2 and "unknown command 'rnu' (did you mean 'run'?)" in bad.stderr


def test_dashboard_finds_the_storage_of_a_study_folder(spec, tmp_path):
    from study.cli import storage_of

    assert cli("run", "--spec", spec, "--results", tmp_path / "r", "--jobs", "1").returncode == 0
    assert storage_of(str(tmp_path / "r" / "tiny")) == f"sqlite:///{tmp_path / 'r' / 'tiny' / 'study.db'}"
    assert storage_of("postgresql://u@h/db") == "postgresql://u@h/db"
    bad = cli("dashboard", tmp_path / "nowhere")
    assert bad.returncode == 2 and "neither a storage URL nor a study folder" in bad.stderr


def test_run_study_returns_the_tables_and_resumes(spec, tmp_path, monkeypatch):
    from study import SpecError, run_study

    monkeypatch.syspath_prepend(str(tmp_path))
    result = run_study(spec, seeds=2, results=tmp_path / "r", jobs=1)
    assert result.exit_code == 0 and result.study == "tiny" and result.path == tmp_path / "r" / "tiny"
    assert len(result.runs) == 4 and set(result.runs["status"]) == {"complete"}
    up = result.runs.set_index(["arm", "seed"])["score"]
    assert all(up[("up", s)] == up[("baseline", s)] + 2.0 for s in (0, 1))  # paired by seed
    again = run_study(spec, seeds=3, results=tmp_path / "r", jobs=1)  # one more seed: only 2 new runs
    assert len(again.runs) == 6 and again.runs["trial_number"].max() == 5
    with pytest.raises(SpecError, match="unknown config key 'shfit' in --set .*did you mean 'shift'"):
        run_study(spec, results=tmp_path / "r", set={"shfit": 1.0})


def test_on_windows_the_study_commands_say_to_use_wsl_in_one_line(monkeypatch, capsys):
    """study/lifeline.py needs POSIX processes; a Windows user gets one line, not an import traceback."""
    from study.cli import main

    monkeypatch.setattr(sys, "platform", "win32")
    assert main(["run", "--seeds", "2"]) == 2
    assert capsys.readouterr().err == "error: seedwise run runs studies on Linux and macOS; on Windows, run it under WSL\n"


def test_help_names_the_command_as_it_was_called(capsys):
    from study import cli

    for command in ("tune", "run", "variance", "compare", "report"):
        with pytest.raises(SystemExit) as done:
            cli.main([command, "--help"])
        assert done.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: seedwise {command} ")
    from study.tune import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--help"])  # its `python -m` form, once the entry point is done
    assert capsys.readouterr().out.startswith("usage: python -m study.tune ")
    from analysis.compare import main as compare_main

    with pytest.raises(SystemExit):
        compare_main(["--help"])
    assert capsys.readouterr().out.startswith("usage: python -m analysis.compare ")
