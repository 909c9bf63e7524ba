import os
from pathlib import Path

import pytest

from study.notebook.config import preset_config

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"


def data_source() -> str | None:
    src = os.environ.get("SEEDWISE_DATA") or (str(SHARED) if SHARED.exists() else None)
    return src if src and Path(src).exists() else None


@pytest.fixture(scope="session")
def cifar():
    """The real CIFAR-10 (JPEG copy) as tensors; decoded once and cached."""
    src = data_source()
    if src is None:
        pytest.skip("no CIFAR-10 source: set SEEDWISE_DATA (make test does)")
    from study.notebook.data import load_cifar10

    return load_cifar10(src, download=False)


@pytest.fixture
def smoke():
    return preset_config("smoke")
