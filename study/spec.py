"""Study specs: which experiment, a base config, named arms as overrides, seeds, the analysis
plan and the tuning space (TOML). The format, in one place:

    experiment = "mymodule:train"   # or command = "python train.py --lr {lr} --seed {seed}"
                                    # (the built-in one: "study.cifar.experiment:train")
    folder = "."                    # where the module is / the command runs (default: the
                                    # spec file's folder; relative paths are from there)
    name = "my-ablation"
    seeds = 5                       # per arm; first_seed = 0
    timeout = 3600                  # seconds a run may take (killed and failed past it); none by default
    seed_streams = ["order", "init"]  # the study.seeds streams the experiment draws from: what runs
                                    # with the same seed share (the report says so only then); or a
                                    # table, stream = "what it draws", in the experiment's words
    [base]                          # EVERY config key the experiment reads, with its default
    lr = 0.1
    [defaults.cuda]                 # run options' defaults per device kind (cuda, cpu): the preset
    preset = "full"                 # `--preset auto` means, the seeds per train_many call (--group)
    group = 8
    [presets.quick]                 # a size chosen with --preset quick: overrides of declared keys
    epochs = 2                      # (over [base]; --set and the arms apply on top of it)
    [arms.baseline]                 # an arm = overrides of declared keys (+ description)
    [arms.small_lr]
    lr = 0.01
    [analysis]                      # metric, direction, baseline, margin (metric units), alpha, chance
    metric = "val_loss"
    direction = "minimize"          # absent: what the name says (loss, acc, ...), else an error
    [analysis.metrics.val_acc]      # any other metric's own direction, margin, chance (--metric)
    direction = "maximize"
    margin = 0.5
    [tune]                          # search space + objective for `python -m study.tune`
    metric = "val_acc"              # never the [analysis] metric: tuning does not select on it
    direction = "maximize"
    lr = {low = 1e-3, high = 1.0, log = true}
    gamma = {low = 0.1, high = 0.9, optional = true}   # searched only with --tune-also gamma
    [arms.small_lr.tune]            # an arm's own range of a key, replacing [tune]'s for it
    lr = {low = 1e-4, high = 0.1, log = true}
    [tasks.iris]                    # several tasks (study.tasks): each overrides declared keys;
    dataset = "iris"                # a run is (task, arm, seed), seeds pair within a task
    [tasks.iris.analysis]           # per task: chance and reference (for the across-task scores)
    chance = 33.3

Layering of one run's config: the experiment's defaults -> [base] -> the preset -> the task ->
--set -> the arm (the arm is the change under study, so it is applied last).

Everything is validated when the spec is loaded, so a typo fails before any training starts.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from analysis.contract import DIRECTIONS, METRIC_KEYS, SOURCES, STREAM_WORDS, stable_hash
from analysis.stats import direction as directions
from study import params
from study.params import ConfigError, suggest

DEFAULT_SPEC = "notebook_ablation.toml"
TOP_KEYS = {"name", "description", "seeds", "first_seed", "base", "analysis", "arms", "experiment", "command",
            "folder", "tune", "timeout", "seed_streams", "presets", "tasks", "defaults"}
DEVICE_KINDS = ("cuda", "cpu")  # [defaults.KIND]: what the run options default to on that device
DEFAULT_KEYS = {"preset", "group"}
# The experiment of the default spec (study/specs/notebook_ablation.toml): the one name of the
# built-in experiment in the generic modules (the error for a spec naming no experiment, and
# study.migrate's rewrite of studies recorded before specs named it).
BUILTIN_EXPERIMENT = "study.cifar.experiment:train"
ANALYSIS_KEYS = {"metric", "baseline", "alpha", "margin", "direction", "chance", "metrics"}
TUNE_KEYS = {"metric", "direction"}  # every other key of [tune] is a parameter's range
RANGE_KEYS = {"low", "high", "log", "int", "choices", "optional"}  # optional: tuned only with --tune-also KEY


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


def _expect(cond: bool, msg: str) -> None:
    if not cond:
        raise SpecError(msg)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def _analysis(raw: Any, source: str) -> AnalysisPlan:
    _expect(isinstance(raw, dict), f"{source}: [analysis] must be a table")
    for key in raw:
        _expect(key in ANALYSIS_KEYS, f"{source}: unknown key {key!r} in [analysis]{suggest(key, ANALYSIS_KEYS)}; valid keys: {', '.join(sorted(ANALYSIS_KEYS))}")
    _expect("metric" in raw, f"{source}: [analysis] metric is required "
                             "(the name of a metric the experiment returns, e.g. metric = \"val_acc\")")
    raw = dict(raw)
    metrics = _metric_tables(raw.pop("metrics", {}), source)
    plan = AnalysisPlan(**raw)
    _expect(isinstance(plan.metric, str) and plan.metric.strip() != "",
            f"{source}: [analysis] metric must be a non-empty string, got {plan.metric!r}")
    for key, value in metrics.pop(plan.metric, {}).items():  # the analysis metric's own: one place
        _expect(key not in raw or raw[key] == value,
                f"{source}: [analysis] {key} = {raw.get(key)!r} and [analysis.metrics."
                f"{directions.toml_key(plan.metric)}] {key} = {value!r} disagree; declare it once")
        plan = replace(plan, **{key: value})
    plan = replace(plan, metrics=metrics)
    _expect(plan.direction is None or plan.direction in DIRECTIONS, f"{source}: [analysis] direction must be one of {', '.join(DIRECTIONS)}, got {plan.direction!r}")
    _expect(isinstance(plan.alpha, float) and 0 < plan.alpha < 1, f"{source}: [analysis] alpha must be a number in (0, 1), got {plan.alpha!r}")
    _expect(_number(plan.margin) and plan.margin > 0,
            f"{source}: [analysis] margin must be a positive number in the metric's units, got {plan.margin!r}")
    _expect(plan.chance is None or _number(plan.chance),
            f"{source}: [analysis] chance must be a number (the metric of a model that learned nothing), got {plan.chance!r}")
    _expect(plan.direction is not None or directions.from_name(plan.metric) is not None,
            f"{source}: {directions.unsaid(plan.metric)}; declare it under [analysis]: "
            "direction = \"maximize\" (or \"minimize\")")
    return plan


def _metric_tables(raw: Any, source: str) -> dict[str, dict[str, Any]]:
    """`[analysis.metrics.<name>]`: each metric's declared direction, margin and chance."""
    _expect(isinstance(raw, dict), f"{source}: [analysis] metrics must hold one table per metric, "
                                   "e.g. [analysis.metrics.val_loss] direction = \"minimize\"")
    tables = {}
    for metric, table in raw.items():
        where = f"{source}: [analysis.metrics.{directions.toml_key(metric)}]"
        _expect(metric.strip() != "" and isinstance(table, dict), f"{where} must be a table named after a metric")
        for key in table:
            _expect(key in METRIC_KEYS, f"{where}: unknown key {key!r}{suggest(key, METRIC_KEYS)}; valid keys: {', '.join(METRIC_KEYS)}")
        _expect(table.get("direction", "maximize") in DIRECTIONS,
                f"{where}: direction must be one of {', '.join(DIRECTIONS)}, got {table.get('direction')!r}")
        _expect("margin" not in table or (_number(table["margin"]) and table["margin"] > 0),
                f"{where}: margin must be a positive number in the metric's units, got {table.get('margin')!r}")
        _expect("chance" not in table or _number(table["chance"]),
                f"{where}: chance must be a number (the metric of a model that learned nothing), got {table.get('chance')!r}")
        tables[metric] = dict(table)
    return tables


SEQUENTIAL_KEYS = {"first_look", "look_every", "max_seeds", "spending", "spending_param"}


def _sequential(raw: Any, source: str) -> dict[str, Any] | None:
    """`[analysis] sequential = {look_every = 5, max_seeds = 40}`: run until decided by default
    (`study.until_decided`; the values are checked again when the plan is built)."""
    if raw is None:
        return None
    _expect(isinstance(raw, dict), f"{source}: [analysis] sequential must be a table, e.g. "
                                   "sequential = {look_every = 5, max_seeds = 40}")
    for key in raw:
        _expect(key in SEQUENTIAL_KEYS, f"{source}: unknown key {key!r} in [analysis] sequential"
                                        f"{suggest(key, SEQUENTIAL_KEYS)}; valid keys: {', '.join(sorted(SEQUENTIAL_KEYS))}")
    return dict(raw)


def _tune(raw: Any, source: str, analysis: AnalysisPlan, keys) -> TuneSpace:
    _expect(isinstance(raw, dict), f"{source}: [tune] must be a table")
    metric = raw.get("metric", analysis.metric)
    _expect(isinstance(metric, str) and metric != "", f"{source}: [tune] metric must be a string, got {metric!r}")
    direction = raw.get("direction")
    if direction is None:  # the metric's own: declared under [analysis], else its name's
        try:
            direction = analysis.direction_of(metric)
        except directions.UndeclaredDirection:
            raise SpecError(f"{source}: [tune] {directions.unsaid(metric)}; declare it under [tune]: "
                            f"direction = \"maximize\" (or \"minimize\"), or {directions.spec_declaration(metric)}") from None
    _expect(direction in DIRECTIONS, f"{source}: [tune] direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    ranges = _ranges({k: v for k, v in raw.items() if k not in TUNE_KEYS}, source, "[tune]", keys)
    _expect(bool(ranges), f"{source}: [tune] declares no parameter to tune, e.g. lr = {{low = 0.001, high = 1.0, log = true}}")
    return TuneSpace(metric=metric, direction=direction, ranges=ranges)


def _ranges(raw: Mapping[str, Any], source: str, table: str, keys) -> dict[str, dict[str, Any]]:
    """The parameter ranges of `table` ([tune], or an arm's own [arms.X.tune]), validated."""
    ranges = {}
    for key, rng in raw.items():
        where = f"{source}: {table} {key}"
        _expect(key in keys, f"{source}: {table} names {key!r}, which is not a config key{suggest(key, keys)}")
        _expect(isinstance(rng, dict), f"{where} must be a table, e.g. {{low = 0.001, high = 1.0, log = true}}")
        for k in rng:
            _expect(k in RANGE_KEYS, f"{where}: unknown key {k!r}{suggest(k, RANGE_KEYS)}; valid keys: {', '.join(sorted(RANGE_KEYS))}")
        if "choices" in rng:
            _expect(isinstance(rng["choices"], list) and len(rng["choices"]) > 0 and set(rng) <= {"choices", "optional"},
                    f"{where}: choices must be a non-empty list, alone in its table")
        else:
            _expect("low" in rng and "high" in rng, f"{where} needs low and high (or choices)")
            for bound in ("low", "high"):
                b = rng[bound]
                _expect(_number(b) or (isinstance(b, str) and b in keys),
                        f"{where}: {bound} must be a number or a config key, got {b!r}")
            for flag in ("log", "int"):
                _expect(isinstance(rng.get(flag, False), bool), f"{where}: {flag} must be true or false")
        _expect(isinstance(rng.get("optional", False), bool), f"{where}: optional must be true or false")
        ranges[key] = dict(rng)
    return ranges


def parse_spec(data: Mapping[str, Any], source: str = "<memory>", folder: str | None = None) -> StudySpec:
    for key in data:
        _expect(key in TOP_KEYS, f"{source}: unknown top-level key {key!r}{suggest(key, TOP_KEYS)}; valid keys: {', '.join(sorted(TOP_KEYS))}")
    name = data.get("name")
    if not (isinstance(name, str) and name.strip() != "" and "/" not in name):  # an if, not _expect: mypy narrows it
        raise SpecError(f"{source}: `name` must be a non-empty string without '/', got {name!r}")
    for key in ("seeds", "first_seed"):
        if key in data:
            v = data[key]
            ok = type(v) is int and (v > 0 if key == "seeds" else v >= 0)
            _expect(ok, f"{source}: `{key}` must be an integer {'> 0' if key == 'seeds' else '>= 0'}, got {v!r}")
    timeout = data.get("timeout")
    _expect(timeout is None or (_number(timeout) and 0 < timeout < float("inf")),
            f"{source}: `timeout` must be a positive number of seconds a run may take, got {timeout!r}")
    experiment, command = data.get("experiment"), data.get("command")
    _expect(experiment is None or command is None, f"{source}: give `experiment` or `command`, not both")
    if experiment is not None:
        ok = isinstance(experiment, str) and experiment.count(":") == 1 and all(experiment.split(":"))
        _expect(ok, f"{source}: `experiment` must be \"package.module:function\", got {experiment!r}")
    if command is not None:
        _expect(isinstance(command, str) and command.strip() != "",
                f"{source}: `command` must be a command line, e.g. \"python train.py --lr {{lr}} --seed {{seed}}\"")
    _expect(experiment is not None or command is not None,
            f"{source}: the spec must name its experiment: experiment = \"package.module:function\" "
            f"or command = \"python train.py --lr {{lr}} --seed {{seed}}\" (the built-in CIFAR-10 "
            f"experiment: experiment = \"{BUILTIN_EXPERIMENT}\", as the default spec {DEFAULT_SPEC} has)")
    if "folder" in data:
        where = data["folder"]
        _expect(isinstance(where, str) and where != "",
                f"{source}: `folder` must be a path, next to `experiment` or `command`, got {where!r}")
        folder = str(Path(folder or ".").joinpath(where).resolve())
    streams = _streams(data.get("seed_streams", []), source)
    base = data.get("base", {})
    _expect(isinstance(base, dict), f"{source}: [base] must be a table of config keys")
    presets = _presets(data["presets"], source) if "presets" in data else {}
    defaults = _defaults(data.get("defaults", {}), source, presets)
    try:
        params.check_base(base, f"[base] of {source}")
    except ConfigError as e:
        raise SpecError(str(e)) from None
    analysis_raw, sequential = data.get("analysis", {}), None
    if isinstance(analysis_raw, dict):  # `sequential` is the runner's, not part of the analysis plan
        analysis_raw = dict(analysis_raw)
        sequential = _sequential(analysis_raw.pop("sequential", None), source)
    plan = _analysis(analysis_raw, source)

    arms_raw = data.get("arms")
    if not (isinstance(arms_raw, dict) and len(arms_raw) > 0):
        raise SpecError(f"{source}: the spec needs at least one arm, e.g. [arms.baseline]")
    arms = []
    for arm_name, table in arms_raw.items():
        _expect(arm_name.strip() != "", f"{source}: an arm's name is empty ([arms.{directions.toml_key(arm_name)}]); "
                                        "runs.csv would record it as a missing value: name it")
        _expect(isinstance(table, dict), f"{source}: [arms.{arm_name}] must be a table")
        overrides = {k: v for k, v in table.items() if k not in ("description", "tune")}
        description = table.get("description", "")
        _expect(isinstance(description, str), f"{source}: [arms.{arm_name}] description must be a string")
        arms.append(Arm(arm_name, overrides, description, table.get("tune", {})))
    keys = list(base)
    tune = _tune(data["tune"], source, plan, keys) if "tune" in data else None
    for i, own in enumerate(arms):  # an arm's own search ranges ([arms.X.tune]) replace [tune]'s
        if own.tune:
            where = f"[arms.{own.name}.tune]"
            _expect(tune is not None, f"{source}: {where} needs a [tune] table (the metric tuned on)")
            _expect(isinstance(own.tune, dict), f"{source}: {where} must be a table")
            arms[i] = replace(own, tune=_ranges(own.tune, source, where, keys))
    spec = StudySpec(name=name.strip(), arms=tuple(arms), base=base, seeds=data.get("seeds", 5),
                     first_seed=data.get("first_seed", 0), analysis=plan,
                     description=data.get("description", ""), source=source, experiment=experiment,
                     command=command, folder=folder, tune=tune, sequential=sequential,
                     timeout=None if timeout is None else float(timeout), seed_streams=streams,
                     presets=presets, defaults=defaults,
                     tasks=_tasks(data["tasks"], source, plan) if "tasks" in data else {})
    if command is not None:
        from study.command import check_command  # its placeholders must be declared keys

        try:
            check_command(command, base)
        except ValueError as e:
            raise SpecError(f"{source}: {e}") from None
    # Resolve every arm under every preset (and task) now: unknown keys and bad values fail here.
    for task in [None, *spec.tasks]:
        for preset in [None, *presets]:
            for arm in spec.arm_names:
                replace(spec, task=task).config(arm, preset)
    _expect(plan.baseline in spec.arm_names,
            f"{source}: [analysis] baseline {plan.baseline!r} is not an arm{suggest(plan.baseline, spec.arm_names)}; arms: {', '.join(spec.arm_names)}")
    return spec


TASK_ANALYSIS_KEYS = ("chance", "reference")


def _tasks(raw: Any, source: str, plan: AnalysisPlan) -> dict[str, Task]:
    """[tasks.NAME] tables: each task's overrides of declared keys (checked when the arms are
    resolved under it), its description, and [tasks.NAME.analysis] chance / reference."""
    _expect(isinstance(raw, dict) and len(raw) >= 2 and all(isinstance(t, dict) for t in raw.values()),
            f"{source}: [tasks] must hold two or more tables, one per task, e.g. [tasks.iris] with dataset = \"iris\"")
    tasks = {}
    for name, table in raw.items():
        where = f"{source}: [tasks.{directions.toml_key(name)}]"
        _expect(name.strip() != "" and "/" not in name and not name.startswith("."),
                f"{where}: a task's name must be a plain word (it names the task's folder and runs.csv's `task`)")
        description, declared = table.get("description", ""), table.get("analysis", {})
        _expect(isinstance(description, str), f"{where}: description must be a string")
        _expect(isinstance(declared, dict), f"{where}: analysis must be a table ([tasks.{name}.analysis])")
        for key, value in declared.items():
            _expect(key in TASK_ANALYSIS_KEYS, f"{where}.analysis: unknown key {key!r}{suggest(key, TASK_ANALYSIS_KEYS)}; "
                                               f"valid keys: {', '.join(TASK_ANALYSIS_KEYS)}")
            _expect(_number(value), f"{where}.analysis: {key} must be a number in the metric's units, got {value!r}")
        overrides = {k: v for k, v in table.items() if k not in ("description", "analysis")}
        tasks[name] = Task(name, overrides, description, declared.get("chance"), declared.get("reference"))
    with_reference = [t.name for t in tasks.values() if t.reference is not None]
    _expect(len(with_reference) in (0, len(tasks)),
            f"{source}: [tasks.NAME.analysis] reference is declared for {', '.join(with_reference)} only: "
            "declare it for every task, or for none")
    lacking = [t.name for t in tasks.values() if t.chance is None and plan.chance is None]
    _expect(not (with_reference and lacking), f"{source}: a reference needs a chance level (0 = chance, "
            f"1 = reference); tasks without one: {', '.join(lacking)} (declare [tasks.NAME.analysis] chance, "
            "or [analysis] chance for all)")
    return tasks


def _presets(raw: Any, source: str) -> dict[str, dict[str, Any]]:
    """[presets.NAME] tables: each a size of the study, as overrides of declared config keys
    (checked against the experiment's keys when the arms are resolved under it)."""
    _expect(isinstance(raw, dict) and bool(raw) and all(isinstance(t, dict) for t in raw.values()),
            f"{source}: [presets] must hold one table per preset, e.g. [presets.quick] with epochs = 2")
    for name in raw:
        _expect(name not in ("", "auto") and "/" not in name,
                f"{source}: [presets.{name}]: a preset's name must be a plain word other than 'auto'")
    return {name: dict(table) for name, table in raw.items()}


def _streams(raw: Any, source: str) -> dict[str, str]:
    """`seed_streams`: the study.seeds streams the experiment draws from, as a list (described in
    seedwise's words) or a table of stream = "what it draws" (in the experiment's own)."""
    if isinstance(raw, list) and all(s in STREAM_WORDS for s in raw):
        raw = {s: words for s, words in STREAM_WORDS.items() if s in raw}  # in seedwise's order
    ok = isinstance(raw, dict) and all(s in SOURCES and isinstance(w, str) and w.strip() for s, w in raw.items())
    _expect(ok, f"{source}: `seed_streams` must list the study.seeds streams your experiment draws from "
                f"({', '.join(SOURCES)}), e.g. [\"order\", \"init\"], or give each one's words, e.g. "
                f"{{order = \"data order\"}}, got {raw!r}")
    return dict(raw)


def _defaults(raw: Any, source: str, presets: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """[defaults.cuda] / [defaults.cpu]: what `--preset auto` and `--group` mean on that device."""
    _expect(isinstance(raw, dict) and all(isinstance(t, dict) for t in raw.values()),
            f"{source}: [defaults] must hold one table per device kind ({', '.join(DEVICE_KINDS)})")
    for kind, table in raw.items():
        where = f"{source}: [defaults.{kind}]"
        _expect(kind in DEVICE_KINDS, f"{where}: not a device kind{suggest(kind, DEVICE_KINDS)}; "
                                      f"kinds: {', '.join(DEVICE_KINDS)}")
        for key in table:
            _expect(key in DEFAULT_KEYS, f"{where}: unknown key {key!r}{suggest(key, DEFAULT_KEYS)}; "
                                         f"valid keys: {', '.join(sorted(DEFAULT_KEYS))}")
        _expect("preset" not in table or table["preset"] in presets,
                f"{where}: preset {table.get('preset')!r} is not one of the spec's [presets.NAME]"
                f"{suggest(str(table.get('preset')), presets)}")
        _expect("group" not in table or (type(table["group"]) is int and table["group"] > 0),
                f"{where}: group must be a positive integer (seeds per train_many call), got {table.get('group')!r}")
    return {kind: dict(table) for kind, table in raw.items()}


def load_spec(path: str | Path | None = None) -> StudySpec:
    """Load a spec file, or the default study shipped with the package when `path` is None."""
    if path is None:
        text = resources.files("study.specs").joinpath(DEFAULT_SPEC).read_text()
        source, folder = f"the default spec ({DEFAULT_SPEC})", None
    else:
        p = Path(path)
        _expect(p.is_file(), f"spec file {str(p)!r} does not exist")
        text, source, folder = p.read_text(), str(p), str(p.resolve().parent)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{source} is not valid TOML: {e}") from None
    return parse_spec(data, source, folder)
