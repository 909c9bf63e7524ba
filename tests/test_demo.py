"""`make demo` trains a shipped example from scratch, and the README names what CI runs.

The demo deletes one study folder and trains it again. If the example spec's name and the
folder the Makefile deletes drift apart, the demo silently resumes and trains nothing, or it
deletes something it did not write: these tests catch both."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits" / "spec.toml"
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make_demo(*variables: str, dry_run: bool = True) -> subprocess.CompletedProcess:
    # -o: treat the venv as installed, so the test neither creates nor changes one.
    # Under `make test-all` this is a sub-make: without MAKEFLAGS/MAKELEVEL from the outer make
    # and with --no-print-directory, its output is the demo's commands and nothing else.
    cmd = ["make", "--no-print-directory", "-o", ".venv/.installed", "demo", f"PY={sys.executable}",
           *variables]
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(cmd[:1] + ["-n"] * dry_run + cmd[1:], cwd=ROOT, capture_output=True,
                          text=True, timeout=900, env=env)


@needs_make
def test_demo_retrains_the_digits_example_in_its_own_folder(tmp_path):
    demo = tmp_path / "demo"
    name = tomllib.loads(DIGITS.read_text())["name"]
    lines = make_demo(f"DEMO={demo}").stdout.splitlines()
    commands = [line for line in lines if not line.startswith("echo")]
    removed = commands[0].split()
    assert removed[:2] == ["rm", "-rf"] and removed[2:] == [f"{demo}/{name}", f"{demo}/report"]
    assert commands[1].endswith(f"-m study.run --spec examples/digits/spec.toml --results {demo}")
    assert commands[2].endswith(f"-m analysis.report {demo}/{name} --out {demo}/report")
    # Then, as before this demo existed, the committed built-in study resumes.
    assert commands[3].endswith("-m study.run --seeds 5 --results results")
    assert len(commands) == 4


@needs_make
def test_demo_deletes_nothing_under_the_committed_results():
    lines = make_demo().stdout.splitlines()
    removed = [arg for line in lines if line.startswith("rm ") for arg in line.split()[2:]]
    assert removed and not any(Path(p).parts[0] == "results" for p in removed)


def test_ci_runs_a_test_command_the_readme_names():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"^\s*make (\S+)\s*$", ci, re.M)
    assert targets, ".ci/run runs no make target"
    for target in targets:
        assert f"make {target}" in readme, f".ci/run runs `make {target}`, which README.md never names"
    makefile = (ROOT / "Makefile").read_text()
    assert all(re.search(rf"^{t}:", makefile, re.M) for t in [*targets, "demo", "test"])


@pytest.mark.slow
@needs_make
def test_make_demo_trains_runs_verdicts_and_a_report(tmp_path):
    demo = tmp_path / "demo"
    stale = demo / "digits-mlp" / "left-over"
    stale.parent.mkdir(parents=True)
    stale.write_text("from an earlier demo")
    res = make_demo(f"DEMO={demo}", dry_run=False)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert not stale.exists()
    runs = pd.read_csv(demo / "digits-mlp" / "runs.csv")
    assert len(runs) == 20 and set(runs.status) == {"complete"} and runs.arm.nunique() == 4
    assert "20/20 done" in res.stdout + res.stderr
    assert (demo / "report" / "report.md").exists() and (demo / "report" / "report.html").exists()
    # Verdicts twice: the from-scratch study's, then the committed built-in study's.
    assert (res.stdout + res.stderr).count("Verdicts (seedwise compare") == 2
    assert "verdict: WORSE: no_momentum is worse than baseline" in res.stdout + res.stderr


def test_the_readme_spec_is_the_shipped_example():
    """The README's spec is examples/digits/spec.toml, shortened: every key it shows is the file's."""
    readme = (ROOT / "README.md").read_text()
    shown = tomllib.loads(re.search(r"```toml\n(.*?)```", readme, re.S).group(1))
    shipped = tomllib.loads(DIGITS.read_text())

    def differ(part: dict, whole: dict, where: str = "") -> list[str]:
        out = []
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(whole.get(key), dict):
                out += differ(value, whole[key], f"{where}{key}.")
            elif whole.get(key) != value:
                out.append(f"{where}{key} = {value!r} (the file: {whole.get(key)!r})")
        return out

    assert shown["experiment"] == shipped["experiment"] and shown["base"] == shipped["base"]
    assert not differ(shown, shipped), differ(shown, shipped)
