"""Study specs: a base config, named arms as overrides, seeds and the analysis plan (TOML).

Everything is validated when the spec is loaded, so a typo fails before any training starts.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from study.config import Config, ConfigError, apply_overrides, preset_config, suggest

DEFAULT_SPEC = "notebook_ablation.toml"
TOP_KEYS = {"name", "description", "seeds", "first_seed", "base", "analysis", "arms"}
ANALYSIS_KEYS = {"metric", "baseline", "alpha", "margin"}
METRICS = ("test_acc", "val_acc")


class SpecError(ValueError):
    """The study spec is invalid; the message names the file, the key and the valid choices."""


@dataclass(frozen=True)
class AnalysisPlan:
    metric: str = "test_acc"
    baseline: str = "baseline"
    alpha: float = 0.05
    margin: float = 0.5  # equivalence margin in accuracy points


@dataclass(frozen=True)
class Arm:
    name: str
    overrides: Mapping[str, Any]
    description: str = ""


@dataclass(frozen=True)
class StudySpec:
    name: str
    arms: tuple[Arm, ...]
    base: Mapping[str, Any] = field(default_factory=dict)
    seeds: int = 5
    first_seed: int = 0
    analysis: AnalysisPlan = AnalysisPlan()
    description: str = ""
    source: str = "<memory>"

    @property
    def arm_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.arms)

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise SpecError(f"unknown arm {name!r}{suggest(name, self.arm_names)}; arms in {self.source}: {', '.join(self.arm_names)}")

    def config(self, arm: str, preset: str, extra: Mapping[str, Any] | None = None) -> Config:
        """Resolve one arm: preset -> spec base -> command-line --set -> the arm's overrides."""
        try:
            cfg = preset_config(preset)
            cfg = apply_overrides(cfg, self.base, where=f"[base] of {self.source}")
            cfg = apply_overrides(cfg, extra or {}, where="--set")
            return apply_overrides(cfg, self.arm(arm).overrides, where=f"[arms.{arm}] of {self.source}")
        except ConfigError as e:
            raise SpecError(str(e)) from None

    def select(self, names: str | None) -> tuple[str, ...]:
        """Arms named in a comma-separated `--arms` value (all when None), in spec order."""
        if names is None:
            return self.arm_names
        wanted = [n.strip() for n in names.split(",") if n.strip()]
        if not wanted:
            raise SpecError(f"--arms is empty; arms in {self.source}: {', '.join(self.arm_names)}")
        for n in wanted:
            self.arm(n)
        return tuple(n for n in self.arm_names if n in wanted)

    def identity(self, preset: str, extra: Mapping[str, Any] | None = None) -> str:
        """Hash of everything that defines the study's runs (not how many seeds): results of
        different specs, presets or --set overrides never share a study."""
        blob = {
            "preset": preset,
            "arms": {a.name: self.config(a.name, preset, extra).to_dict() for a in self.arms},
            "analysis": vars(self.analysis),
        }
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:12]


def _expect(cond: bool, msg: str) -> None:
    if not cond:
        raise SpecError(msg)


def parse_spec(data: Mapping[str, Any], source: str = "<memory>") -> StudySpec:
    for key in data:
        _expect(key in TOP_KEYS, f"{source}: unknown top-level key {key!r}{suggest(key, TOP_KEYS)}; valid keys: {', '.join(sorted(TOP_KEYS))}")
    name = data.get("name")
    _expect(isinstance(name, str) and name.strip() != "" and "/" not in name,
            f"{source}: `name` must be a non-empty string without '/', got {name!r}")
    for key in ("seeds", "first_seed"):
        if key in data:
            v = data[key]
            ok = type(v) is int and (v > 0 if key == "seeds" else v >= 0)
            _expect(ok, f"{source}: `{key}` must be an integer {'> 0' if key == 'seeds' else '>= 0'}, got {v!r}")
    base = data.get("base", {})
    _expect(isinstance(base, dict), f"{source}: [base] must be a table of config keys")

    analysis_raw = data.get("analysis", {})
    _expect(isinstance(analysis_raw, dict), f"{source}: [analysis] must be a table")
    for key in analysis_raw:
        _expect(key in ANALYSIS_KEYS, f"{source}: unknown key {key!r} in [analysis]{suggest(key, ANALYSIS_KEYS)}; valid keys: {', '.join(sorted(ANALYSIS_KEYS))}")
    plan = AnalysisPlan(**analysis_raw)
    _expect(plan.metric in METRICS, f"{source}: [analysis] metric must be one of {', '.join(METRICS)}, got {plan.metric!r}")
    _expect(isinstance(plan.alpha, float) and 0 < plan.alpha < 1, f"{source}: [analysis] alpha must be a number in (0, 1), got {plan.alpha!r}")
    _expect(isinstance(plan.margin, (int, float)) and not isinstance(plan.margin, bool) and plan.margin > 0,
            f"{source}: [analysis] margin must be a positive number of accuracy points, got {plan.margin!r}")

    arms_raw = data.get("arms")
    _expect(isinstance(arms_raw, dict) and len(arms_raw) > 0, f"{source}: the spec needs at least one arm, e.g. [arms.baseline]")
    arms = []
    for arm_name, table in arms_raw.items():
        _expect(isinstance(table, dict), f"{source}: [arms.{arm_name}] must be a table")
        overrides = {k: v for k, v in table.items() if k != "description"}
        description = table.get("description", "")
        _expect(isinstance(description, str), f"{source}: [arms.{arm_name}] description must be a string")
        arms.append(Arm(arm_name, overrides, description))
    spec = StudySpec(name=name.strip(), arms=tuple(arms), base=base, seeds=data.get("seeds", 5),
                     first_seed=data.get("first_seed", 0), analysis=plan,
                     description=data.get("description", ""), source=source)
    # Resolve every arm under the default preset now: unknown keys and bad values fail here.
    for arm in spec.arm_names:
        spec.config(arm, "full")
    _expect(plan.baseline in spec.arm_names,
            f"{source}: [analysis] baseline {plan.baseline!r} is not an arm{suggest(plan.baseline, spec.arm_names)}; arms: {', '.join(spec.arm_names)}")
    return spec


def load_spec(path: str | Path | None = None) -> StudySpec:
    """Load a spec file, or the default study shipped with the package when `path` is None."""
    if path is None:
        text = resources.files("study.specs").joinpath(DEFAULT_SPEC).read_text()
        source = f"the default spec ({DEFAULT_SPEC})"
    else:
        p = Path(path)
        _expect(p.is_file(), f"spec file {str(p)!r} does not exist")
        text, source = p.read_text(), str(p)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{source} is not valid TOML: {e}") from None
    return parse_spec(data, source)
