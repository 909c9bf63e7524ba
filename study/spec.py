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
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from analysis.stats import direction as directions
from study import params
from study import spec_tables as tables
from study.params import ConfigError, suggest
from study.spec_model import AnalysisPlan, Arm, SpecError, StudySpec, Task, TuneSpace
from study.spec_tables import ANALYSIS_KEYS, expect

# The parsed spec's objects live in study.spec_model and the tables' validation in
# study.spec_tables; the names users and modules import from here stay importable from here.
__all__ = ["ANALYSIS_KEYS", "BUILTIN_EXPERIMENT", "DEFAULT_SPEC", "AnalysisPlan", "Arm", "SpecError",
           "StudySpec", "Task", "TuneSpace", "load_spec", "parse_spec"]

DEFAULT_SPEC = "notebook_ablation.toml"
TOP_KEYS = {"name", "description", "seeds", "first_seed", "base", "analysis", "arms", "experiment", "command",
            "folder", "tune", "timeout", "seed_streams", "presets", "tasks", "defaults"}
# The experiment of the default spec (study/specs/notebook_ablation.toml): the one name of the
# built-in experiment in the generic modules (the error for a spec naming no experiment, and
# study.migrate's rewrite of studies recorded before specs named it).
BUILTIN_EXPERIMENT = "study.cifar.experiment:train"


def parse_spec(data: Mapping[str, Any], source: str = "<memory>", folder: str | None = None) -> StudySpec:
    """A spec's TOML data as a StudySpec, every table validated in the order below (the first
    problem found is the one reported); `folder` is the spec file's folder."""
    name, timeout = _top_level(data, source)
    experiment, command = _experiment(data, source)
    if "folder" in data:
        folder = _folder(data["folder"], source, folder)
    streams = tables.seed_streams(data.get("seed_streams", []), source)
    base = data.get("base", {})
    expect(isinstance(base, dict), f"{source}: [base] must be a table of config keys")
    presets = tables.preset_tables(data["presets"], source) if "presets" in data else {}
    defaults = tables.device_defaults(data.get("defaults", {}), source, presets)
    try:
        params.check_base(base, f"[base] of {source}")
    except ConfigError as e:
        raise SpecError(str(e)) from None
    plan, sequential = _analysis(data.get("analysis", {}), source)
    keys = list(base)
    arms = _arms(data.get("arms"), source)
    tune = tables.tune_table(data["tune"], source, plan, keys) if "tune" in data else None
    arms = _arm_ranges(arms, tune, source, keys)
    spec = StudySpec(name=name, arms=tuple(arms), base=base, seeds=data.get("seeds", 5),
                     first_seed=data.get("first_seed", 0), analysis=plan,
                     description=data.get("description", ""), source=source, experiment=experiment,
                     command=command, folder=folder, tune=tune, sequential=sequential,
                     timeout=timeout, seed_streams=streams, presets=presets, defaults=defaults,
                     tasks=tables.task_tables(data["tasks"], source, plan) if "tasks" in data else {})
    if command is not None:
        _check_command(command, base, source)
    _resolve_every_config(spec)
    expect(plan.baseline in spec.arm_names,
           f"{source}: [analysis] baseline {plan.baseline!r} is not an arm{suggest(plan.baseline, spec.arm_names)}; arms: {', '.join(spec.arm_names)}")
    return spec


def _top_level(data: Mapping[str, Any], source: str) -> tuple[str, float | None]:
    """Every top-level key known; `name` (stripped), `seeds`, `first_seed` and `timeout` (a
    float, or None) valid."""
    for key in data:
        expect(key in TOP_KEYS, f"{source}: unknown top-level key {key!r}{suggest(key, TOP_KEYS)}; valid keys: {', '.join(sorted(TOP_KEYS))}")
    name = data.get("name")
    if not (isinstance(name, str) and name.strip() != "" and "/" not in name):  # an if, not expect: mypy narrows it
        raise SpecError(f"{source}: `name` must be a non-empty string without '/', got {name!r}")
    for key in ("seeds", "first_seed"):
        if key in data:
            v = data[key]
            ok = type(v) is int and (v > 0 if key == "seeds" else v >= 0)
            expect(ok, f"{source}: `{key}` must be an integer {'> 0' if key == 'seeds' else '>= 0'}, got {v!r}")
    timeout = data.get("timeout")
    expect(timeout is None or (tables.is_number(timeout) and 0 < timeout < float("inf")),
           f"{source}: `timeout` must be a positive number of seconds a run may take, got {timeout!r}")
    return name.strip(), None if timeout is None else float(timeout)


def _experiment(data: Mapping[str, Any], source: str) -> tuple[str | None, str | None]:
    """The spec's `experiment` ("package.module:function") or `command`: exactly one of them."""
    experiment, command = data.get("experiment"), data.get("command")
    expect(experiment is None or command is None, f"{source}: give `experiment` or `command`, not both")
    if experiment is not None:
        ok = isinstance(experiment, str) and experiment.count(":") == 1 and all(experiment.split(":"))
        expect(ok, f"{source}: `experiment` must be \"package.module:function\", got {experiment!r}")
    if command is not None:
        expect(isinstance(command, str) and command.strip() != "",
               f"{source}: `command` must be a command line, e.g. \"python train.py --lr {{lr}} --seed {{seed}}\"")
    expect(experiment is not None or command is not None,
           f"{source}: the spec must name its experiment: experiment = \"package.module:function\" "
           f"or command = \"python train.py --lr {{lr}} --seed {{seed}}\" (the built-in CIFAR-10 "
           f"experiment: experiment = \"{BUILTIN_EXPERIMENT}\", as the default spec {DEFAULT_SPEC} has)")
    return experiment, command


def _folder(where: Any, source: str, spec_folder: str | None) -> str:
    """`folder`: where the module is / the command runs, relative to the spec file's folder."""
    expect(isinstance(where, str) and where != "",
           f"{source}: `folder` must be a path, next to `experiment` or `command`, got {where!r}")
    return str(Path(spec_folder or ".").joinpath(where).resolve())


def _analysis(raw: Any, source: str) -> tuple[AnalysisPlan, dict[str, Any] | None]:
    """[analysis] as the plan, and its `sequential` table apart (the runner's, not the plan's)."""
    sequential = None
    if isinstance(raw, dict):
        raw = dict(raw)
        sequential = tables.sequential_table(raw.pop("sequential", None), source)
    return tables.analysis_table(raw, source), sequential


def _arms(raw: Any, source: str) -> list[Arm]:
    """[arms.NAME] tables: each arm's overrides, description and own [arms.NAME.tune] (raw)."""
    if not (isinstance(raw, dict) and len(raw) > 0):
        raise SpecError(f"{source}: the spec needs at least one arm, e.g. [arms.baseline]")
    arms = []
    for arm_name, table in raw.items():
        expect(arm_name.strip() != "", f"{source}: an arm's name is empty ([arms.{directions.toml_key(arm_name)}]); "
                                       "runs.csv would record it as a missing value: name it")
        expect(isinstance(table, dict), f"{source}: [arms.{arm_name}] must be a table")
        overrides = {k: v for k, v in table.items() if k not in ("description", "tune")}
        description = table.get("description", "")
        expect(isinstance(description, str), f"{source}: [arms.{arm_name}] description must be a string")
        arms.append(Arm(arm_name, overrides, description, table.get("tune", {})))
    return arms


def _arm_ranges(arms: list[Arm], tune: TuneSpace | None, source: str, keys: list[str]) -> list[Arm]:
    """The arms with their own search ranges ([arms.X.tune], which replace [tune]'s) validated."""
    arms = list(arms)
    for i, own in enumerate(arms):
        if own.tune:
            where = f"[arms.{own.name}.tune]"
            expect(tune is not None, f"{source}: {where} needs a [tune] table (the metric tuned on)")
            expect(isinstance(own.tune, dict), f"{source}: {where} must be a table")
            arms[i] = replace(own, tune=tables.range_tables(own.tune, source, where, keys))
    return arms


def _check_command(command: str, base: Mapping[str, Any], source: str) -> None:
    """A command's {placeholders} must be declared keys."""
    from study.command import check_command

    try:
        check_command(command, base)
    except ValueError as e:
        raise SpecError(f"{source}: {e}") from None


def _resolve_every_config(spec: StudySpec) -> None:
    """Resolve every arm under every preset (and task) now: unknown keys and bad values fail here."""
    for task in [None, *spec.tasks]:
        for preset in [None, *spec.presets]:
            for arm in spec.arm_names:
                replace(spec, task=task).config(arm, preset)


def load_spec(path: str | Path | None = None) -> StudySpec:
    """Load a spec file, or the default study shipped with the package when `path` is None."""
    if path is None:
        text = resources.files("study.specs").joinpath(DEFAULT_SPEC).read_text()
        source, folder = f"the default spec ({DEFAULT_SPEC})", None
    else:
        p = Path(path)
        expect(p.is_file(), f"spec file {str(p)!r} does not exist")
        text, source, folder = p.read_text(), str(p), str(p.resolve().parent)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{source} is not valid TOML: {e}") from None
    return parse_spec(data, source, folder)
