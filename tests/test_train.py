import dataclasses

import numpy as np
import pytest
import torch

from study.cifar.config import apply_overrides
from study.cifar.experiment import as_config
from study.cifar.model import build_model, count_bn, init_model, weights_hash
from study.cifar.train import make_optimizer, train_one
from study.seeds import generator, stream_seed, stream_seeds
from study.spec import load_spec


@pytest.fixture
def tiny(smoke):
    """The smoke preset on a few hundred images: these tests check the schedule, streams and
    determinism, which do not depend on how much the model learns."""
    return apply_overrides(smoke, {"train_size": 256, "val_size": 128, "test_size": 256})


def metrics(epoch):
    return dataclasses.replace(epoch, train_seconds=0.0)  # everything but the timing


@pytest.mark.parametrize(("arm", "expected"), [
    ("baseline", 6), ("no_scheduler", 6), ("no_bn", 0), ("notebook_no_bn", 1), ("alternating_bn", 3)])
def test_bn_layers_per_arm(arm, expected):
    model = build_model(as_config(load_spec().config(arm, "full")))
    assert count_bn(model) == expected


def test_notebook_no_bn_has_its_bn_after_conv_4():
    layers = list(build_model(as_config(load_spec().config("notebook_no_bn", "full"))))
    convs = [i for i, m in enumerate(layers) if isinstance(m, torch.nn.Conv2d)]
    assert isinstance(layers[convs[3] + 1], torch.nn.BatchNorm2d)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in layers) == 1


def test_full_model_matches_the_notebook_size():
    model = build_model(as_config(load_spec().config("baseline", "full")))
    assert sum(p.numel() for p in model.parameters()) == 1_334_624  # the notebook ConvNet, BN included


def test_scheduler_is_attached_to_the_optimizer_that_steps(smoke):
    model = build_model(smoke)
    optimizer, scheduler = make_optimizer(model, smoke)
    assert scheduler.optimizer is optimizer
    _, none = make_optimizer(model, dataclasses.replace(smoke, scheduler="none"))
    assert none is None


def test_recorded_lr_follows_the_schedule(synthetic_cifar, tiny):
    cfg = apply_overrides(tiny, {"epochs": 4, "step_size": 2, "gamma": 0.5})
    lrs = [e.lr for e in train_one(cfg, 0, synthetic_cifar).epochs]
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.05])
    flat = [e.lr for e in train_one(dataclasses.replace(cfg, scheduler="none"), 0, synthetic_cifar).epochs]
    assert flat == [0.1] * 4


def test_scheduler_really_changes_the_lr_the_optimizer_uses(synthetic_cifar, tiny):
    """The notebook's bug, made impossible: a schedule that sets lr to ~0 after epoch 1 must
    freeze the (BN-free) model, so epoch 2 scores exactly as epoch 1. Without the schedule
    (the notebook's effective behaviour) the model keeps changing."""
    cfg = apply_overrides(tiny, {"bn": "none", "step_size": 1, "gamma": 1e-30, "test_every_epoch": True})
    frozen = train_one(cfg, 0, synthetic_cifar).epochs
    assert frozen[1].lr < 1e-29
    assert (frozen[1].val_acc, frozen[1].test_acc) == (frozen[0].val_acc, frozen[0].test_acc)
    moving = train_one(dataclasses.replace(cfg, scheduler="none"), 0, synthetic_cifar).epochs
    assert moving[1].train_loss != pytest.approx(frozen[1].train_loss, abs=1e-6)


def test_streams_are_independent_and_stable():
    s = stream_seeds(7)
    assert len(set(s.values())) == 3
    assert s == stream_seeds(7) and s != stream_seeds(8)
    a = torch.randperm(100, generator=generator(3, "order"))
    assert torch.equal(a, torch.randperm(100, generator=generator(3, "order")))
    assert not torch.equal(a, torch.randperm(100, generator=generator(3, "augment")))
    with pytest.raises(ValueError, match="`stream` must be one of"):
        stream_seed(1, "dropout")
    with pytest.raises(ValueError, match="`seed` must be an integer >= 0"):
        stream_seed(-1, "init")


def test_same_seed_pairs_init_across_arms_with_the_same_architecture():
    spec = load_spec()
    seed = stream_seed(0, "init")
    hashes = {arm: weights_hash(init_model(as_config(spec.config(arm, "quick")), seed)) for arm in spec.arm_names}
    assert len(set(hashes.values())) == 1  # BatchNorm draws no random numbers
    wider = weights_hash(init_model(apply_overrides(as_config(spec.config("baseline", "quick")), {"width": 20}), seed))
    assert wider not in hashes.values()
    assert weights_hash(init_model(as_config(spec.config("baseline", "quick")), stream_seed(1, "init"))) != hashes["baseline"]


def test_same_seed_and_config_reproduce_on_cpu(synthetic_cifar, tiny):
    a, b = train_one(tiny, 3, synthetic_cifar), train_one(tiny, 3, synthetic_cifar)
    assert [metrics(e) for e in a.epochs] == [metrics(e) for e in b.epochs]
    assert np.array_equal(a.test_predictions, b.test_predictions)
    c = train_one(tiny, 4, synthetic_cifar)
    assert c.init_hash != a.init_hash and c.streams != a.streams


def test_paired_arms_share_streams_and_init(synthetic_cifar, tiny):
    a = train_one(tiny, 5, synthetic_cifar)
    b = train_one(dataclasses.replace(tiny, scheduler="none"), 5, synthetic_cifar)
    assert a.streams == b.streams and a.init_hash == b.init_hash
    assert metrics(a.epochs[0]) == metrics(b.epochs[0])  # same first epoch: only the later lr differs


def test_result_contents(synthetic_cifar, smoke):
    r = train_one(smoke, 0, synthetic_cifar)
    assert r.status == "complete" and r.diverged_epoch is None
    assert len(r.epochs) == smoke.epochs and r.test_acc == r.epochs[-1].test_acc
    assert r.test_predictions.shape == (smoke.test_size,) and r.test_predictions.dtype == np.uint8
    assert r.n_bn == 6 and r.precision in ("bf16", "fp32") and r.wall_time_s > 0


def test_divergence_ends_the_run_not_the_study(synthetic_cifar, smoke):
    r = train_one(apply_overrides(smoke, {"lr": 1e6, "bn": "none"}), 0, synthetic_cifar)
    assert r.status == "diverged" and r.diverged_epoch == 1
    assert r.test_acc is None and r.test_predictions is None
    assert not np.isfinite(r.epochs[-1].train_loss)


def test_precision_auto_on_a_cpu_picks_bf16_only_with_amx(monkeypatch):
    """AVX512-BF16 without AMX made bf16 1.5-1.7x slower than fp32: auto must not pick it there."""
    from study.cifar import train

    cpu = torch.device("cpu")
    for amx, avx512_bf16, want in ((True, True, "bf16"), (False, True, "fp32"), (False, False, "fp32")):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda b=avx512_bf16: b)
        assert train.resolve_precision("auto", cpu) == want
        assert train.device_name(cpu).endswith(f"({train.cpu_arithmetic()})")
    assert train.resolve_precision("fp32", cpu) == "fp32"
