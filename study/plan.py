"""What a study will run: its spec's arms x seeds as resolved configs, its name and folder.

`make_plan` is shared by the runner (study.run) and the tuner (study.tune); it validates
everything a study needs before anything is trained or stored, raising SpecError or
UsageError with one line that names the option.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.contract import redact, stable_hash
from study.experiment import Experiment
from study.params import ConfigError, parse_assignment, suggest
from study.spec import SpecError, StudySpec, load_spec


class UsageError(ValueError):
    """Bad options (not a bad spec): the command says so in one line and exits 2."""


@dataclass(frozen=True)
class Plan:
    spec: StudySpec
    preset: str | None  # one of the spec's [presets.NAME]; None: the spec as written
    arms: tuple[str, ...]
    seeds: tuple[int, ...]
    configs: dict[str, Any]  # arm -> its resolved config (a dict)
    study_name: str
    identity: str
    results_dir: Path
    extra: dict[str, Any]  # --set overrides, for every arm
    experiment: Experiment

    def config_dict(self, arm: str) -> dict[str, Any]:
        return dict(self.configs[arm])


def resolve_preset(spec: StudySpec, preset: str | None, has_cuda: bool) -> str | None:
    """The study's size: one of the spec's [presets.NAME], or None (the spec as written). `auto`
    is what the spec's [defaults.cuda] or [defaults.cpu] says (the default spec: full with CUDA,
    else quick), and no preset where it says nothing."""
    if preset in (None, "auto"):
        preset = spec.default("preset", has_cuda)
        if preset is None:
            return None
        kind = "cuda" if has_cuda else "cpu"
        print(f"preset: {preset} (auto: [defaults.{kind}] of {spec.source}; "
              f"{'CUDA is available' if has_cuda else 'no CUDA device'})", file=sys.stderr)
    if preset not in spec.presets:
        if not spec.presets:
            raise UsageError(f"--preset {preset}: {spec.source} declares no presets ([presets.NAME] tables) and "
                             "runs exactly as written (use --set KEY=VALUE to change it)")
        raise UsageError(f"--preset {preset}: not a preset of {spec.source}{suggest(preset, spec.presets)}; "
                         f"its presets: {', '.join(spec.presets)}")
    return preset


def default_study_name(spec: StudySpec, preset: str | None, extra: Mapping[str, Any]) -> str:
    """<spec name>[-<preset>][-set-<hash of the --set overrides>]: different sizes and
    overrides of one spec never share a study."""
    name = f"{spec.name}-{preset}" if preset else spec.name
    return name + ("-set-" + stable_hash(dict(extra), 6) if extra else "")


def make_plan(spec: str | Path | StudySpec | None, *, has_cuda: bool, preset: str | None = "auto",
              overrides: Sequence[str] | Mapping[str, Any] = (), study: str | None = None,
              results: str | Path = "results", seeds: int | Sequence[int] | None = None,
              arms: str | Sequence[str] | None = None) -> Plan:
    """The study's plan. `spec`: a spec file, a parsed StudySpec, or None for the default study;
    `overrides`: the --set KEY=VALUE strings, or a dict; `seeds`/`arms`: None for the spec's;
    `seeds` a count (seeds first_seed..) or, from Python, the seeds themselves (study.variance
    passes RunSeeds, one per design row)."""
    spec = spec if isinstance(spec, StudySpec) else load_spec(spec)
    preset = resolve_preset(spec, preset, has_cuda)
    experiment = Experiment(reference=spec.experiment, command=spec.command, folder=spec.folder)
    experiment.check()  # an unimportable module fails now, not once per run
    try:
        extra = dict(overrides) if isinstance(overrides, Mapping) else dict(parse_assignment(s) for s in overrides)
    except ConfigError as e:
        raise SpecError(str(e)) from None
    explicit = tuple(seeds) if isinstance(seeds, (list, tuple)) else None  # the Python API's own seeds
    n_seeds = spec.seeds if seeds is None else len(explicit) if explicit is not None else seeds
    if type(n_seeds) is not int or n_seeds <= 0:
        raise UsageError(f"--seeds must be a positive integer, got {n_seeds}")
    chosen = spec.select(arms if arms is None or isinstance(arms, str) else ",".join(arms))
    configs = {arm: spec.config(arm, preset, extra) for arm in spec.arm_names}  # validates all arms
    identity = spec.identity(preset, extra)
    name = default_study_name(spec, preset, extra) if study is None else study
    if not name or "/" in name or name.startswith("."):
        raise UsageError(f"--study must be a plain name without '/', got {name!r}")
    seed_range = explicit or tuple(range(spec.first_seed, spec.first_seed + n_seeds))
    return Plan(spec, preset, chosen, seed_range, configs, name, identity, Path(results) / name, extra, experiment)


def study_description(plan: Plan, url: str) -> dict[str, Any]:
    """study.json (and the Optuna study's user attrs): what the study is, for every reader."""
    from study.tasks import storage_name

    description = {
        "study": storage_name(plan),  # the Optuna study's name: readers load it by this
        "identity": plan.identity, "preset": plan.preset,
        "spec_name": plan.spec.name, "spec_source": plan.spec.source, "description": plan.spec.description,
        "baseline": plan.spec.analysis.baseline, "analysis": plan.spec.analysis.declared(), "set": plan.extra,
        "arms": {a.name: {"description": a.description, "overrides": dict(a.overrides),
                          "config": plan.config_dict(a.name)} for a in plan.spec.arms},
        "storage": redact(url), "experiment": plan.experiment.label,
        # What runs with the same seed share, for the report to say: only what is declared.
        "seed_streams": dict(plan.spec.seed_streams),
    }
    return description


def plan_and_device(spec: str | Path | StudySpec | None, device_arg: str, **plan_options: Any) -> tuple[Plan, str]:
    """make_plan and device_choice together. A spec with [defaults.cuda] / [defaults.cpu] (the
    preset `auto` means) needs to know about CUDA first; otherwise the device is asked of torch
    only if the experiment's code imported torch when loaded (a numpy experiment never pays for
    torch: `auto` is then cpu)."""
    spec = spec if isinstance(spec, StudySpec) else load_spec(spec)
    if spec.defaults:
        device, has_cuda = device_choice(device_arg)
        return make_plan(spec, has_cuda=has_cuda, **plan_options), device
    plan = make_plan(spec, has_cuda=False, **plan_options)
    return plan, device_choice(device_arg, uses_torch="torch" in sys.modules)[0]


def device_choice(device_arg: str, uses_torch: bool = True) -> tuple[str, bool]:
    """--device -> (device to train on, whether it is CUDA: the `auto` preset rule needs it).
    A device this machine does not have is bad input (exit 2, nothing stored), not a failed
    run per planned run on every rerun. Without `uses_torch` (a torch-free user experiment),
    `auto` is cpu and an explicit device is passed on as written."""
    # Ask NVML rather than the CUDA runtime: a process that initialised CUDA cannot fork children
    # that use it, and with --timeout and --jobs 1 each run is a forked child of this process.
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    if not uses_torch:
        if device_arg == "auto":
            return "cpu", False
        if not re.fullmatch(r"cpu|cuda(:\d+)?", device_arg):
            raise UsageError(f"--device {device_arg!r} is not a device; use auto, cpu, cuda or cuda:N")
        return device_arg, device_arg.startswith("cuda")
    import torch

    if device_arg == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
        return device, device == "cuda"
    try:
        parsed = torch.device(device_arg)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {device_arg!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device_arg}: this machine has no CUDA device (torch "
                             f"{torch.__version__}, built for CUDA {torch.version.cuda or 'none'}); use --device cpu or auto")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise UsageError(f"--device {device_arg}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif parsed.type != "cpu":
        raise UsageError(f"--device {device_arg}: seedwise trains on cpu or cuda, got {parsed.type!r}")
    return device_arg, parsed.type == "cuda"
