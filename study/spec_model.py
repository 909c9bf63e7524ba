"""The parsed study spec (study.spec reads and validates the TOML): its frozen objects, and
the layering of one arm's config: the experiment's defaults -> [base] -> the preset -> the
task -> --set -> the arm (the arm is the change under study, so it is applied last)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from analysis.contract import stable_hash
from analysis.stats import direction as directions
from study import params
from study.params import ConfigError, suggest


class SpecError(ValueError):
    """The study spec is invalid; the message names the file, the key and the valid choices."""


@dataclass(frozen=True)
class AnalysisPlan:
    metric: str = "test_acc"
    baseline: str = "baseline"
    alpha: float = 0.05
    margin: float = 0.5  # equivalence margin, in the metric's units
    direction: str | None = None  # which way is better for `metric`, as declared (None: its name's)
    chance: float | None = None  # the metric of a model that learned nothing, if known
    metrics: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # other metrics' METRIC_KEYS

    def direction_of(self, metric: str | None = None) -> str:
        """Which way is better for `metric` (None: the analysis metric): declared, else what
        its name says (`analysis.stats.direction`); UndeclaredDirection when neither says."""
        if metric is None or metric == self.metric:
            return directions.resolve(self.metric, self.direction)
        return directions.resolve(metric, self.metrics.get(metric, {}).get("direction"))

    def declared(self) -> dict[str, Any]:
        """study.json's "analysis": the four keys every plan has, then only what was declared
        (an undeclared direction is not written as if it were, so readers infer it as here)."""
        out: dict[str, Any] = {"metric": self.metric, "baseline": self.baseline, "alpha": self.alpha,
                               "margin": self.margin}
        out.update({k: v for k, v in (("direction", self.direction), ("chance", self.chance)) if v is not None})
        if self.metrics:
            out["metrics"] = {m: dict(d) for m, d in self.metrics.items()}
        return out

    def identity_blob(self) -> dict[str, Any]:
        """What of the plan enters a study's identity. The four fields that existed when
        identities were introduced are hashed as they were (committed studies keep resolving);
        a declared `direction` joins only when it is not "maximize", `chance` and other
        metrics' declarations never (they change no run)."""
        blob: dict[str, Any] = {"metric": self.metric, "baseline": self.baseline, "alpha": self.alpha,
                                "margin": self.margin}
        if self.direction not in (None, "maximize"):
            blob["direction"] = self.direction
        return blob


@dataclass(frozen=True)
class TuneSpace:
    """`[tune]`: the objective and, per config key, its range (`low`/`high`, `log`, `int`; or
    `choices`). A bound may name another config key (`high = "epochs"`): the arm's value."""
    metric: str
    direction: str
    ranges: Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Arm:
    name: str
    overrides: Mapping[str, Any]
    description: str = ""
    tune: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # its own [arms.X.tune] ranges


@dataclass(frozen=True)
class Task:
    """`[tasks.NAME]`: one task (dataset) of the study, as overrides of declared keys."""
    name: str
    overrides: Mapping[str, Any]
    description: str = ""
    chance: float | None = None  # [tasks.NAME.analysis] chance: the metric of a model that learned nothing
    reference: float | None = None  # [tasks.NAME.analysis] reference: a score that counts as 1 across tasks


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
    experiment: str | None = None  # "module:function" of the experiment
    command: str | None = None  # or its command template
    folder: str | None = None  # the spec file's folder: on sys.path, and the command's cwd
    tune: TuneSpace | None = None
    sequential: Mapping[str, Any] | None = None  # [analysis] sequential: run until decided (study.until_decided)
    timeout: float | None = None  # seconds a run may take (the runner's --timeout overrides it)
    seed_streams: Mapping[str, str] = field(default_factory=dict)  # declared stream -> what it draws
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # [presets.NAME]: overrides
    tasks: Mapping[str, Task] = field(default_factory=dict)  # [tasks.NAME] (study.tasks runs each)
    task: str | None = None  # the task whose runs this spec makes (study.tasks sets it); None: no task layer
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # [defaults.cuda|cpu]

    def default(self, key: str, has_cuda: bool) -> Any:
        """[defaults.cuda] / [defaults.cpu]'s `key` for this device (None: not declared)."""
        return self.defaults.get("cuda" if has_cuda else "cpu", {}).get(key)

    @property
    def arm_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.arms)

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise SpecError(f"unknown arm {name!r}{suggest(name, self.arm_names)}; arms in {self.source}: {', '.join(self.arm_names)}")

    def config(self, arm: str, preset: str | None, extra: Mapping[str, Any] | None = None) -> Any:
        """Resolve one arm, layer by layer: [base] (every key and its default), the preset, the
        task (`self.task`), --set, the arm's overrides; a plain dict. Each value keeps its default's
        type, unless the experiment's module checks its configs itself (`check_config`,
        docs/experiments.md)."""
        task = self.tasks[self.task].overrides if self.task is not None else {}
        layers = [(self.preset(preset), f"[presets.{preset}] of {self.source}"),
                  (task, f"[tasks.{self.task}] of {self.source}"), (extra or {}, "--set"),
                  (self.arm(arm).overrides, f"[arms.{arm}] of {self.source}")]
        check = self.config_check()
        try:
            cfg = dict(self.base)
            for overrides, where in layers:
                cfg = params.apply(cfg, overrides, where=where, typed=check is None)
            if check is not None:
                check(cfg)
            return cfg
        except (ConfigError, ValueError, TypeError) as e:
            raise SpecError(f"{e} (arm {arm!r} of {self.source}{f', preset {preset}' if preset else ''})"
                            if check is not None else str(e)) from None

    def config_check(self):
        """The experiment module's `check_config(config)`, if it defines one (None otherwise, and
        for a command or a module that does not import: make_plan reports that)."""
        if self.experiment is None:
            return None
        from study.experiment import config_checker

        return config_checker(self.experiment, self.folder)

    def preset(self, name: str | None) -> Mapping[str, Any]:
        """The overrides of preset `name` (None: no preset, nothing to override)."""
        if name is None:
            return {}
        if name not in self.presets:
            declared = f"its presets: {', '.join(self.presets)}" if self.presets else "it declares no [presets.NAME]"
            raise SpecError(f"unknown preset {name!r}{suggest(name, self.presets)} for {self.source}; {declared}")
        return self.presets[name]

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

    def identity(self, preset: str | None, extra: Mapping[str, Any] | None = None) -> str:
        """Hash of everything that defines the study's runs (not how many seeds): results of
        different experiments, specs, presets or --set overrides never share a study."""
        arms = {a.name: self.config(a.name, preset, extra) for a in self.arms}
        blob: dict[str, Any] = {
            "preset": preset,
            "arms": {name: (cfg if isinstance(cfg, dict) else cfg.to_dict()) for name, cfg in arms.items()},
            "analysis": self.analysis.identity_blob(),
            "experiment": self.experiment or {"command": self.command},
        }
        if self.task is not None:  # a task's runs are its own, even where its config equals another's
            blob["task"] = self.task
        return stable_hash(blob)
