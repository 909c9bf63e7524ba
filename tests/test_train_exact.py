"""The engine's exact numbers, pinned: both paths (`train_one`, and `train_group`'s vmapped step)
must reproduce, bit for bit, what they produced when these numbers were recorded, so that a
refactoring of the epoch loop cannot move a stored result even by one float32 rounding. The
equivalence tests in test_group.py compare the two paths only up to floating-point noise.

Recorded on the synthetic data (tests/conftest.py), fp32, one thread, on a CPU whose matmul
path is "avx2" (study.cifar.train.cpu_arithmetic): other arithmetic gives other roundings."""

import hashlib

import pytest
import torch

from study.cifar.config import apply_overrides
from study.cifar.group import train_group
from study.cifar.train import cpu_arithmetic, train_one

RECORDED_ON = "avx2"
# (train_loss, train_acc, val_acc, test_acc) per epoch, then sha256[:16] of the test predictions
ALONE_SEED_3 = ([(2.240403747558594, 19.5, 8.0, 7.5), (1.893090057373047, 36.0, 28.5, 27.0)], "88bc9713738d0010")
GROUP_SEEDS_3_5 = [
    ([(2.240262508392334, 19.3, 8.0, 7.5), (1.8893331289291382, 36.3, 28.5, 27.0)], "1c346877a3f3b1f8"),
    ([(2.2998878955841064, 9.1, 8.0, 7.5), (2.2624080181121826, 25.2, 19.0, 16.5)], "75504b373b360899"),
]

pytestmark = pytest.mark.skipif(cpu_arithmetic() != RECORDED_ON,
                                reason=f"exact numbers recorded on a CPU with {RECORDED_ON} arithmetic")


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the summation order of CPU kernels can depend on the thread count
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def config(smoke):
    return apply_overrides(smoke, {"val_size": 200, "test_size": 200, "precision": "fp32", "test_every_epoch": True})


def exact(result):
    return ([(e.train_loss, e.train_acc, e.val_acc, e.test_acc) for e in result.epochs],
            hashlib.sha256(result.test_predictions.tobytes()).hexdigest()[:16])


def test_one_seed_reproduces_its_recorded_numbers_exactly(synthetic_cifar, config, one_thread):
    assert exact(train_one(config, 3, synthetic_cifar, device="cpu")) == ALONE_SEED_3


def test_a_group_reproduces_its_recorded_numbers_exactly(synthetic_cifar, config, one_thread):
    assert [exact(r) for r in train_group(config, [3, 5], synthetic_cifar, device="cpu")] == GROUP_SEEDS_3_5
