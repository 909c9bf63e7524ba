"""The validation of a spec's tables other than its top-level keys and arms ([analysis],
[tune] and its ranges, [tasks.NAME], [presets.NAME], `seed_streams`, [defaults.KIND]): each
a function from the raw TOML table to what the spec keeps, raising SpecError with a one-line
message that names the file, the key and the valid choices (study.spec calls them in order)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from analysis.contract import DIRECTIONS, METRIC_KEYS, SOURCES, STREAM_WORDS
from analysis.stats import direction as directions
from study.params import suggest
from study.spec_model import AnalysisPlan, SpecError, Task, TuneSpace

DEVICE_KINDS = ("cuda", "cpu")  # [defaults.KIND]: what the run options default to on that device
DEFAULT_KEYS = {"preset", "group"}
ANALYSIS_KEYS = {"metric", "baseline", "alpha", "margin", "direction", "chance", "metrics"}
TUNE_KEYS = {"metric", "direction"}  # every other key of [tune] is a parameter's range
RANGE_KEYS = {"low", "high", "log", "int", "choices", "optional"}  # optional: tuned only with --tune-also KEY


def expect(cond: bool, msg: str) -> None:
    if not cond:
        raise SpecError(msg)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def analysis_table(raw: Any, source: str) -> AnalysisPlan:
    expect(isinstance(raw, dict), f"{source}: [analysis] must be a table")
    for key in raw:
        expect(key in ANALYSIS_KEYS, f"{source}: unknown key {key!r} in [analysis]{suggest(key, ANALYSIS_KEYS)}; valid keys: {', '.join(sorted(ANALYSIS_KEYS))}")
    expect("metric" in raw, f"{source}: [analysis] metric is required "
                             "(the name of a metric the experiment returns, e.g. metric = \"val_acc\")")
    raw = dict(raw)
    metrics = _metric_tables(raw.pop("metrics", {}), source)
    plan = AnalysisPlan(**raw)
    expect(isinstance(plan.metric, str) and plan.metric.strip() != "",
            f"{source}: [analysis] metric must be a non-empty string, got {plan.metric!r}")
    for key, value in metrics.pop(plan.metric, {}).items():  # the analysis metric's own: one place
        expect(key not in raw or raw[key] == value,
                f"{source}: [analysis] {key} = {raw.get(key)!r} and [analysis.metrics."
                f"{directions.toml_key(plan.metric)}] {key} = {value!r} disagree; declare it once")
        plan = replace(plan, **{key: value})
    plan = replace(plan, metrics=metrics)
    expect(plan.direction is None or plan.direction in DIRECTIONS, f"{source}: [analysis] direction must be one of {', '.join(DIRECTIONS)}, got {plan.direction!r}")
    expect(isinstance(plan.alpha, float) and 0 < plan.alpha < 1, f"{source}: [analysis] alpha must be a number in (0, 1), got {plan.alpha!r}")
    expect(is_number(plan.margin) and plan.margin > 0,
            f"{source}: [analysis] margin must be a positive number in the metric's units, got {plan.margin!r}")
    expect(plan.chance is None or is_number(plan.chance),
            f"{source}: [analysis] chance must be a number (the metric of a model that learned nothing), got {plan.chance!r}")
    expect(plan.direction is not None or directions.from_name(plan.metric) is not None,
            f"{source}: {directions.unsaid(plan.metric)}; declare it under [analysis]: "
            "direction = \"maximize\" (or \"minimize\")")
    return plan


def _metric_tables(raw: Any, source: str) -> dict[str, dict[str, Any]]:
    """`[analysis.metrics.<name>]`: each metric's declared direction, margin and chance."""
    expect(isinstance(raw, dict), f"{source}: [analysis] metrics must hold one table per metric, "
                                   "e.g. [analysis.metrics.val_loss] direction = \"minimize\"")
    tables = {}
    for metric, table in raw.items():
        where = f"{source}: [analysis.metrics.{directions.toml_key(metric)}]"
        expect(metric.strip() != "" and isinstance(table, dict), f"{where} must be a table named after a metric")
        for key in table:
            expect(key in METRIC_KEYS, f"{where}: unknown key {key!r}{suggest(key, METRIC_KEYS)}; valid keys: {', '.join(METRIC_KEYS)}")
        expect(table.get("direction", "maximize") in DIRECTIONS,
                f"{where}: direction must be one of {', '.join(DIRECTIONS)}, got {table.get('direction')!r}")
        expect("margin" not in table or (is_number(table["margin"]) and table["margin"] > 0),
                f"{where}: margin must be a positive number in the metric's units, got {table.get('margin')!r}")
        expect("chance" not in table or is_number(table["chance"]),
                f"{where}: chance must be a number (the metric of a model that learned nothing), got {table.get('chance')!r}")
        tables[metric] = dict(table)
    return tables


SEQUENTIAL_KEYS = {"first_look", "look_every", "max_seeds", "spending", "spending_param"}


def sequential_table(raw: Any, source: str) -> dict[str, Any] | None:
    """`[analysis] sequential = {look_every = 5, max_seeds = 40}`: run until decided by default
    (`study.until_decided`; the values are checked again when the plan is built)."""
    if raw is None:
        return None
    expect(isinstance(raw, dict), f"{source}: [analysis] sequential must be a table, e.g. "
                                   "sequential = {look_every = 5, max_seeds = 40}")
    for key in raw:
        expect(key in SEQUENTIAL_KEYS, f"{source}: unknown key {key!r} in [analysis] sequential"
                                        f"{suggest(key, SEQUENTIAL_KEYS)}; valid keys: {', '.join(sorted(SEQUENTIAL_KEYS))}")
    return dict(raw)


def tune_table(raw: Any, source: str, analysis: AnalysisPlan, keys) -> TuneSpace:
    expect(isinstance(raw, dict), f"{source}: [tune] must be a table")
    metric = raw.get("metric", analysis.metric)
    expect(isinstance(metric, str) and metric != "", f"{source}: [tune] metric must be a string, got {metric!r}")
    direction = raw.get("direction")
    if direction is None:  # the metric's own: declared under [analysis], else its name's
        try:
            direction = analysis.direction_of(metric)
        except directions.UndeclaredDirection:
            raise SpecError(f"{source}: [tune] {directions.unsaid(metric)}; declare it under [tune]: "
                            f"direction = \"maximize\" (or \"minimize\"), or {directions.spec_declaration(metric)}") from None
    expect(direction in DIRECTIONS, f"{source}: [tune] direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    ranges = range_tables({k: v for k, v in raw.items() if k not in TUNE_KEYS}, source, "[tune]", keys)
    expect(bool(ranges), f"{source}: [tune] declares no parameter to tune, e.g. lr = {{low = 0.001, high = 1.0, log = true}}")
    return TuneSpace(metric=metric, direction=direction, ranges=ranges)


def range_tables(raw: Mapping[str, Any], source: str, table: str, keys) -> dict[str, dict[str, Any]]:
    """The parameter ranges of `table` ([tune], or an arm's own [arms.X.tune]), validated."""
    ranges = {}
    for key, rng in raw.items():
        where = f"{source}: {table} {key}"
        expect(key in keys, f"{source}: {table} names {key!r}, which is not a config key{suggest(key, keys)}")
        expect(isinstance(rng, dict), f"{where} must be a table, e.g. {{low = 0.001, high = 1.0, log = true}}")
        for k in rng:
            expect(k in RANGE_KEYS, f"{where}: unknown key {k!r}{suggest(k, RANGE_KEYS)}; valid keys: {', '.join(sorted(RANGE_KEYS))}")
        if "choices" in rng:
            expect(isinstance(rng["choices"], list) and len(rng["choices"]) > 0 and set(rng) <= {"choices", "optional"},
                    f"{where}: choices must be a non-empty list, alone in its table")
        else:
            expect("low" in rng and "high" in rng, f"{where} needs low and high (or choices)")
            for bound in ("low", "high"):
                b = rng[bound]
                expect(is_number(b) or (isinstance(b, str) and b in keys),
                        f"{where}: {bound} must be a number or a config key, got {b!r}")
            for flag in ("log", "int"):
                expect(isinstance(rng.get(flag, False), bool), f"{where}: {flag} must be true or false")
        expect(isinstance(rng.get("optional", False), bool), f"{where}: optional must be true or false")
        ranges[key] = dict(rng)
    return ranges

TASK_ANALYSIS_KEYS = ("chance", "reference")


def task_tables(raw: Any, source: str, plan: AnalysisPlan) -> dict[str, Task]:
    """[tasks.NAME] tables: each task's overrides of declared keys (checked when the arms are
    resolved under it), its description, and [tasks.NAME.analysis] chance / reference."""
    expect(isinstance(raw, dict) and len(raw) >= 2 and all(isinstance(t, dict) for t in raw.values()),
            f"{source}: [tasks] must hold two or more tables, one per task, e.g. [tasks.iris] with dataset = \"iris\"")
    tasks = {}
    for name, table in raw.items():
        where = f"{source}: [tasks.{directions.toml_key(name)}]"
        expect(name.strip() != "" and "/" not in name and not name.startswith("."),
                f"{where}: a task's name must be a plain word (it names the task's folder and runs.csv's `task`)")
        description, declared = table.get("description", ""), table.get("analysis", {})
        expect(isinstance(description, str), f"{where}: description must be a string")
        expect(isinstance(declared, dict), f"{where}: analysis must be a table ([tasks.{name}.analysis])")
        for key, value in declared.items():
            expect(key in TASK_ANALYSIS_KEYS, f"{where}.analysis: unknown key {key!r}{suggest(key, TASK_ANALYSIS_KEYS)}; "
                                               f"valid keys: {', '.join(TASK_ANALYSIS_KEYS)}")
            expect(is_number(value), f"{where}.analysis: {key} must be a number in the metric's units, got {value!r}")
        overrides = {k: v for k, v in table.items() if k not in ("description", "analysis")}
        tasks[name] = Task(name, overrides, description, declared.get("chance"), declared.get("reference"))
    with_reference = [t.name for t in tasks.values() if t.reference is not None]
    expect(len(with_reference) in (0, len(tasks)),
            f"{source}: [tasks.NAME.analysis] reference is declared for {', '.join(with_reference)} only: "
            "declare it for every task, or for none")
    lacking = [t.name for t in tasks.values() if t.chance is None and plan.chance is None]
    expect(not (with_reference and lacking), f"{source}: a reference needs a chance level (0 = chance, "
            f"1 = reference); tasks without one: {', '.join(lacking)} (declare [tasks.NAME.analysis] chance, "
            "or [analysis] chance for all)")
    return tasks


def preset_tables(raw: Any, source: str) -> dict[str, dict[str, Any]]:
    """[presets.NAME] tables: each a size of the study, as overrides of declared config keys
    (checked against the experiment's keys when the arms are resolved under it)."""
    expect(isinstance(raw, dict) and bool(raw) and all(isinstance(t, dict) for t in raw.values()),
            f"{source}: [presets] must hold one table per preset, e.g. [presets.quick] with epochs = 2")
    for name in raw:
        expect(name not in ("", "auto") and "/" not in name,
                f"{source}: [presets.{name}]: a preset's name must be a plain word other than 'auto'")
    return {name: dict(table) for name, table in raw.items()}


def seed_streams(raw: Any, source: str) -> dict[str, str]:
    """`seed_streams`: the study.seeds streams the experiment draws from, as a list (described in
    seedwise's words) or a table of stream = "what it draws" (in the experiment's own)."""
    if isinstance(raw, list) and all(s in STREAM_WORDS for s in raw):
        raw = {s: words for s, words in STREAM_WORDS.items() if s in raw}  # in seedwise's order
    ok = isinstance(raw, dict) and all(s in SOURCES and isinstance(w, str) and w.strip() for s, w in raw.items())
    expect(ok, f"{source}: `seed_streams` must list the study.seeds streams your experiment draws from "
                f"({', '.join(SOURCES)}), e.g. [\"order\", \"init\"], or give each one's words, e.g. "
                f"{{order = \"data order\"}}, got {raw!r}")
    return dict(raw)


def device_defaults(raw: Any, source: str, presets: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """[defaults.cuda] / [defaults.cpu]: what `--preset auto` and `--group` mean on that device."""
    expect(isinstance(raw, dict) and all(isinstance(t, dict) for t in raw.values()),
            f"{source}: [defaults] must hold one table per device kind ({', '.join(DEVICE_KINDS)})")
    for kind, table in raw.items():
        where = f"{source}: [defaults.{kind}]"
        expect(kind in DEVICE_KINDS, f"{where}: not a device kind{suggest(kind, DEVICE_KINDS)}; "
                                      f"kinds: {', '.join(DEVICE_KINDS)}")
        for key in table:
            expect(key in DEFAULT_KEYS, f"{where}: unknown key {key!r}{suggest(key, DEFAULT_KEYS)}; "
                                         f"valid keys: {', '.join(sorted(DEFAULT_KEYS))}")
        expect("preset" not in table or table["preset"] in presets,
                f"{where}: preset {table.get('preset')!r} is not one of the spec's [presets.NAME]"
                f"{suggest(str(table.get('preset')), presets)}")
        expect("group" not in table or (type(table["group"]) is int and table["group"] > 0),
                f"{where}: group must be a positive integer (seeds per train_many call), got {table.get('group')!r}")
    return {kind: dict(table) for kind, table in raw.items()}

