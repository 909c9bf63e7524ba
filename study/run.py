"""`python -m study.run`: every arm of a study over several seeds, resumable, with progress.

    python -m study.run --seeds 5                 # the default study, 5 seeds per arm
    python -m study.run --seeds 5 --dry-run       # the plan: arms x seeds, what is done, ETA
    python -m study.run --spec my.toml --seeds 10 --arms baseline,no_bn --set epochs=20

Exit status: 0 all planned runs done, 1 some run failed (recorded; rerun to retry),
2 bad input (nothing trained, nothing stored changed), 130 interrupted (rerun to continue).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from analysis.contract import config_hash
from study.experiment import Experiment, ExperimentError, Outcome
from study.notebook.config import PRESETS
from study.notebook.data import DataError
from study.notebook.runner import CUDA_GROUP, NotebookRunner, estimate_seconds
from study.params import ConfigError, parse_assignment
from study.provenance import provenance
from study.spec import SpecError, StudySpec, load_spec
from study.store import RunStore, StoreError, quiet_optuna, redact, user_tables
from study.summary import render, summarize
from study.worker import execute_user


class UsageError(ValueError):
    pass


def add_study_args(p: argparse.ArgumentParser) -> None:
    """The options that say which study, data and storage: shared with `python -m study.tune`."""
    p.add_argument("--spec", help="study spec (TOML); default: the notebook ablation shipped with seedwise")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key for every arm, e.g. --set epochs=20 (repeatable)")
    p.add_argument("--preset", default="auto", choices=["auto", *PRESETS],
                   help="size of the built-in study: full = the notebook protocol, quick = CPU-sized, smoke = "
                        "seconds; auto = full with CUDA, else quick (a user experiment has no presets)")
    p.add_argument("--data", help="CIFAR-10 source: .tar.gz / folder of an ImageFolder tree, or a torchvision root "
                                  "(default: $SEEDWISE_DATA, then --data-root, then download)")
    p.add_argument("--data-root", default="./data", help="where torchvision's CIFAR-10 is (or is downloaded to)")
    p.add_argument("--results", default="results", help="results root; the study lives in RESULTS/<study>/")
    p.add_argument("--study", help="study name (default: <spec name>[-<preset>][-set-<hash>])")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///RESULTS/<study>/study.db)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m study.run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Exit status: 0 done, 1 a run failed, 2 bad input, 130 interrupted.")
    add_study_args(p)
    p.add_argument("--seeds", type=int, help="seeds per arm (seeds first_seed..first_seed+N-1); default from the spec")
    p.add_argument("--arms", help="comma-separated arms to run (default: all arms of the spec)")
    p.add_argument("--jobs", type=int, help="parallel runs (default: one per CPU core with 1 thread each; 1 on CUDA)")
    p.add_argument("--backend", choices=["local", "dask"], default="local",
                   help="where runs execute: local joblib processes (default) or a Dask distributed "
                        "cluster through joblib's dask backend (needs --scheduler; pip install -e '.[cluster]')")
    p.add_argument("--scheduler", help="Dask scheduler address for --backend dask, e.g. tcp://127.0.0.1:8786")
    p.add_argument("--group", type=int,
                   help="seeds of one arm trained together in one vmapped step (study.notebook.group); default: "
                        f"{CUDA_GROUP} on CUDA, 1 on CPU (where a loop over models is faster)")
    p.add_argument("--compile", action="store_true",
                   help="run the training step through torch.compile (falls back to eager if it fails)")
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
    return p.parse_args(argv)


@dataclass(frozen=True)
class Plan:
    spec: StudySpec
    preset: str
    arms: tuple[str, ...]
    seeds: tuple[int, ...]
    configs: dict[str, Any]  # arm -> Config (built-in) or dict (user experiment)
    study_name: str
    identity: str
    results_dir: Path
    extra: dict[str, Any]
    experiment: Experiment | None = None  # None: the built-in notebook experiment

    def config_dict(self, arm: str) -> dict[str, Any]:
        cfg = self.configs[arm]
        return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def resolve_preset(spec: StudySpec, preset: str | None, has_cuda: bool) -> str | None:
    """The built-in experiment's size; None for a user experiment, which runs as written."""
    if not spec.builtin:
        if preset not in (None, "auto"):
            raise UsageError(f"--preset {preset}: presets belong to the built-in notebook experiment; "
                             f"{spec.source} runs exactly as written (use --set KEY=VALUE to change it)")
        return None
    if preset in (None, "auto"):
        preset = "full" if has_cuda else "quick"
        why = "CUDA is available" if has_cuda else "no CUDA device; --preset full runs the notebook protocol"
        print(f"preset: {preset} (auto: {why})", file=sys.stderr)
    return preset


def make_plan(args: argparse.Namespace, has_cuda: bool) -> Plan:
    """The study's plan from the options (those of `study.run`; `study.tune` has no --seeds,
    --arms, --jobs or --group, which then take their defaults). `args.spec` may be a path, a
    parsed `StudySpec`, or None for the default study; `args.set` strings or a dict."""
    spec = args.spec if isinstance(args.spec, StudySpec) else load_spec(args.spec)
    preset = resolve_preset(spec, args.preset, has_cuda)
    experiment = None
    if not spec.builtin:
        experiment = Experiment(reference=spec.experiment, command=spec.command, folder=spec.folder)
        experiment.check()  # an unimportable module fails now, not once per run
    try:
        extra = dict(args.set) if isinstance(args.set, dict) else dict(parse_assignment(s) for s in args.set)
    except ConfigError as e:
        raise SpecError(str(e)) from None
    n_seeds = getattr(args, "seeds", None)
    n_seeds = spec.seeds if n_seeds is None else n_seeds
    if type(n_seeds) is not int or n_seeds <= 0:
        raise UsageError(f"--seeds must be a positive integer, got {n_seeds}")
    for flag in ("jobs", "group"):
        value = getattr(args, flag, None)
        if value is not None and value <= 0:
            raise UsageError(f"--{flag} must be a positive integer, got {value}")
    arms = getattr(args, "arms", None)
    arms = spec.select(",".join(arms) if isinstance(arms, (list, tuple)) else arms)
    configs = {arm: spec.config(arm, preset, extra) for arm in spec.arm_names}  # validates all arms
    identity = spec.identity(preset, extra)
    name = args.study
    if name is None:
        name = f"{spec.name}-{preset}" if preset else spec.name
        if extra:
            name += "-set-" + hashlib.sha256(json.dumps(extra, sort_keys=True).encode()).hexdigest()[:6]
    if not name or "/" in name or name.startswith("."):
        raise UsageError(f"--study must be a plain name without '/', got {name!r}")
    seeds = tuple(range(spec.first_seed, spec.first_seed + n_seeds))
    return Plan(spec, preset, arms, seeds, configs, name, identity, Path(args.results) / name, extra, experiment)


def study_description(plan: Plan, url: str) -> dict[str, Any]:
    description = {
        "study": plan.study_name, "identity": plan.identity, "preset": plan.preset,
        "spec_name": plan.spec.name, "spec_source": plan.spec.source, "description": plan.spec.description,
        "baseline": plan.spec.analysis.baseline, "analysis": vars(plan.spec.analysis), "set": plan.extra,
        "arms": {a.name: {"description": a.description, "overrides": dict(a.overrides),
                          "config": plan.config_dict(a.name)} for a in plan.spec.arms},
        "storage": redact(url),
    }
    if plan.experiment is not None:
        description["experiment"] = plan.experiment.label
    return description


# ---- orchestration ----------------------------------------------------------------------
def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (kill, job schedulers) stops as cleanly as Ctrl-C


def interruptible(body, args: argparse.Namespace, kept: str) -> int:
    """Run a command's body so that SIGTERM stops it as cleanly as Ctrl-C, at any point
    (imports, data decoding, export included): one line saying what is kept, exit 130.
    Shared by `study.run` and `study.tune`."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return body(args)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished {kept} are stored; rerun the same command to continue", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    return interruptible(_main, parse_args(argv), "runs")


def options(spec: str | Path | StudySpec | None = None, **values: Any) -> argparse.Namespace:
    """`python -m study.run`'s options from keywords (the long option names with `_` for `-`:
    seeds, arms, results, study, storage, set, preset, device, jobs, backend, scheduler, group,
    compile, dry_run, data, data_root); `set` may be a dict, `arms` a list."""
    args = parse_args([])
    unknown = sorted(set(values) - set(vars(args)))
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)}; options: {', '.join(sorted(vars(args)))}")
    for key, value in values.items():
        setattr(args, key, value)
    args.spec, args.raise_errors = spec, True
    return args


def run_plan(spec: str | Path | StudySpec | None = None, **values: Any) -> int:
    """The runner's Python API (see `options`). Returns the exit status; bad input raises
    (SpecError, UsageError, StoreError, ExperimentError, ...) instead of printing it and exiting 2.
    After the call, the plan it ran is `args.plan` of the namespace, when `options` built it."""
    return interruptible(_main, options(spec, **values), "runs")


def device_choice(device_arg: str) -> tuple[str, bool]:
    """--device -> (device to train on, whether it is CUDA: the `auto` preset rule needs it).
    A device this machine does not have is bad input (exit 2, nothing stored), not a failed
    run per planned run on every rerun."""
    import torch

    if device_arg == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
        return device, device == "cuda"
    try:
        device = torch.device(device_arg)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {device_arg!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device_arg}: this machine has no CUDA device (torch "
                             f"{torch.__version__}, built for CUDA {torch.version.cuda or 'none'}); use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {device_arg}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type != "cpu":
        raise UsageError(f"--device {device_arg}: seedwise trains on cpu or cuda, got {device.type!r}")
    return device_arg, device.type == "cuda"


def _main(args: argparse.Namespace) -> int:
    quiet_optuna()
    try:
        device, has_cuda = device_choice(args.device)
        plan = args.plan = make_plan(args, has_cuda)  # handed back to Python callers (study.api)
        url = args.storage or f"sqlite:///{plan.results_dir / 'study.db'}"
        if args.dry_run and args.storage is None and not (plan.results_dir / "study.db").exists():
            store = None  # a dry run creates nothing
        else:
            store = open_store(plan, url, args.storage)
        done = store.done() if store else set()
        todo = [(arm, seed) for seed in plan.seeds for arm in plan.arms if (arm, seed) not in done]
        jobs = args.jobs or (1 if device.startswith("cuda") else max(1, min(os.cpu_count() or 1, len(todo))))
        threads = 1 if device.startswith("cuda") else max(1, (os.cpu_count() or 1) // jobs)
        if args.dry_run:
            print_plan(plan, done, todo, jobs, threads, device, store, url)
            return 0
        write_description(plan, url)
        sequential = args.until_decided or plan.spec.sequential is not None
        if not todo and not sequential:
            print(f"nothing to do: all {len(plan.arms) * len(plan.seeds)} runs of {plan.study_name} are done "
                  f"({plan.results_dir})", file=sys.stderr)
            return finish(plan, store)
        cluster = connect_backend(args)  # before the data: a wrong address fails fast
        if plan.experiment is None:
            runner = NotebookRunner(plan, args, device, threads, jobs)
        else:
            runner = UserRunner(plan, device, threads)
    except (SpecError, UsageError, DataError, StoreError, ExperimentError) as e:
        if getattr(args, "raise_errors", False):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"study {plan.study_name}: {len(todo)} runs to do ({len(done)} already done), "
          f"{jobs} worker(s) x {threads} thread(s) on {device}; {runner.what}; "
          f"storage: {redact(store.url)}", file=sys.stderr)
    with cluster:
        if sequential:
            try:
                failed, plan = decide_look_by_look(plan, store, runner, jobs, args)
            except ValueError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
        else:
            failed = run_all(plan, store, todo, runner, jobs)
    code = finish(plan, store)
    if failed:
        print(f"{failed} run(s) failed (their tracebacks are in runs.csv 'error' and the Optuna trials); "
              "rerun the same command to retry them", file=sys.stderr)
        return 1
    return code


def decide_look_by_look(plan: Plan, store: RunStore, runner, jobs: int, args: argparse.Namespace) -> tuple[int, Plan]:
    """--until-decided: the pre-registered sequential plan, then looks until decided. Returns
    the failed runs and the plan widened to every seed a look may have used (for the summary)."""
    from study import until_decided as ud

    requested = ud.requested_plan(plan, len(plan.seeds), args.look_every, args.max_seeds)
    seq, deviations = ud.pre_register(store, requested, args.replan)
    for d in deviations:
        print(f"warning: {'adopted' if args.replan else 'ignored'} deviation from the pre-registered plan: {d}"
              + ("" if args.replan else " (the stored plan is kept; --replan adopts the new one)"), file=sys.stderr)
    failed, result = ud.run_until_decided(plan, store, runner, jobs, seq, run_all, export)
    for c in result.comparisons:
        print(f"sequential: {c.arm} vs {c.baseline}: {c.decision} ({c.reason})", file=sys.stderr)
    first = plan.spec.first_seed
    return failed, replace(plan, seeds=tuple(range(first, first + seq.max_seeds)))


def open_store(plan: Plan, url: str, storage: str | None) -> RunStore:
    from study.notebook import records

    return RunStore(plan.results_dir, plan.study_name, plan.identity, plan.spec.arm_names,
                    study_description(plan, url), storage=storage, direction=plan.spec.analysis.direction,
                    layout=records.tables if plan.experiment is None else user_tables)


def write_description(plan: Plan, url: str) -> None:
    try:
        (plan.results_dir / "study.json").write_text(json.dumps(study_description(plan, url), indent=2) + "\n")
    except OSError as e:
        raise UsageError(f"cannot write {plan.results_dir / 'study.json'}: {e.strerror or e}; "
                         "choose a writable --results directory") from None


def save_labels(path: Path, labels: np.ndarray) -> None:
    """test_labels.npy: with each run's stored predictions, gives per-example correctness."""
    tmp = path.with_name(f".test_labels.{os.getpid()}.npy")  # written aside: never half a file
    try:
        np.save(tmp, labels)
        tmp.replace(path)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}; free space or choose another --results") from None
    finally:
        tmp.unlink(missing_ok=True)


class UserRunner:
    """A user experiment: one seed per task; a command's output kept in logs/<arm>-seed<N>.log."""

    group = 1

    def __init__(self, plan: Plan, device: str, threads: int):
        self.plan, self.device, self.threads = plan, device, threads
        self.metric = plan.spec.analysis.metric
        self.what = f"experiment: {plan.experiment.label}"
        self.logs = None
        if plan.experiment.command:
            self.logs = plan.results_dir / "logs"
            self.logs.mkdir(exist_ok=True)
        self.attrs = {"experiment": plan.experiment.label}

    def task(self, i: int, arm: str, seeds: list[int]):
        from joblib import delayed

        (seed,) = seeds
        log = str(self.logs / f"{arm}-seed{seed}.log") if self.logs else None
        return delayed(execute_user)(arm, seed, self.plan.configs[arm], self.plan.experiment, self.metric,
                                     self.device, self.threads, log)

    def record(self, store: RunStore, arm: str, seed: int, outcome: Outcome, attrs) -> str:
        if outcome.labels is not None and outcome.predictions is not None:
            path = store.results_dir / "test_labels.npy"
            if not path.exists():
                save_labels(path, outcome.labels)
            elif not np.array_equal(np.load(path, allow_pickle=False), outcome.labels):
                raise ValueError(f"the run's 'labels' differ from {path} (every run must score the same "
                                 "examples, or per-example comparisons are meaningless)")
        store.record_outcome(arm, seed, outcome, attrs, self.metric)
        value = outcome.metrics[self.metric]
        if outcome.status == "complete":
            return f"{arm} seed {seed}: {self.metric} {value:.4g} ({outcome.wall_time_s:.1f}s)"
        return f"{arm} seed {seed}: DIVERGED ({self.metric} {value})"


def connect_backend(args):
    """A context in which joblib runs the study: local processes, or a Dask cluster.

    With Dask, each worker loads the decoded data from the cache path this process built, so
    workers must see the same file system (one machine, or a shared cache via $SEEDWISE_CACHE).
    """
    import contextlib

    if args.backend == "local":
        if args.scheduler:
            raise UsageError("--scheduler needs --backend dask")
        return contextlib.nullcontext()
    if not args.scheduler:
        raise UsageError("--backend dask needs --scheduler tcp://HOST:PORT (the Dask scheduler's address)")
    try:
        from dask.distributed import Client
    except ImportError:
        raise UsageError("--backend dask needs dask.distributed: pip install -e '.[cluster]'") from None
    import joblib

    try:
        client = Client(args.scheduler, timeout=20)
    except (OSError, TimeoutError) as e:
        raise UsageError(f"cannot reach the Dask scheduler at {args.scheduler}: {e}") from None
    stack = contextlib.ExitStack()
    stack.callback(client.close)
    stack.enter_context(joblib.parallel_config(backend="dask"))
    return stack


def groups_of(todo: list[tuple[str, int]], seeds: tuple[int, ...], group: int) -> list[tuple[str, list[int]]]:
    """The plan's runs as (arm, seeds) tasks of at most `group` seeds each: seeds are taken in
    blocks of `group`, and within a block every arm's runs still to do form one task."""
    todo_set, tasks = set(todo), []
    for b in range(0, len(seeds), group):
        block = seeds[b:b + group]
        for arm in dict.fromkeys(a for a, _ in todo):
            mine = [s for s in block if (arm, s) in todo_set]
            if mine:
                tasks.append((arm, mine))
    return tasks


def run_all(plan: Plan, store: RunStore, todo: list[tuple[str, int]], runner, jobs: int) -> int:
    """Dispatch the runs still to do as the runner's tasks (`runner.group` seeds of an arm per
    task), record each outcome as it arrives; returns how many failed."""
    from joblib import Parallel
    from tqdm import tqdm

    attrs_common = {**runner.attrs, "study_identity": plan.identity, **provenance()}
    progress = sys.stderr.isatty()
    bar = tqdm(total=len(todo), desc=plan.study_name, unit="run", disable=None if progress else True,
               position=0, dynamic_ncols=True)
    claims = store.claims()
    elsewhere = 0
    hashes = {arm: config_hash(plan.config_dict(arm)) for arm in plan.arms}

    def tasks():
        """Claim each run just before it is dispatched, so workers sharing the study split the
        plan between them; skip runs another live worker holds or has finished meanwhile."""
        nonlocal elsewhere
        for i, (arm, seeds) in enumerate(groups_of(todo, plan.seeds, runner.group)):
            mine = []
            for seed in seeds:
                claim = claims.claim_run(arm, seed)
                if claim == "mine":
                    mine.append(seed)
                else:  # "busy": another live worker trains it; "done": one finished it since the plan
                    elsewhere += claim == "busy"
                    bar.update(1)
            if mine:
                yield runner.task(i, arm, mine)

    failed = 0
    started = time.time()
    try:
        with bar:
            for arm, outcomes, worker in Parallel(n_jobs=jobs, return_as="generator_unordered")(tasks()):
                attrs = {**attrs_common, "config": plan.config_dict(arm), "config_hash": hashes[arm],
                         "worker": worker}
                for seed, outcome in outcomes:
                    stored = False
                    if isinstance(outcome, dict):
                        failed += 1
                        store.record_failure(arm, seed, outcome["error"], outcome["traceback"], attrs)
                        line = f"{arm} seed {seed}: FAILED {outcome['error'].splitlines()[0]}"
                    else:
                        try:
                            line = runner.record(store, arm, seed, outcome, attrs)
                            stored = True
                        except (OSError, ValueError, UsageError) as e:  # e.g. disk full writing predictions
                            failed += 1
                            error = f"{type(e).__name__} while storing the run: {e}"
                            if isinstance(e, OSError):
                                error += (f" (its predictions go to {store.results_dir / 'artifacts'}; free space "
                                          "and rerun to redo it)")
                            store.record_failure(arm, seed, error, traceback.format_exc(), attrs)
                            line = f"{arm} seed {seed}: FAILED {error}"
                    # After the trial is stored: no gap another worker could use. A stored result is
                    # marked done; a failure is released, to be retried.
                    (claims.finish if stored else claims.release)(arm, seed)
                    if progress:
                        bar.write(line, file=sys.stderr)
                    else:
                        print(line, file=sys.stderr, flush=True)
                    bar.update(1)
    except KeyboardInterrupt:
        claims.close()
        export(store)
        print(f"\ninterrupted after {time.time() - started:.0f}s: finished runs are stored in "
              f"{plan.results_dir}; rerun the same command to continue", file=sys.stderr)
        raise SystemExit(130) from None
    claims.close()
    if elsewhere:
        print(f"{elsewhere} run(s) were claimed by other workers on this study; their results appear "
              "when those workers finish (rerun to pick up any they abandon)", file=sys.stderr)
    return failed


def export(store: RunStore, tables=None) -> bool:
    """Write runs.csv / epochs.csv; on a full or read-only disk say so instead of crashing
    (every run is already in the storage, and the next invocation exports again)."""
    try:
        store.export(tables)
        return True
    except OSError as e:
        print(f"warning: could not write runs.csv / epochs.csv in {store.results_dir}: {e.strerror or e}; "
              "every run is in the storage, rerun the same command to export them", file=sys.stderr)
        return False


def finish(plan: Plan, store: RunStore) -> int:
    """The study's answer: per-arm means and the verdicts of `analysis.compare` (tests, Holm,
    equivalence, seeds needed) over every completed seed of the study, not only this command's."""
    runs, epochs = store.tables()
    exported = export(store, (runs, epochs))
    analysis = plan.spec.analysis
    arms = [a for a in plan.spec.arm_names if a in plan.arms or a == analysis.baseline]
    table = summarize(runs, arms, analysis.baseline, analysis.metric)
    print(render(table, analysis.baseline, analysis.metric, analysis.direction, percent=plan.experiment is None))
    if exported:
        print_verdicts(plan.results_dir)
    print(f"\nresults: {plan.results_dir}/ (runs.csv, epochs.csv, study.db)  "
          f"report: python -m analysis.report {plan.results_dir}  "
          f"dashboard: optuna-dashboard --host 127.0.0.1 {redact(store.url)}", file=sys.stderr)
    return 0 if exported else 1


def print_verdicts(results_dir: Path) -> None:
    """`python -m analysis.compare` on the exported study; when it cannot decide yet (one seed,
    one arm), one line says why instead of an error that would read as a failed study."""
    import contextlib
    import io

    from analysis.compare import main as compare_main

    print("\nVerdicts (python -m analysis.compare, every completed seed of the study):")
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        code = compare_main([str(results_dir)])
    lines = [line.removeprefix("error: ") for line in errors.getvalue().splitlines()]
    if code != 0:
        print(f"  none yet: {' '.join(lines)}")
    elif lines:
        print("\n".join(lines), file=sys.stderr)


def print_plan(plan: Plan, done, todo, jobs, threads, device, store, url) -> None:
    history: dict[str, list[float]] = {}
    if store is not None:
        for t in store.trials():
            if t.user_attrs.get("wall_time_s"):  # a group's runs share its wall time
                per_run = t.user_attrs["wall_time_s"] / max(1, len(t.user_attrs.get("group") or ()))
                history.setdefault(t.user_attrs["arm"], []).append(per_run)
    what = f"preset {plan.preset}" if plan.experiment is None else f"experiment {plan.experiment.label}"
    print(f"study {plan.study_name} ({what}, spec {plan.spec.source})")
    print(f"storage {redact(url)}; {len(plan.arms)} arms x {len(plan.seeds)} seeds "
          f"(seeds {plan.seeds[0]}..{plan.seeds[-1]}) = {len(plan.arms) * len(plan.seeds)} runs, "
          f"{len(plan.arms) * len(plan.seeds) - len(todo)} done, {len(todo)} to do")
    total: float | None = 0.0
    basis: set[str] = set()
    print(f"{'arm':<16}{'done':>5}{'todo':>5}  {'est. s/run':>10}  overrides")
    for arm in plan.arms:
        n_todo = sum(1 for a, _ in todo if a == arm)
        if history.get(arm):
            per_run = sorted(history[arm])[len(history[arm]) // 2]
            basis.add("median of finished runs")
        else:
            per_run = None if plan.experiment else estimate_seconds(plan.configs[arm], device, threads)
            basis.add("FLOPs at a rough device rate" if per_run is not None else "nothing yet")
        total = None if per_run is None or total is None else total + per_run * n_todo
        overrides = dict(plan.spec.arm(arm).overrides)
        shown = "?" if per_run is None else f"{per_run:.0f}"
        print(f"{arm:<16}{len(plan.seeds) - n_todo:>5}{n_todo:>5}  {shown:>10}  {overrides or '(base)'}")
    if total is None:
        print(f"ETA unknown until a run has finished ({jobs} worker(s) x {threads} thread(s) on {device})")
        return
    eta = total / max(1, min(jobs, len(todo) or 1))
    print(f"ETA ~{eta / 60:.1f} min with {jobs} worker(s) x {threads} thread(s) on {device} "
          f"(estimate from {' and '.join(sorted(basis))})")


if __name__ == "__main__":
    sys.exit(main())
