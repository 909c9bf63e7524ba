"""Config values and overrides: `--set` parsing, closest-match errors, and the config of a user
experiment, where every key is declared in the spec's `[base]`, typed by its default.

A user spec has no dataclass behind it, so the declaration is the schema: `[base]` lists every
key the experiment reads with its default, and an arm or `--set` may only change declared keys,
to a value of the same type (an integer is accepted where the default is a float). A typo
therefore fails before any run starts, with the closest declared key, as for the built-in study.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from typing import Any

SCALARS = (bool, int, float, str)


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message says which and what is allowed."""


def suggest(name: str, choices) -> str:
    """' (did you mean 'x'?)' for the closest of `choices`, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse one `--set key=value` (the value is read as TOML: 20, 0.05, "none", [4], true)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # bare words like none, step, all
    return key, value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list) and all(isinstance(v, SCALARS) for v in value):
        return "list"
    return type(value).__name__


def check_base(base: Mapping[str, Any], where: str) -> None:
    """Every default must be a TOML scalar or a list of scalars (the run gets plain values)."""
    for key, value in base.items():
        if _kind(value) not in ("bool", "int", "float", "str", "list"):
            raise ConfigError(f"`{key}` in {where} must be a number, string, boolean or list of them, "
                              f"got {value!r}")


def _coerce(key: str, default: Any, value: Any, where: str) -> Any:
    want, got = _kind(default), _kind(value)
    if want == "float" and got == "int":
        return float(value)  # 1 written without a decimal point
    if want != got:
        article = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
                   "list": "a list"}[want]
        raise ConfigError(f"`{key}` in {where} must be {article} like its default {default!r}, got {value!r}")
    return list(value) if want == "list" else value


def apply(base: Mapping[str, Any], overrides: Mapping[str, Any], *, where: str, typed: bool = True) -> dict[str, Any]:
    """`base` with `overrides` applied; an undeclared key or (when `typed`) a value of another
    type raises ConfigError naming the key, the closest declared key and where the override came
    from. `typed=False`: the experiment checks its values itself (its module's `check_config`)."""
    out = dict(base)
    for key, value in overrides.items():
        if key not in base:
            declared = ", ".join(base) or "(none: declare keys in [base])"
            raise ConfigError(f"unknown config key {key!r} in {where}{suggest(key, base)}; "
                              f"keys declared in [base]: {declared}")
        out[key] = _coerce(key, base[key], value, where) if typed else value
    return out
