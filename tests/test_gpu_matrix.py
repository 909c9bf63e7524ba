"""benchmarks/gpu_matrix.py in its CPU smoke mode: every variant of the matrix ends up in the
JSON with a number, or with the reason it was skipped or failed (CUDA-only variants on a CPU,
variants left out by --only), and the multi-process variant really runs its workers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = os.environ.get("SEEDWISE_DATA", "/work/shared/data/cifar10-jpeg.tar.gz")


@pytest.mark.slow  # ~1-2 min on a 2-core CPU: it loads CIFAR-10 in the parent and each worker
@pytest.mark.skipif(not Path(DATA).exists(), reason="CIFAR-10 archive not available")
def test_cpu_smoke_records_every_variant(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_matrix import VARIANTS

    out = tmp_path / "matrix.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_matrix.py"), "--device", "cpu", "--width", "8",
           "--steps", "3", "--warmup", "1", "--data", DATA, "--only", "^(fp32|group4|procs4|compile-graphs)$",
           "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    variants = json.loads(out.read_text())["variants"]
    assert set(variants) == {"notebook"} | {v.name for v in VARIANTS}
    for name in ("notebook", "fp32", "group4", "procs4"):
        assert variants[name]["status"] == "ok", (name, variants[name])
        assert variants[name]["img_per_s"] > 0
    assert variants["group4"]["img_per_s"] == pytest.approx(4 * variants["group4"]["img_per_s_model"])
    assert len(variants["procs4"]["per_process"]) == 4
    assert variants["compile-graphs"] == {**variants["compile-graphs"], "status": "skipped", "reason": "CUDA only"}
    assert variants["bf16"]["reason"] == "not selected by --only"
    for name, r in variants.items():
        assert r["status"] in ("ok", "skipped", "failed"), name
        assert r["status"] == "ok" or r["reason"], name
    assert "procs4" in proc.stdout and "vs notebook" in proc.stdout


def test_bad_option_is_one_line_exit_2():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_matrix.py"), "--steps", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert proc.stderr.strip() == "gpu_matrix: --steps must be >= 1, got 0"
