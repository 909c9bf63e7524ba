import hashlib
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from study.cifar.config import preset_config

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"


# The columns of runs.csv that the analysis and the paper read of a study of the built-in
# experiment (what its own layout wrote before it ran through the user's contract).
BUILTIN_RUN_COLUMNS = ["arm", "seed", "status", "test_acc", "val_acc", "train_acc", "train_loss", "epochs_run",
                       "diverged_epoch", "n_bn", "bn_layers", "lr_final", "wall_time_s", "device", "precision",
                       "threads", "group", "config_hash", "init_hash", "data_fingerprint", "git_commit",
                       "trial_number", "error"]


def builtin_spec(data: dict) -> dict:
    """A spec of the built-in experiment as data: `data` (name, arms, ...) over what the default
    spec declares about its experiment (experiment, [base], [presets], [defaults], seed_streams,
    the analysis metric); `data["analysis"]` adds to the default metric."""
    import tomllib
    from importlib import resources

    default = tomllib.loads(resources.files("study.specs").joinpath("notebook_ablation.toml").read_text())
    out = {k: default[k] for k in ("experiment", "base", "presets", "defaults", "seed_streams")}
    return {**out, **data, "analysis": {"metric": "test_acc", **data.get("analysis", {})}}


def data_source() -> str | None:
    src = os.environ.get("SEEDWISE_DATA") or (str(SHARED) if SHARED.exists() else None)
    return src if src and Path(src).exists() else None


@pytest.fixture(scope="session")
def cifar():
    """The real CIFAR-10 (JPEG copy) as tensors; decoded once and cached. Only for tests that
    need real images (accuracy, the data pipeline); training tests use `synthetic_cifar`."""
    src = data_source()
    if src is None:
        pytest.skip("no CIFAR-10 source: set SEEDWISE_DATA (make test does)")
    from study.cifar.data import load_cifar10

    return load_cifar10(src, download=False)


def make_synthetic_cifar(n_train: int = 2000, n_test: int = 1000, seed: int = 0, noise: float = 0.3):
    """A small CIFAR-shaped `Cifar10` (uint8 3x32x32 images, 10 classes, balanced labels in a
    shuffled order) that the engine trains on exactly as on the real one. Each class is a coarse
    4x4-block colour template under `noise` uniform pixel noise: learnable (the smoke preset gets
    from 10% to ~20% in two epochs, so seeds end up with different predictions) but not trivial.
    Deterministic in `seed`; built in well under a second, with no archive needed."""
    import torch

    from study.cifar.data import Cifar10

    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, size=(10, 3, 4, 4)).astype(np.float32).repeat(8, axis=2).repeat(8, axis=3)

    def images(n):
        labels = rng.permutation(np.arange(n) % 10)
        pixels = (1 - noise) * templates[labels] + noise * rng.integers(0, 256, size=(n, 3, 32, 32))
        return torch.from_numpy(pixels.round().astype(np.uint8)), torch.from_numpy(labels.astype(np.int64))

    (train_x, train_y), (test_x, test_y) = images(n_train), images(n_test)
    digest = hashlib.sha256()
    for t in (train_x, train_y, test_x, test_y):
        digest.update(t.numpy().tobytes())
    return Cifar10(train_x, train_y, test_x, test_y, fingerprint=digest.hexdigest(),
                   source=f"synthetic CIFAR-shaped data (tests, seed {seed})", cache_path="")


@pytest.fixture(scope="session")
def synthetic_cifar():
    """2,000 training and 1,000 test images from `make_synthetic_cifar`: room for the smoke
    preset's split (1,000 train + 500 val, 1,000 test), so training tests run without CIFAR-10."""
    return make_synthetic_cifar()


def pytest_configure(config):
    """A suite started in the background (`make test &`, nohup, a CI step) inherits SIGINT
    ignored, every `python -m study.*` it starts would inherit that too, and Python keeps an
    ignored SIGINT ignored: the Ctrl-C tests would send a signal nobody hears. Restore Python's
    own handler, so children start with the default one."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` (pyproject.toml) need CUDA: skipped, with that reason, without it."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    import torch

    if not torch.cuda.is_available():
        for item in gpu_tests:
            item.add_marker(pytest.mark.skip(reason="needs CUDA (marked gpu)"))


@pytest.fixture
def smoke():
    return preset_config("smoke")
