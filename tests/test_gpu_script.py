"""paper/gpu_full_study.sh, the script a session with a lent GPU runs in one device call, run
here on the CPU at the smoke preset: a device session is rare and short, so a step whose command
no longer parses must fail here, not there."""

import csv
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = os.environ.get("SEEDWISE_DATA", "/work/shared/data/cifar10-jpeg.tar.gz")


@pytest.mark.slow  # ~2-3 min on a 2-core CPU: six smoke-preset CIFAR runs in three processes
@pytest.mark.skipif(not Path(DATA).exists(), reason="CIFAR-10 archive not available")
def test_every_selected_step_runs_and_its_studies_come_back(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SEEDWISE_DATA": DATA,
           "PRESET": "smoke", "SEEDS": "1", "RESULTS": str(tmp_path / "results"), "OUT": str(tmp_path / "out"),
           "SEEDWISE_CACHE": str(tmp_path / "cache"), "BUDGET": "500", "JOBS": "1", "STEPS": "full10 fid_ref", "PY": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "paper" / "gpu_full_study.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("*.log")) == ["fid_ref.log", "full10.log"]  # only the selected steps
    for log in out.glob("*.log"):
        text = log.read_text()
        assert "Traceback" not in text and "error:" not in text, (log.name, text[-2000:])

    def complete(study: str) -> list[str]:
        with open(tmp_path / "results" / study / "runs.csv") as f:
            return sorted(r["arm"] for r in csv.DictReader(f) if r["status"] == "complete")

    assert complete("notebook-ablation-smoke") == sorted(
        ["baseline", "no_scheduler", "no_bn", "notebook_no_bn", "alternating_bn"])
    assert complete("fidelity-smoke") == ["fp32"]
    with tarfile.open(out / "results-gpu.tgz") as tar:
        names = tar.getnames()
    assert {"notebook-ablation-smoke/runs.csv", "fidelity-smoke/runs.csv"} <= set(names)
