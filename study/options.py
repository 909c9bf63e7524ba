"""The runner's options, one set for `python -m study.run` and for Python (`run_plan`, `run_study`).

`RunOptions` holds every option with its default (the one place the defaults live); the
command line is parsed into it, and a Python caller gives the same options as keywords
(`options(spec, seeds=5, set={"epochs": 2})`). `add_study_args` is shared with study.tune.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from study.plan import UsageError
from study.spec import StudySpec

BACKENDS = ("local", "dask")


@dataclass
class RunOptions:
    """`python -m study.run`'s options: the long option names with `_` for `-`."""
    spec: str | Path | StudySpec | None = None  # a spec file, a parsed spec, None: the default study
    set: Sequence[str] | Mapping[str, Any] = field(default_factory=list)  # KEY=VALUE strings, or a dict
    preset: str = "auto"
    data: str | None = None
    data_root: str = "./data"
    results: str | Path = "results"
    study: str | None = None
    storage: str | None = None
    device: str = "auto"
    seeds: int | None = None
    arms: str | Sequence[str] | None = None  # comma-separated, or a list
    jobs: int | None = None
    backend: str = "local"
    scheduler: str | None = None
    group: int | None = None
    compile: bool = False
    dry_run: bool = False
    until_decided: bool = False
    look_every: int | None = None
    max_seeds: int | None = None
    replan: bool = False
    accept_code_change: bool = False
    timeout: float | None = None  # seconds per run, else the spec's `timeout`; None: no limit


DEFAULTS = RunOptions()


def options(spec: str | Path | StudySpec | None = None, **values: Any) -> RunOptions:
    """RunOptions from keywords; an unknown keyword is a TypeError that lists the options."""
    known = set(asdict(DEFAULTS)) - {"spec"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)}; options: {', '.join(sorted(known))}")
    return RunOptions(spec=spec, **values)


def check_options(opts: RunOptions) -> None:
    """Each option's own value, checked before anything is stored: a bad one is a UsageError
    (exit 2, nothing written). What needs the spec (arms, seeds, the sequential plan) is checked
    with it, by make_plan and study.until_decided.requested_plan."""
    for name in ("jobs", "group", "look_every", "max_seeds"):
        value = getattr(opts, name)
        if value is not None and (type(value) is not int or value <= 0):
            raise UsageError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
    check_backend(opts.backend, opts.scheduler)


def check_backend(backend: str, scheduler: str | None) -> None:
    if backend not in BACKENDS:
        raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "local" and scheduler:
        raise UsageError("--scheduler needs --backend dask")
    if backend == "dask" and not scheduler:
        raise UsageError("--backend dask needs --scheduler tcp://HOST:PORT (the Dask scheduler's address)")


def add_study_args(p: argparse.ArgumentParser) -> None:
    """The options that say which study, data and storage: shared with `python -m study.tune`."""
    p.add_argument("--spec", help="study spec (TOML); default: the notebook ablation shipped with seedwise "
                                  "(study/specs/notebook_ablation.toml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key for every arm, e.g. --set epochs=20 (repeatable)")
    p.add_argument("--preset", default=DEFAULTS.preset,
                   help="size of the study, one of the spec's [presets.NAME] (the default spec's: full = the "
                        "notebook protocol, quick = CPU-sized, smoke = seconds); auto = what the spec's "
                        "[defaults.cuda] / [defaults.cpu] say (the default spec: full with CUDA, else quick), "
                        "else no preset")
    p.add_argument("--data", help="the experiment's data, set as $SEEDWISE_DATA in every worker (the built-in "
                                  "one's CIFAR-10: .tar.gz / folder of an ImageFolder tree, or a torchvision root; "
                                  "default: $SEEDWISE_DATA, then --data-root, then download)")
    p.add_argument("--data-root", default=DEFAULTS.data_root,
                   help="where torchvision's CIFAR-10 is (or is downloaded to); set as $SEEDWISE_DATA_ROOT")
    p.add_argument("--results", default=DEFAULTS.results, help="results root; the study lives in RESULTS/<study>/")
    p.add_argument("--study", help="study name (default: <spec name>[-<preset>][-set-<hash>])")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///RESULTS/<study>/study.db)")
    p.add_argument("--device", default=DEFAULTS.device, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--accept-code-change", action="store_true",
                   help="go on with a study although the experiment's code changed since its stored runs "
                        "(recorded with every later run; --study NEW_NAME starts a new study instead)")


def add_run_args(p: argparse.ArgumentParser) -> None:
    """The options of `study.run` alone: how many runs, where they execute, sequential looks."""
    p.add_argument("--seeds", type=int, help="seeds per arm (seeds first_seed..first_seed+N-1); default from the spec")
    p.add_argument("--arms", help="comma-separated arms to run (default: all arms of the spec)")
    p.add_argument("--jobs", type=int, help="parallel runs (default: one per CPU core with 1 thread each; 1 on CUDA)")
    p.add_argument("--backend", choices=BACKENDS, default=DEFAULTS.backend,
                   help="where runs execute: local joblib processes (default) or a Dask distributed "
                        "cluster through joblib's dask backend (needs --scheduler; pip install -e '.[cluster]')")
    p.add_argument("--scheduler", help="Dask scheduler address for --backend dask, e.g. tcp://127.0.0.1:8786")
    p.add_argument("--group", type=int,
                   help="seeds of one arm per call of the module's train_many (the built-in experiment trains "
                        "them in one vmapped step); default: the spec's [defaults.cuda] / [defaults.cpu] group "
                        "(the default spec: 8 on CUDA), else 1")
    p.add_argument("--compile", action="store_true",
                   help="sets $SEEDWISE_COMPILE=1 in every worker: the built-in experiment runs its training "
                        "step through torch.compile (falling back to eager if it fails)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="a run over this is killed with its process tree and recorded as failed "
                        "(default: the spec's `timeout`, else no limit)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and an ETA, train nothing")
    seq = p.add_argument_group("sequential (seeds until decided; see study.until_decided)")
    seq.add_argument("--until-decided", action="store_true",
                     help="first look at --seeds seeds per arm, then add seeds only to the arms of undecided "
                          "comparisons, look after look, with the error rate controlled across looks "
                          "(default when the spec has [analysis] sequential)")
    seq.add_argument("--look-every", type=int, help="seeds added per arm between looks (default 5)")
    seq.add_argument("--max-seeds", type=int, help="seeds per arm at the last look (default 40)")
    seq.add_argument("--replan", action="store_true",
                     help="adopt a plan that differs from the pre-registered one (recorded as a deviation)")
