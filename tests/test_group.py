"""Seeds trained together (study.cifar.group) must be the same experiment as seeds trained alone."""

import dataclasses

import numpy as np
import pytest
import torch

from study.cifar.config import apply_overrides
from study.cifar.experiment import train_seeds
from study.cifar.group import train_group
from study.cifar.train import train_one
from study.run import groups_of
from study.worker import failure


@pytest.fixture
def fp32(smoke):
    return apply_overrides(smoke, {"precision": "fp32"})


def test_first_step_is_the_single_model_step(synthetic_cifar, fp32):
    """One step (100 images): same init, same batch, same flips, same loss; after it the same
    validation and test predictions. Only floating-point summation order may differ."""
    cfg = apply_overrides(fp32, {"train_size": 100, "epochs": 1})
    alone = [train_one(cfg, s, synthetic_cifar) for s in (3, 5)]
    together = train_group(cfg, [3, 5], synthetic_cifar)
    for a, g in zip(alone, together, strict=True):
        assert (g.streams, g.init_hash) == (a.streams, a.init_hash)
        assert g.epochs[0].train_loss == pytest.approx(a.epochs[0].train_loss, abs=1e-6)
        assert (g.val_acc, g.test_acc) == (a.val_acc, a.test_acc)
        assert np.array_equal(g.test_predictions, a.test_predictions)
        assert g.group == (3, 5) and a.group == ()


@pytest.mark.slow  # about a minute on the CI CPU; test_train_exact pins both engines' exact numbers by default
def test_a_seeds_run_does_not_depend_on_its_group(synthetic_cifar, fp32):
    """Seed 5 alone, with seed 3, and with seeds 7 and 9: the same streams and init, and the
    same training up to floating-point noise (which SGD amplifies slowly over 20 steps)."""
    runs = [train_one(fp32, 5, synthetic_cifar), train_group(fp32, [3, 5], synthetic_cifar)[1], train_group(fp32, [5, 7, 9], synthetic_cifar)[0]]
    ref = runs[0]
    for r in runs[1:]:
        assert (r.streams, r.init_hash, r.status) == (ref.streams, ref.init_hash, "complete")
        assert [e.lr for e in r.epochs] == [e.lr for e in ref.epochs]
        for e, e_ref in zip(r.epochs, ref.epochs, strict=True):
            assert e.train_loss == pytest.approx(e_ref.train_loss, rel=1e-3)
        assert abs(r.test_acc - ref.test_acc) <= 1.0
        assert np.mean(r.test_predictions == ref.test_predictions) >= 0.9


@pytest.mark.gpu
def test_grouped_and_single_engines_agree_on_cuda(synthetic_cifar, fp32):
    """Where grouping is on by default (CUDA): seed 5 in a group trains as seed 5 alone, up to
    floating-point noise, with cudnn's own kernels and the grouped convolutions vmap makes. The
    noise is larger than on the CPU: "fp32" convolutions on CUDA run in TF32 by default."""
    alone = train_one(fp32, 5, synthetic_cifar, device="cuda")
    grouped = train_group(fp32, [3, 5], synthetic_cifar, device="cuda")[1]
    assert alone.device == grouped.device == torch.cuda.get_device_name()
    assert (grouped.streams, grouped.init_hash, grouped.status) == (alone.streams, alone.init_hash, "complete")
    for e, e_alone in zip(grouped.epochs, alone.epochs, strict=True):
        assert e.train_loss == pytest.approx(e_alone.train_loss, rel=1e-2)
    assert abs(grouped.test_acc - alone.test_acc) <= 2.0
    assert np.mean(grouped.test_predictions == alone.test_predictions) >= 0.8


def test_models_in_a_group_stay_independent(synthetic_cifar, fp32):
    """Different seeds in one group end up as different models with their own BN statistics."""
    a, b = train_group(fp32, [0, 1], synthetic_cifar)
    assert a.init_hash != b.init_hash
    assert not np.array_equal(a.test_predictions, b.test_predictions)
    assert [e.lr for e in a.epochs] == [0.1, 0.05]  # the StepLR schedule drives the group's optimizer


@pytest.mark.slow  # minutes on the 2-core CI CPU; the default suite keeps the group-independence test
def test_group_on_the_fast_path_runs_in_bf16(synthetic_cifar, smoke):
    results = train_group(apply_overrides(smoke, {"precision": "bf16"}), [0, 1], synthetic_cifar)
    assert [r.precision for r in results] == ["bf16", "bf16"]
    assert all(r.status == "complete" and 0 <= r.test_acc <= 100 for r in results)


def test_divergence_in_a_group_is_per_run(synthetic_cifar, fp32):
    results = train_group(apply_overrides(fp32, {"lr": 1e6, "bn": "none"}), [0, 1], synthetic_cifar)
    for r in results:
        assert r.status == "diverged" and r.diverged_epoch == 1
        assert r.test_acc is None and r.test_predictions is None


def test_on_epoch_reports_every_seed(synthetic_cifar, fp32):
    seen = []
    train_group(fp32, [4, 2], synthetic_cifar, on_epoch=lambda seed, rec: seen.append((seed, rec.epoch)))
    assert seen == [(4, 1), (2, 1), (4, 2), (2, 2)]


@pytest.mark.parametrize("seeds", [[], [1, 1]])
def test_bad_seed_lists_are_refused(synthetic_cifar, fp32, seeds):
    with pytest.raises(ValueError, match="`seeds`"):
        train_group(fp32, seeds, synthetic_cifar)


@pytest.mark.slow
def test_compiled_group_matches_eager(synthetic_cifar, fp32):
    cfg = apply_overrides(fp32, {"epochs": 1})
    eager = train_group(cfg, [0, 1], synthetic_cifar)
    compiled = train_group(cfg, [0, 1], synthetic_cifar, compile=True)
    for e, c in zip(eager, compiled, strict=True):
        assert c.compiled and not e.compiled
        assert c.epochs[0].train_loss == pytest.approx(e.epochs[0].train_loss, rel=1e-3)


def test_groups_of_blocks_seeds_per_arm():
    todo = [(a, s) for s in range(5) for a in ("x", "y") if (a, s) != ("y", 1)]
    assert groups_of(todo, tuple(range(5)), 1) == [(a, [s]) for a, s in todo]
    assert groups_of(todo, tuple(range(5)), 3) == [("x", [0, 1, 2]), ("y", [0, 2]), ("x", [3, 4]), ("y", [3, 4])]


@pytest.mark.slow  # minutes on the 2-core CI CPU; the default suite keeps the group-independence test
def test_a_group_out_of_gpu_memory_is_split_until_it_fits(synthetic_cifar, fp32, monkeypatch):
    """No GPU here, so the OOM is injected: groups of more than two seeds raise CUDA's
    OutOfMemoryError; the runner halves them and every seed still trains."""
    import study.cifar.group

    real = study.cifar.group.train_group
    sizes = []

    def tight_memory(config, seeds, *args, **kwargs):
        sizes.append(len(seeds))
        if len(seeds) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(config, seeds, *args, **kwargs)

    monkeypatch.setattr(study.cifar.group, "train_group", tight_memory)
    cfg = apply_overrides(fp32, {"epochs": 1})
    results = train_seeds(cfg, [0, 1, 2, 3, 4], synthetic_cifar, "cpu", False, lambda seed, rec: None)
    # a lone seed takes train_one's path
    assert [r.group for r in results] == [(0, 1), (0, 1), (), (3, 4), (3, 4)]
    assert sizes == [5, 2, 3, 2]


def test_out_of_memory_for_one_seed_is_that_runs_recorded_failure(synthetic_cifar, fp32, monkeypatch, tmp_path):
    import study.cifar.group
    import study.cifar.train

    def no_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(study.cifar.group, "train_group", no_memory)
    monkeypatch.setattr(study.cifar.train, "train_one", no_memory)
    results = train_seeds(dataclasses.replace(fp32, epochs=1), [0, 1], synthetic_cifar, "cpu", False,
                          lambda seed, rec: None)
    assert len(results) == 2 and all(isinstance(r, torch.cuda.OutOfMemoryError) for r in results)
    for failed in map(failure, results):  # the group was split; each seed alone still ran out of memory
        assert failed["error"].startswith("OutOfMemoryError: CUDA out of memory")
        assert "lower --jobs" in failed["error"] and "Traceback" in failed["traceback"]


def test_one_seed_out_of_memory_keeps_the_others_results(synthetic_cifar, fp32, monkeypatch):
    import study.cifar.group
    import study.cifar.train

    real_one = study.cifar.train.train_one

    def seed_1_too_big(config, seed, *args, **kwargs):
        if seed == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_one(config, seed, *args, **kwargs)

    def no_groups(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB")

    monkeypatch.setattr(study.cifar.group, "train_group", no_groups)
    monkeypatch.setattr(study.cifar.train, "train_one", seed_1_too_big)
    outcomes = train_seeds(dataclasses.replace(fp32, epochs=1), [0, 1], synthetic_cifar, "cpu", False, lambda s, r: None)
    assert outcomes[0].status == "complete" and outcomes[0].streams["init"]
    assert isinstance(outcomes[1], torch.cuda.OutOfMemoryError)  # that seed's failure alone
    recorded = failure(outcomes[1])
    assert recorded["error"].startswith("OutOfMemoryError") and "lower --jobs" in recorded["error"]
    assert "Traceback" in recorded["traceback"] and "seed_1_too_big" in recorded["traceback"]


def test_a_failing_compile_falls_back_to_eager_without_a_trace(synthetic_cifar, fp32, monkeypatch):
    """The stand-in compiled step runs the real step (updating BatchNorm's running stats) and
    then fails, as a compiler error in the backward would: the group must go on eagerly with
    the running stats restored, i.e. exactly as if it had never tried to compile."""
    def broken_compile(fn):
        def step(*args, **kwargs):
            fn(*args, **kwargs)
            raise RuntimeError("inductor: no working C++ compiler")
        return step

    cfg = apply_overrides(fp32, {"epochs": 1})
    reference = train_group(cfg, [0, 1], synthetic_cifar)
    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(RuntimeWarning, match="torch.compile failed .*training this group eagerly"):
        fallen_back = train_group(cfg, [0, 1], synthetic_cifar, compile=True)
    for got, ref in zip(fallen_back, reference, strict=True):
        assert not got.compiled
        assert got.epochs[0].train_loss == ref.epochs[0].train_loss
        assert np.array_equal(got.test_predictions, ref.test_predictions)
