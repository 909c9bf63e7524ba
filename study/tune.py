"""`python -m study.tune`: tune an arm's config on a validation metric, then confirm on fresh seeds.

    python -m study.tune --trials 40                 # tune lr and step_size for the baseline arm
    python -m study.tune --trials 40 --arm no_bn     # each arm can get its own tuning (fair ablation)
    python -m study.tune --confirm 5                 # re-run the best params on 5 fresh seeds as arm "tuned"
    python -m study.tune --arm baseline,no_bn --trials 40 --confirm 10   # tuned vs tuned: each arm
                                                     # at its own best params, on 10 fresh seeds
    optuna-dashboard sqlite:///results/<study>/study.db   # browse tuning and ablation side by side
    python -m study.tune --spec my.toml --trials 20  # a user experiment: the space is its spec's [tune]
    python -m study.tune --spec my.toml --race --budget 60 --confirm 10   # racing on paired seeds,
                                                     # the arm's own params first (docs/tuning.md)
    python -m study.tune --spec my.toml --race --budget 60 --jobs 4      # 4 worker processes, one race

The search space and objective come from the spec's `[tune]` table (the default spec
declares lr in [1e-3, 1] on a log scale and step_size in [1, epochs], on validation accuracy;
gamma in [0.1, 0.9] is declared optional: `--tune-also gamma`). Every experiment, the built-in
one included, is tuned through its contract (docs/experiments.md): one objective (study.search).

Tuning never sees the test set: the [tune] metric may not be the study's test metric ([analysis]
metric), every tuning run is asked not to score its test set (`evaluate_test=False`: the built-in
experiment then never reads the test tensors), no test metric of a tuning run is stored, and
tuning seeds (100000 + trial number) are disjoint from the evaluation seeds 0..N-1 that
`--confirm` uses.
The tuning study lives in the ablation study's storage (default
sqlite:///RESULTS/<ablation study>/study.db) as the Optuna study `<ablation study>-tune-<arm>`;
`--confirm` writes the ablation study `<ablation study>-tuned` (`-tuned-<arm>` for other arms)
to the same storage, pairing the tuned params with the untuned arm on the same fresh seeds.
With several arms (`--arm A,B,...`, the baseline among them) each is tuned in its own study, one
after the other, and `--confirm` runs every arm at its own best params in one study,
`<ablation study>-tuned-per-arm`: a fair ablation, where no arm is judged at a learning rate
chosen for another. The ablation study's report shows that answer next to the fixed-lr one.

Exit status: 0 done, 1 a trial or run failed (recorded; rerun to retry), 2 bad input,
130 interrupted (rerun the same command to continue).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from study.options import add_study_args
from study.plan import Plan, UsageError, plan_and_device

if TYPE_CHECKING:
    import optuna

    from study.experiment import Experiment

# Optuna, the stores and the experiments are imported when tuning starts, not to parse options
# (`--help` stays instant). Names imported from here elsewhere, on first use:
_LAZY = dict.fromkeys(["TUNE_SEED_OFFSET", "TrialSeededTPE", "config_value", "make_pruner", "make_objective",
                       "search_space", "suggest"], "study.search")


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'study.tune' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from analysis.invocation import usage_name

    p = argparse.ArgumentParser(
        prog=usage_name("study.tune"), description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Several processes may tune one study together (same options, same storage; --jobs N starts "
               "them): they share the target of --trials N finished trials (each may finish one trial beyond it). "
               "Exit status: 0 done, 1 a trial/run failed, 2 bad input, 130 interrupted.")
    add_study_args(p)
    p.add_argument("--arm", help="the arm to tune (default: the spec's analysis baseline); several, "
                                 "comma-separated with the baseline among them: each arm is tuned on "
                                 "its own, and --confirm compares them tuned vs tuned")
    p.add_argument("--task", help="with a spec of several tasks ([tasks.NAME]): the task to tune, in its own "
                                  "study under <study>/tasks/<task>/ (tuning is per task)")
    p.add_argument("--threads", type=int, help="torch CPU threads of this process, of each worker with --jobs "
                                               "(default: torch's; with --jobs, the cores shared out)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="N worker processes tune the study together through its storage (default 1), as N "
                        "copies of this command started by hand would; --confirm runs once, after them")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one of --jobs': tune only
    p.add_argument("--trials", type=int, metavar="N",
                   help="tune until the tuning study has N finished (complete or pruned) trials: a rerun "
                        "of the same command after a crash or Ctrl-C does the rest, a larger N adds more")
    p.add_argument("--tune-also", metavar="KEYS",
                   help="also tune these [tune] ranges declared `optional = true` (comma-separated; the "
                        "built-in spec's: gamma, StepLR's decay); default: keep the arm's values")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="a tuning run (and a confirming one) over this is killed with its process tree and "
                        "recorded as failed (default: the spec's `timeout`, else no limit)")
    p.add_argument("--sampler-seed", type=int, default=0,
                   help="seed of the TPE sampler (default 0); trial k draws from seed (sampler seed, k)")
    # Racing (study.racing): its own flags, kept together so the call sites below stay small.
    p.add_argument("--race", action="store_true",
                   help="tune by racing on paired tuning seeds (study `<study>-tune-<arm>-race`): the arm's "
                        "own params first, candidates dropped when a paired test shows them worse; "
                        "--confirm then re-runs the race's winner (docs/tuning.md)")
    p.add_argument("--budget", type=int, metavar="N",
                   help="with --race: race until the race study holds N finished runs (a rerun continues; "
                        "a larger N races on)")
    p.add_argument("--confirm", type=int, metavar="N",
                   help="re-run the best trial's params on fresh evaluation seeds 0..N-1 as arm 'tuned', "
                        "paired with the untuned arm (after tuning, if --trials is also given)")
    p.add_argument("--top-k", type=int, default=1, metavar="K",
                   help="with --confirm: confirm the K best trials as tuned, tuned_2, ... (shows the "
                        "winner's curse: the selected validation score overstates the fresh-seed one)")
    return p.parse_args(argv)


@dataclass(frozen=True)
class Tuning:
    """One arm's tuning, ready to run: its plan, experiment, search space, objective and Optuna study."""
    plan: Plan
    arm: str
    experiment: Experiment  # what every trial runs, through its contract
    config: dict[str, Any]  # the arm's untuned config
    space: dict[str, optuna.distributions.BaseDistribution]
    objective: str  # the metric tuned on (never the test metric)
    direction: str
    url: str
    study: optuna.Study
    device: str
    timeout: float | None = None  # seconds a tuning run may take (--timeout, the spec's `timeout`)
    code: dict[str, Any] | None = None  # this invocation's code provenance, stored with every trial

    @property
    def test_metric(self) -> str:
        """The study's test metric ([analysis] metric): never tuned on, never stored by tuning."""
        return self.plan.spec.analysis.metric

    @property
    def name(self) -> str:
        return self.study.study_name


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    from study.dispatch import interruptible

    return interruptible(lambda: _main(args, argv), "trials")


def check_counts(args: argparse.Namespace) -> None:
    if args.threads is not None and args.threads <= 0:
        raise UsageError(f"--threads must be a positive integer, got {args.threads}")
    if args.jobs <= 0:
        raise UsageError(f"--jobs must be a positive integer, got {args.jobs}")
    if args.jobs > 1 and args.trials is None and args.budget is None:
        raise UsageError(f"--jobs {args.jobs} starts tuning workers: give --trials N (or --race --budget N) "
                         "for them to do")
    if args.budget is not None and not args.race:
        raise UsageError("--budget counts a race's runs: give --race too (or --trials N to tune without racing)")
    if args.race and args.trials is not None:
        raise UsageError("--race is counted in runs: give --budget N, not --trials")
    if args.trials is None and args.confirm is None and args.budget is None:
        raise UsageError("nothing to do: give --trials N to tune and/or --confirm N to re-run the best "
                         "params on N fresh seeds")
    for flag, value in (("--trials", args.trials), ("--confirm", args.confirm), ("--top-k", args.top_k),
                        ("--budget", args.budget)):
        if value is not None and value <= 0:
            raise UsageError(f"{flag} must be a positive integer, got {value}")


def chosen_arms(args: argparse.Namespace, plan: Plan) -> list[str]:
    """The arms of --arm (default: the baseline); several must include the baseline."""
    baseline = plan.spec.analysis.baseline
    arms = [a.strip() for a in (args.arm or baseline).split(",")]
    for arm in arms:
        plan.spec.arm(arm)  # unknown arm: SpecError naming the closest
    if len(set(arms)) != len(arms):
        raise UsageError(f"--arm names an arm twice: {args.arm}")
    if len(arms) > 1:
        if baseline not in arms:
            raise UsageError(f"--arm {args.arm}: tuning several arms compares them tuned vs tuned, so the "
                             f"baseline {baseline!r} must be tuned too; add it to --arm")
        if args.top_k != 1:
            raise UsageError("--top-k applies to one arm; with several arms each is confirmed at its best trial")
    return arms


def prepare(args: argparse.Namespace, arm: str | None = None) -> Tuning:
    """Everything checked and the tuning study opened (created with --trials), before any trial."""
    import optuna
    from optuna.trial import TrialState

    from analysis.contract import TUNING_KIND, default_storage, tuning_study_name
    from study.run import run_timeout
    from study.search import TUNE_SEED_OFFSET, TrialSeededTPE, make_pruner, search_space
    from study.trials import open_tuning_study, tuning_identity

    check_counts(args)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    plan, device = plan_and_device(args.spec, args.device, preset=args.preset, overrides=args.set,
                                   study=args.study, results=args.results)
    arm = arm or chosen_arms(args, plan)[0]
    config = plan.config_dict(arm)
    tune = plan.spec.tune
    if tune is None:
        raise UsageError(f"{plan.spec.source} has no [tune] table: declare the search space there, e.g. "
                         "[tune] metric = \"val_acc\", lr = {low = 0.001, high = 1.0, log = true}")
    if tune.metric == plan.spec.analysis.metric:
        raise UsageError(f"{plan.spec.source}: [tune] metric {tune.metric!r} is the study's test metric ([analysis] "
                         "metric): tuning on it would select on the test set; tune on a validation metric, e.g. "
                         "[tune] metric = \"val_acc\"")
    objective, direction = tune.metric, tune.direction
    ranges = {**tune.ranges, **plan.spec.arm(arm).tune}  # [arms.X.tune] wins
    also = tuple(k.strip() for k in args.tune_also.split(",")) if args.tune_also else ()
    space = search_space(config, ranges, also)
    experiment = plan.experiment
    # study.run's rule for --timeout / the spec's `timeout`, for the experiment the trials run
    timeout = run_timeout(plan, args.timeout)
    if args.storage is None:
        plan.results_dir.mkdir(parents=True, exist_ok=True)
    url = args.storage or default_storage(plan.results_dir)
    from study.tasks import storage_name

    ablation = storage_name(plan)  # a task's is <study>/<task>: unique in a shared storage
    name = tuning_study_name(ablation, arm)
    if args.race:  # a race study of its own: races and --trials studies never mix
        from study.racing import RACE_SUFFIX, race_attrs

        name += RACE_SUFFIX
    attrs = {"kind": TUNING_KIND, "arm": arm, "preset": plan.preset,
             "identity": tuning_identity(plan, arm, space, objective, direction),
             "objective": objective, "direction": direction, "ablation_study": ablation,
             "ablation_identity": plan.identity, "spec_source": plan.spec.source, "set": plan.extra,
             "base_config": plan.config_dict(arm),
             "search_space": {k: repr(d) for k, d in space.items()}, "tuning_seed_offset": TUNE_SEED_OFFSET,
             "sampler": f"TPE (seed {args.sampler_seed}, per trial number)", "pruner": repr(make_pruner(config))}
    if args.race:
        attrs.update(race_attrs(objective, direction, plan.spec.analysis, arm, args.sampler_seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = open_tuning_study(url, name, attrs, TrialSeededTPE(seed=args.sampler_seed, constant_liar=True),
                                  make_pruner(config), create=args.trials is not None or args.budget is not None,
                                  direction=direction)
    if args.trials is None and args.budget is None and not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise UsageError(f"tuning study {name!r} has no completed trial yet; run "
                         "`seedwise tune --trials N` first")
    return Tuning(plan, arm, experiment, config, space, objective, direction, url, study, device, timeout,
                  code_provenance(experiment))


def code_provenance(experiment: Experiment) -> dict[str, Any]:
    """What every tuning trial of this invocation records about the code beside its own files
    (study.search.tuning_run): seedwise's commit and the experiment folder's git state."""
    from study.provenance import experiment_folder, git_info, user_git

    return {**git_info(), **user_git(experiment_folder(experiment.folder))}


def _main(args: argparse.Namespace, argv: list[str]) -> int:
    from study.confirm import confirm, confirm_per_arm
    from study.experiment import data_environment
    from study.options import DEFAULTS
    from study.run import bad_input
    from study.store import quiet_optuna

    quiet_optuna()
    try:
        from study.tasks import tuning_spec

        tuning_spec(args)  # a spec with [tasks.NAME]: --task's own study; none given: refused
        first = prepare(args)
        tunings = [first] + [prepare(args, arm) for arm in chosen_arms(args, first.plan)[1:]]
        env = data_environment(args.data, None if args.data_root == DEFAULTS.data_root else args.data_root)
    except bad_input() as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.jobs > 1 and not args.worker:  # the studies exist (prepare above): workers only open them
        code = _with_workers(args, argv, tunings)
    else:
        code = _tune_here(args, tunings, env)
    if code in (2, 130) or not args.confirm or args.worker:
        return code
    if code != 0:
        # a race or tuning cut short by a failure is no selection: its winner may change once it
        # is finished, and the confirmation of a stale winner would then be refused as "moved on"
        print(f"confirmation skipped: the tuning did not finish (see above); rerun the same command to finish "
              f"it, and it confirms on {args.confirm} fresh seeds then", file=sys.stderr)
        return code
    run_options = {"device": args.device, "set": list(args.set), "accept_code_change": args.accept_code_change,
                   "data": args.data, "timeout": args.timeout}
    if args.data_root != DEFAULTS.data_root:  # as given: the printed command stays the one to type
        run_options["data_root"] = args.data_root
    try:
        if len(tunings) > 1:
            return max(code, confirm_per_arm(first.plan, {t.arm: t.study for t in tunings}, first.url,
                                             seeds=args.confirm, results=args.results,
                                             run_options=run_options, objective=first.objective))
        return max(code, confirm(first.plan, first.arm, first.study, first.url, seeds=args.confirm,
                                 top_k=args.top_k, results=args.results, run_options=run_options,
                                 objective=first.objective))
    except bad_input() as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _tune_here(args: argparse.Namespace, tunings: list[Tuning], env: Any) -> int:
    """Race (--race --budget) or tune (--trials) every arm in this process, one after the other,
    each resumable: 0 done, 1 a trial failed, 2 bad input, 130 interrupted."""
    from study.experiment import environment

    code = 0
    with environment(env):  # --data / --data-root reach the experiment as they reach a study's workers
        if args.race and args.budget:  # racing (study.racing)
            from study.racing import race_arm

            for tuning in tunings:
                code = max(code, race_arm(tuning, args.budget, sampler_seed=args.sampler_seed))
                if code in (2, 130):
                    return code
        if args.trials:
            for tuning in tunings:
                code = max(code, tune_trials(tuning, args.trials, summary=not args.worker))
                if code in (2, 130):
                    return code
    return code


def _with_workers(args: argparse.Namespace, argv: list[str], tunings: list[Tuning]) -> int:
    """--jobs N: N workers tune (study.tune_workers); then one summary of every arm, here."""
    from study.tune_workers import run_workers

    code = run_workers(argv, args.jobs, args.threads)
    if code != 0:  # a worker's failure is reported; nothing runs here to make up for it
        return code
    if args.race and args.budget:  # the budget is spent: race_arm runs nothing and says who won
        from study.racing import race_arm

        return max(race_arm(t, args.budget, sampler_seed=args.sampler_seed) for t in tunings)
    for tuning in tunings:
        report_best(tuning)
    return code


def tune_trials(tuning: Tuning, trials: int, *, summary: bool = True) -> int:
    """Run trials until the study has `trials` finished ones (with any cooperating workers):
    0 done, 1 a trial failed (recorded; a rerun redoes it), 2 the experiment's input is missing
    (its InputError: no further trial), 130 interrupted."""
    import optuna
    from optuna.trial import TrialState

    from analysis.contract import redact
    from study.experiment import InputError
    from study.search import config_value, make_objective
    from study.trials import finished, fmt_params, trial_line

    study, name, url = tuning.study, tuning.name, tuning.url
    todo = max(0, trials - finished(study))
    if not todo:
        print(f"nothing to do: {name} already has {finished(study)} finished trial(s) (--trials {trials}); "
              "give a larger --trials to tune more", file=sys.stderr)
        return 0
    config = tuning.config
    limit = f"; timeout {tuning.timeout:g} s per run" if tuning.timeout is not None else ""
    print(f"tuning {tuning.arm} ({fmt_params({k: config_value(config, k) for k in tuning.space})} untuned) in "
          f"study {name}: {todo} trial(s) to reach {trials} finished; objective: {tuning.direction} "
          f"{tuning.objective}; device {tuning.device}; experiment: {tuning.experiment.label}{limit}; "
          f"storage: {redact(url)}", file=sys.stderr)
    failed = []
    bad_input: list[InputError] = []
    objective = make_objective(tuning.experiment, config, tuning.space, tuning.objective, device=tuning.device,
                               test_metric=tuning.test_metric, timeout=tuning.timeout, attrs=tuning.code)

    def run_trial(trial: optuna.Trial) -> float:
        try:
            return objective(trial)
        except InputError as e:  # the experiment's data is missing: every trial would fail the same way
            bad_input.append(e)
            trial.study.stop()
            raise

    def progress(st: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
        if t.state == TrialState.FAIL:
            failed.append(t.number)
        print(trial_line(st, t, tuning.objective), file=sys.stderr, flush=True)

    try:
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat
        # Optuna logs every failed trial with its traceback, Ctrl-C included; our progress line
        # says it in one line and the trial keeps the traceback.
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        # Failed trials (a raise, a killed worker) do not count, so a rerun redoes their work.
        # MaxTrialsCallback stops this process once cooperating workers reached the target.
        target = optuna.study.MaxTrialsCallback(trials, states=(TrialState.COMPLETE, TrialState.PRUNED))
        study.optimize(run_trial, n_trials=todo, callbacks=[progress, target], catch=(Exception,),
                       gc_after_trial=False)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished trials are stored in {name} ({redact(url)}); rerun the same "
              "command to continue", file=sys.stderr)
        return 130
    if bad_input:
        print(f"error: {bad_input[0]}", file=sys.stderr)
        return 2
    if summary:  # not in each --jobs worker: the command says it once, after them all
        report_best(tuning)
    return 1 if failed else 0


def report_best(tuning: Tuning) -> None:
    """The tuning study's best trial (stdout) and the dashboard command to browse it."""
    from study.console import dashboard_command
    from study.trials import fmt_params, score_text

    try:
        best = tuning.study.best_trial
        print(f"best of {tuning.name}: trial {best.number}: {fmt_params(best.params)}: "
              f"{score_text(best.value, tuning.objective)}")
    except ValueError:
        print(f"{tuning.name}: no completed trial yet", file=sys.stderr)
    print(f"dashboard: {dashboard_command(tuning.plan.results_dir, tuning.url)}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
