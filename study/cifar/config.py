"""The built-in experiment's config: one flat, frozen dataclass whose defaults are the notebook.

The defaults are what the course notebook *actually* ran (not what its text says): SGD at a
constant-then-stepped lr of 0.1, weight decay 1e-4, no momentum, batch 100, 10 epochs, random
horizontal flip, Normalize(0.5, 0.5), BatchNorm after convs 1-6. Presets and study arms are
plain override dicts on top of these defaults, validated before any training starts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from analysis.contract import config_hash
from study.params import ConfigError, suggest
from study.seeds import PER_SEED_SPLIT, stream_seed

N_CONVS = 7  # the notebook's ConvNet has seven convolutions
BN_NAMED = {
    "all": (1, 2, 3, 4, 5, 6),  # the notebook's baseline: BN after every conv but the last
    "none": (),
    "alternating": (1, 3, 5),  # every other conv, starting with the first
}


@dataclass(frozen=True)
class Config:
    # --- model ---------------------------------------------------------------------------
    width: int = 100  # channels of convs 1-6, as in the notebook
    # BatchNorm after which convs: "all" | "none" | "alternating" | list of 1-based conv
    # indices. The notebook's "no BN" model really was [4] (one BN was left after conv 4).
    bn: str | tuple[int, ...] = "all"
    # --- data ----------------------------------------------------------------------------
    train_size: int = 45_000  # the 50k CIFAR-10 training images minus the validation split
    val_size: int = 5_000  # held out from training, for tuning and curves; never the test set
    test_size: int = 10_000  # the whole CIFAR-10 test set; smaller only in smoke tests
    # Which images are validation: one split for all arms and seeds (the default, 0), or -1
    # (PER_SEED_SPLIT): each seed draws its own from its "split" stream (study.seeds), so
    # conclusions cover the split too. Both arms of a seed still share it (pairing kept); the
    # scored test subset never depends on it.
    split_seed: int = 0
    flip: bool = True  # RandomHorizontalFlip(p=0.5), as in the notebook
    # --- optimisation --------------------------------------------------------------------
    epochs: int = 10
    batch_size: int = 100
    lr: float = 0.1  # the notebook *says* 0.001 but train() rebuilt SGD with lr=0.1
    momentum: float = 0.0  # the notebook's SGD had none
    weight_decay: float = 1e-4
    scheduler: str = "step"  # "step" (StepLR on the optimizer that steps) | "none"
    step_size: int = 5  # StepLR: halve the lr every 5 epochs, the notebook's stated intent
    gamma: float = 0.5
    # --- engine --------------------------------------------------------------------------
    # "auto" = bf16 autocast where the hardware does bf16 natively (CUDA, CPUs with AMX or
    # AVX512-BF16), else fp32. Part of the recorded config because it can shift accuracy.
    precision: str = "auto"
    # Evaluate the test set after every epoch (curves) or only after the last (CPU budget).
    test_every_epoch: bool = True

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def bn_layers(self) -> tuple[int, ...]:
        """1-based indices of the convs followed by a BatchNorm layer."""
        return BN_NAMED[self.bn] if isinstance(self.bn, str) else self.bn

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if isinstance(self.bn, tuple):
            d["bn"] = list(self.bn)
        return d

    def for_run(self, seed: int) -> Config:
        """The config one run of `seed` trains: itself, or with a per-seed split a `RunConfig`
        holding the split that seed draws (both arms of a seed draw the same)."""
        if self.split_seed != PER_SEED_SPLIT:
            return self
        values = {f.name: getattr(self, f.name) for f in fields(Config)}
        return RunConfig(**values, run_split_seed=stream_seed(seed, "split"))

    def hash(self) -> str:
        """Short content hash of the resolved config (the identity of what a run trains)."""
        return config_hash(self.to_dict())


@dataclass(frozen=True)
class RunConfig(Config):
    """An arm's config with `split_seed = -1`, resolved for one run (`Config.for_run`): the
    split is `run_split_seed`. Only trained, never stored: a run records its arm's config."""
    run_split_seed: int = 0


FIELD_TYPES = {f.name: f.type for f in fields(Config)}


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _validate(c: Config) -> None:
    for name in ("width", "train_size", "val_size", "test_size", "epochs", "batch_size", "step_size"):
        value = getattr(c, name)
        _check(type(value) is int and value > 0, f"`{name}` must be a positive integer, got {value!r}")
    _check(type(c.split_seed) is int and c.split_seed >= PER_SEED_SPLIT,
           f"`split_seed` must be an integer >= 0, or -1 for a split per seed, got {c.split_seed!r}")
    _check(c.train_size + c.val_size <= 50_000, f"`train_size` + `val_size` must be <= 50000 (CIFAR-10 has 50000 training images), got {c.train_size} + {c.val_size}")
    _check(c.test_size <= 10_000, f"`test_size` must be <= 10000, got {c.test_size}")
    for name, lo_open in (("lr", True), ("gamma", True), ("momentum", False), ("weight_decay", False)):
        value = getattr(c, name)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
        ok = ok and (value > 0 if lo_open else value >= 0)
        _check(ok, f"`{name}` must be a number {'>' if lo_open else '>='} 0, got {value!r}")
    _check(c.momentum < 1, f"`momentum` must be < 1, got {c.momentum!r}")
    _check(c.scheduler in ("step", "none"), f"`scheduler` must be one of 'step', 'none', got {c.scheduler!r}")
    _check(c.precision in ("auto", "fp32", "bf16"), f"`precision` must be one of 'auto', 'fp32', 'bf16', got {c.precision!r}")
    for name in ("flip", "test_every_epoch"):
        _check(isinstance(getattr(c, name), bool), f"`{name}` must be true or false, got {getattr(c, name)!r}")
    if isinstance(c.bn, str):
        _check(c.bn in BN_NAMED, f"`bn` must be one of {', '.join(map(repr, BN_NAMED))} or a list of conv indices 1-{N_CONVS}, got {c.bn!r}")
    else:
        ok = isinstance(c.bn, tuple) and all(type(i) is int and 1 <= i <= N_CONVS for i in c.bn)
        _check(ok and len(set(c.bn)) == len(c.bn) and list(c.bn) == sorted(c.bn),
               f"`bn` list must hold distinct, increasing conv indices in 1-{N_CONVS}, got {list(c.bn) if isinstance(c.bn, tuple) else c.bn!r}")


def _coerce(key: str, value: Any) -> Any:
    """TOML/CLI values into field types; reject what would silently mean something else."""
    if key == "bn" and isinstance(value, list):
        if not all(type(i) is int for i in value):
            raise ConfigError(f"`bn` list must hold integers (conv indices 1-{N_CONVS}), got {value!r}")
        return tuple(sorted(value))
    if key in ("lr", "gamma", "momentum", "weight_decay") and type(value) is int:
        return float(value)  # 0 or 1 written without a decimal point
    want = FIELD_TYPES[key]
    if want in ("int",) and type(value) is not int:
        raise ConfigError(f"`{key}` must be an integer, got {value!r} ({type(value).__name__})")
    if want == "float" and type(value) is not float:
        raise ConfigError(f"`{key}` must be a number, got {value!r} ({type(value).__name__})")
    if want == "bool" and type(value) is not bool:
        raise ConfigError(f"`{key}` must be true or false, got {value!r}")
    if want == "str" and type(value) is not str:
        raise ConfigError(f"`{key}` must be a string, got {value!r}")
    return value


def apply_overrides(config: Config, overrides: Mapping[str, Any], *, where: str = "overrides") -> Config:
    """Return `config` with `overrides` applied; unknown keys and wrong types raise ConfigError."""
    clean = {}
    for key, value in overrides.items():
        if key not in FIELD_TYPES:
            raise ConfigError(f"unknown config key {key!r} in {where}{suggest(key, FIELD_TYPES)}; valid keys: {', '.join(FIELD_TYPES)}")
        clean[key] = _coerce(key, value)
    return dataclasses.replace(config, **clean)


def preset_config(preset: str) -> Config:
    """The default Config at one of the built-in sizes (the default spec's [presets.NAME])."""
    # The spec owns [base] and the presets; imported here, not at the top: study.spec's default
    # spec names study.cifar.experiment, which imports this module.
    from study.spec import load_spec

    spec = load_spec()
    if preset not in spec.presets:
        raise ConfigError(f"unknown preset {preset!r}{suggest(preset, spec.presets)}; "
                          f"valid presets: {', '.join(spec.presets)}")
    return apply_overrides(Config(), {**spec.base, **spec.presets[preset]}, where=f"preset {preset!r}")
