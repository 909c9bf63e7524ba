"""`train_many` (issue 24): a user experiment may train a group of seeds in one call, and
`--group N` hands it up to N seeds of an arm per task. Each seed's outcome stands alone
(complete, diverged, failed), the group's timeout applies to the call, and resume and claims
work seed by seed as without groups.

The experiment is a small softmax regression in numpy written into tmp_path: `train` fits one
seed's weights, `train_many` a stack of them with batched matmuls, the same arithmetic per
seed, so it promises (and the test checks) the same numbers as `train` seed by seed. Each call
writes the seeds it got to `calls_dir`, so the tests see how the runner grouped them."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from analysis.contract import COMPLETE, DIVERGED, FAILED
from study import run_study
from study.claims import Claims

EXPERIMENT = '''
import json, time, uuid
from pathlib import Path
import numpy as np

def data():
    rng = np.random.default_rng(12345)  # the same examples in every run
    centres = rng.normal(0, 2, (3, 5))
    y = rng.integers(0, 3, 240)
    x = centres[y] + rng.normal(0, 4.0, (240, 5))
    return x[:160], y[:160], x[160:], y[160:]

def log_call(config, seeds):
    Path(config["calls_dir"], uuid.uuid4().hex).write_text(json.dumps(seeds))
    time.sleep(config["hang_s"])

def softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)

def metrics(w, x, y, xv, yv):
    p = softmax(x @ w)
    loss = -np.log(p[np.arange(len(y)), y]).mean()
    return {"train_loss": float(loss), "val_acc": float(100 * ((xv @ w).argmax(-1) == yv).mean())}

def train(config, seed, *, report=None):
    log_call(config, [seed])
    x, y, xv, yv = data()
    w = np.random.default_rng(seed).normal(0, 0.1, (5, 3))
    onehot = np.eye(3)[y]
    for epoch in range(1, config["epochs"] + 1):
        w = w - config["lr"] * x.T @ (softmax(x @ w) - onehot) / len(y)
        if report:
            report(epoch, **metrics(w, x, y, xv, yv))
    return metrics(w, x, y, xv, yv)

def train_many(config, seeds, *, report=None):
    log_call(config, list(seeds))
    x, y, xv, yv = data()
    w = np.stack([np.random.default_rng(s).normal(0, 0.1, (5, 3)) for s in seeds])  # (seeds, 5, 3)
    onehot = np.eye(3)[y]
    for epoch in range(1, config["epochs"] + 1):
        w = w - config["lr"] * np.stack([x.T @ (softmax(x @ wi) - onehot) for wi in w]) / len(y)
        if report:
            for s, wi in zip(seeds, w):
                report(s, epoch, **metrics(wi, x, y, xv, yv))
    results = []
    for s, wi in zip(seeds, w):
        if s == config["fail_seed"]:
            results.append(RuntimeError(f"seed {s}: out of luck"))
        elif s == config["nan_seed"]:
            results.append({**metrics(wi, x, y, xv, yv), "train_loss": float("nan")})
        else:
            results.append(metrics(wi, x, y, xv, yv))
    return results
'''


def write_study(folder: Path, module: str, *, many: bool = True, extra: str = "", seeds: int = 4,
                fail_seed: int = -1, nan_seed: int = -1, hang_s: float = 0.0) -> Path:
    """A spec and its experiment in `folder`; module names differ per test (some tests run in
    this process, which imports them)."""
    code = EXPERIMENT if many else EXPERIMENT.split("def train_many")[0]
    (folder / f"{module}.py").write_text(code)
    (folder / "calls").mkdir()
    spec = folder / "spec.toml"
    spec.write_text(f'experiment = "{module}:train"\nname = "batched"\nseeds = {seeds}\n{extra}\n'
                    f'[base]\nlr = 0.5\nepochs = 5\nfail_seed = {fail_seed}\nnan_seed = {nan_seed}\n'
                    f'hang_s = {hang_s}\ncalls_dir = "{folder / "calls"}"\n'
                    '[analysis]\nmetric = "val_acc"\nmargin = 1.0\n[arms.baseline]\n[arms.slow]\nlr = 0.1\n')
    return spec


def calls(folder: Path) -> list[list[int]]:
    return sorted(json.loads(f.read_text()) for f in (folder / "calls").iterdir())


def test_a_group_trains_in_one_call_with_the_numbers_of_train_seed_by_seed(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "many").mkdir()
    alone = run_study(write_study(tmp_path / "one", "soft_alone"), results=tmp_path / "r1", jobs=1)
    grouped = run_study(write_study(tmp_path / "many", "soft_grouped"), results=tmp_path / "r2", jobs=1, group=3)
    assert alone.exit_code == grouped.exit_code == 0
    assert calls(tmp_path / "one") == [[0], [0], [1], [1], [2], [2], [3], [3]]  # group 1: train per seed
    # seeds in blocks of 3 per arm; a block's lone seed goes through `train`, the reference path
    assert calls(tmp_path / "many") == [[0, 1, 2], [0, 1, 2], [3], [3]]
    key = ["arm", "seed"]
    a, g = (r.runs.sort_values(key).reset_index(drop=True) for r in (alone, grouped))
    assert (g["status"] == COMPLETE).all() and len(g) == 8
    np.testing.assert_allclose(g["val_acc"], a["val_acc"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(g["train_loss"], a["train_loss"], rtol=1e-12)
    assert a["val_acc"].nunique() > 1  # the seeds differ: a group is not one model copied
    # per-seed curves, each in its own rows
    ea, eg = (r.epochs.sort_values([*key, "epoch"]).reset_index(drop=True) for r in (alone, grouped))
    assert len(eg) == 8 * 5
    np.testing.assert_allclose(eg["train_loss"], ea["train_loss"], rtol=1e-12)
    # who trained with whom: the group column (empty where a run trained alone)
    assert a["group"].isna().all()
    assert list(g.loc[g["seed"] < 3, "group"].unique()) == ["0 1 2"]
    assert g.loc[g["seed"] == 3, "group"].isna().all()


def test_one_seeds_failure_or_divergence_in_a_group_is_that_seeds_alone(tmp_path):
    spec = write_study(tmp_path, "soft_mixed", seeds=3, fail_seed=1, nan_seed=2)
    result = run_study(spec, results=tmp_path / "r", jobs=1, group=3, arms="baseline")
    assert result.exit_code == 1  # a failed run: retried on the next invocation
    runs = result.runs.set_index("seed")
    assert runs.loc[0, "status"] == COMPLETE and runs.loc[2, "status"] == DIVERGED
    assert runs.loc[1, "status"] == FAILED and runs.loc[1, "error"] == "RuntimeError: seed 1: out of luck"
    trials = {t.user_attrs["seed"]: t for t in _trials(result.path)}
    assert "out of luck" in trials[1].user_attrs["traceback"] and "returned by train_many for seed 1" in trials[1].user_attrs["traceback"]
    # the rerun retries only the failed seed, alone (through `train`, which has no fail switch)
    again = run_study(spec, results=tmp_path / "r", jobs=1, group=3, arms="baseline")
    assert again.exit_code == 0 and calls(tmp_path) == [[0, 1, 2], [1]]
    assert again.runs.groupby("seed")["status"].last().to_dict() == {0: COMPLETE, 1: COMPLETE, 2: DIVERGED}


def test_a_group_over_its_timeout_fails_every_seed_of_the_call(tmp_path):
    spec = write_study(tmp_path, "soft_slow", seeds=2, hang_s=30, extra="timeout = 1.5")
    started = time.monotonic()
    result = run_study(spec, results=tmp_path / "r", jobs=1, group=2, arms="baseline")
    assert time.monotonic() - started < 20
    assert result.exit_code == 1
    assert list(result.runs["status"]) == [FAILED, FAILED]
    assert set(result.runs["error"]) == {"timed out after 1.5 s"}


def test_groups_resume_and_respect_other_workers_claims(tmp_path):
    spec = write_study(tmp_path, "soft_resume", seeds=2)
    first = run_study(spec, results=tmp_path / "r", jobs=1, group=4)
    assert first.exit_code == 0 and calls(tmp_path) == [[0, 1], [0, 1]]
    # Another live worker holds baseline seed 3: this one's baseline group leaves it out.
    engine = sa.create_engine(f"sqlite:///{first.path / 'study.db'}")
    other = Claims(engine, first.study)
    assert other.claim_run("baseline", 3) == "mine"
    try:
        more = run_study(spec, results=tmp_path / "r", jobs=1, group=4, seeds=5)
    finally:
        other.close()
    assert more.exit_code == 0
    assert calls(tmp_path) == [[0, 1], [0, 1], [2], [2, 3], [4], [4]]  # nothing trained twice
    assert sorted(zip(more.runs["arm"], more.runs["seed"], strict=True)) == sorted(
        [(a, s) for a in ("baseline", "slow") for s in range(5) if (a, s) != ("baseline", 3)])


def test_without_train_many_a_group_falls_back_to_train_per_seed(tmp_path):
    spec = write_study(tmp_path, "soft_single", many=False, seeds=2)
    result = run_study(spec, results=tmp_path / "r", jobs=1, group=4)
    assert result.exit_code == 0 and (result.runs["status"] == COMPLETE).all()
    assert calls(tmp_path) == [[0], [0], [1], [1]]


def _trials(path: Path):
    import optuna

    storage = f"sqlite:///{path / 'study.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage).trials


@pytest.mark.parametrize("returned", ["{}", "[{}]"])
def test_a_train_many_that_breaks_the_contract_fails_its_seeds_with_a_clear_error(tmp_path, returned):
    module = f"soft_broken_{len(returned)}"
    spec = write_study(tmp_path, module, seeds=2)
    code = (tmp_path / f"{module}.py").read_text()
    (tmp_path / f"{module}.py").write_text(code + f"\ndef train_many(config, seeds):\n    return {returned}\n")
    result = run_study(spec, results=tmp_path / "r", jobs=1, group=2, arms="baseline")
    assert result.exit_code == 1 and list(result.runs["status"]) == [FAILED, FAILED]
    assert set(result.runs["error"]) == {"ContractError: train_many must return a list with one result per seed "
                                         f"(2), got {'dict' if returned == '{}' else '1 item(s)'}"}
