"""seedwise.study: run ablation arms over many seeds and store every run with its provenance.

For your own experiment: `run_study(spec, seeds=5)` (study.api), and `rng(seed, stream)` /
`stream_seed(seed, stream)` (study.seeds) for the random streams that pair arms by seed.

The public names below are imported on first use (PEP 562), not with the package: a worker
running a torch-free experiment, or `import study.store`, must not pay for torch; and
`python -m study.run` must not import study.run twice (once through this package, once as
__main__).
"""

from __future__ import annotations

import importlib

# public name -> the module that defines it
_EXPORTS = {
    **dict.fromkeys(["PRESETS", "Config"], "study.notebook.config"),
    **dict.fromkeys(["Cifar10", "DataError", "load_cifar10"], "study.notebook.data"),
    **dict.fromkeys(["EpochRecord", "RunResult", "train_one"], "study.notebook.train"),
    "ConfigError": "study.params",
    **dict.fromkeys(["rng", "stream_seed"], "study.seeds"),
    **dict.fromkeys(["SpecError", "StudySpec", "load_spec"], "study.spec"),
    **dict.fromkeys(["StudyResult", "run_study"], "study.api"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'study' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
