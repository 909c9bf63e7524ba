"""`python -m analysis.compare`: do arms differ? From a study, or from two single-run numbers.

    python -m analysis.compare results/<study>/runs.csv --metric test_acc --baseline baseline --json
    python -m analysis.compare results/<study> --pairs all
    python -m analysis.compare my_runs.csv --metric val_loss   # any CSV: arm, seed, <metric>
    python -m analysis.compare tasks.csv --metric test_acc   # with a `task` column: per task, then across
    python -m analysis.compare 75.49 74.08 --n-test 10000   # "is this single-run gap real?"

Exit status: 0 answered, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import types
from typing import TYPE_CHECKING

from analysis.formatting import count, interval, number, significant
from analysis.invocation import usage_name
from analysis.stats.direction import better_words

if TYPE_CHECKING:
    from analysis.stats.family import Family
    from analysis.types import Note

# The statistics (scipy, statsmodels, pandas) are imported by the functions that use them:
# `--help` prints without them.


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def parse_args(argv):
    p = argparse.ArgumentParser(prog=usage_name("analysis.compare"), description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", nargs="+", help="a study directory, its runs.csv or any CSV with columns arm, seed, "
                   "<metric> (status, task optional); or two accuracies in percent")
    p.add_argument("--metric", help="column to compare (default: the study's analysis plan, test_acc)")
    p.add_argument("--direction", choices=["maximize", "minimize"],
                   help="is a larger value better? (default: the metric's declared direction, else "
                   "what its name says: acc/score/reward... maximize, loss/error/mse... minimize)")
    p.add_argument("--chance", type=float, help="the metric's value for a model that learned nothing, in its "
                   "units (default: the plan's, else 100/classes for *_acc); runs within noise of it did not learn")
    p.add_argument("--failures", choices=["all", "learned"],
                   help="mean over all runs (default: failures scored) or only runs that learned")
    p.add_argument("--baseline", help="reference arm (default: the study's baseline)")
    p.add_argument("--pairs", choices=["baseline", "all"], default="baseline",
                   help="compare every arm with the baseline (default) or every pair; Holm corrects over the family")
    p.add_argument("--alpha", type=float, help="significance level (default: the study's, 0.05)")
    p.add_argument("--margin", type=float, help="equivalence margin in metric units (default: the study's, 0.5)")
    p.add_argument("--n-test", type=int, help="test-set size, for two single-run accuracies")
    p.add_argument("--seed", type=int, default=0, help="seed of the permutation/bootstrap resampling")
    p.add_argument("--json", action="store_true", help="one JSON object per comparison, one per line")
    return p.parse_args(argv)


def single_run(args) -> int:
    if len(args.source) != 2:
        raise ValueError("give exactly two accuracies, e.g. `75.49 74.08 --n-test 10000`")
    if args.n_test is None:
        raise ValueError("--n-test is required with two accuracies (the number of test images)")
    from analysis.stats.test_set_noise import single_run_gap

    a, b = (float(x) for x in args.source)
    gap = single_run_gap(a, b, args.n_test, alpha=args.alpha or 0.05)
    if args.json:
        print(json.dumps({
            "acc_a": gap.acc_a, "acc_b": gap.acc_b, "n_test": gap.n_test, "diff": gap.gap,
            "ci_low": gap.ci_low, "ci_high": gap.ci_high, "test": gap.test_name, "statistic": gap.statistic,
            "p_value": gap.pvalue, "statement": gap.statement,
            "seeds_needed": [{"seed_sd": s.seed_sd, "per_run_sd": s.per_run_sd, "seeds_per_arm": s.seeds_per_arm}
                             for s in gap.seeds_needed_for]}))
        return 0
    pct = int(round(100 * gap.confidence))
    print(f"{number(a)}% vs {number(b)}% on {count(args.n_test)} test images: gap "
          f"{number(gap.gap, signed=True)} points, {pct}% CI "
          f"{interval(gap.ci_low, gap.ci_high, signed=True)}")
    print(f"{gap.test_name}: z = {number(gap.statistic)}, p = {significant(gap.pvalue)}")
    print(gap.statement)
    print("\nSeeds per arm a study needs to resolve this gap (alpha 0.05, power 0.8, Welch), "
          "if the seed-to-seed sd were:")
    for s in gap.seeds_needed_for:
        n = "-" if s.seeds_per_arm is None else str(s.seeds_per_arm)
        print(f"  seed sd {number(s.seed_sd, 1)} points (per-run sd with test-set noise "
              f"{number(s.per_run_sd)}): {n} seeds per arm")
    return 0


def study_family(study, **overrides) -> tuple[Family, list[Note]]:
    """`compare_arms` of `study` (`overrides`: its keyword arguments) with the notes it raised,
    each once: what the CLI prints and what the runner prints at the end of a study."""
    from analysis._checks import collect_notes
    from analysis.load import compare_arms

    with collect_notes() as notes:
        family = compare_arms(study, **overrides)
    return family, notes


def warning_lines(family: Family, notes: list[Note], *, units: bool = False) -> list[str]:
    """The notes as "warning: ..." lines, less those said elsewhere: a comparison not judged
    has its own line, and mixed units are printed above the verdicts they void (`units`
    keeps them, for --json)."""
    said = set(family.skipped)
    return [f"warning: {n.text}" for n in notes
            if n.text not in said and (units or n.kind != "units")]


def chance_per_task(chances: dict[str, float | None]) -> str:
    """"iris 33.3, digits 10, x unknown": each task's chance level."""
    return ", ".join(f"{task} {'unknown' if c is None else f'{c:g}'}" for task, c in chances.items())


def plan_terms(plan, chances: dict[str, float | None] | None = None) -> str:
    """What the header line says of a plan: direction, chance level, the population averaged.
    `chances` (task -> its chance level): said per task when the tasks' levels differ."""
    if chances and len(set(chances.values())) > 1:
        chance = f"chance per task ({chance_per_task(chances)})"
    elif plan.chance is not None:
        chance = f"chance {plan.chance:g} ({plan.chance_source})"
    else:
        chance = "chance unknown: only divergence counts as failure"
    return (f"{better_words(plan.direction)}; {chance}; mean over "
            f"{'all runs' if plan.population == 'all' else 'runs that learned'}")


def verdict_lines(name: str, family: Family) -> list[str]:
    """The study's verdicts as the terminal shows them: the plan, the family, then per
    comparison the difference with the primary test's interval, the test and the verdict."""
    from analysis.load import family_frame

    plan = family.plan
    assert plan is not None  # compare_arms always records the plan it used
    lines = [f"{name}: {plan.metric} ({plan_terms(plan)}), {family.correction}",
             f"Family: {family.size_text()}."]
    if plan.mixed_units:
        lines.append(f"\nMIXED UNITS, these verdicts do not hold: {plan.mixed_units}")
    return lines + comparison_lines(family_frame(family, plan.metric), family)


def comparison_lines(frame, family: Family) -> list[str]:
    """The verdict lines of one family (`family_frame` rows, then the comparisons not judged)."""
    lines = []
    for row in frame.itertuples():
        lines += [f"\n{row.arm} - {row.baseline}: {number(row.diff, signed=True)} "
                  f"{interval(row.ci_low, row.ci_high, signed=True)} (n {row.n_arm} vs {row.n_baseline}, "
                  f"{'paired' if row.paired else 'unpaired'}); {row.effect_size_name} = "
                  f"{number(row.effect_size, signed=True)}; P(improvement) = {number(row.prob_improvement)}",
                  f"  {row.test}: p = {significant(row.p_value)}, Holm-adjusted p = "
                  f"{significant(row.p_adjusted)}",
                  f"  verdict: {row.verdict.upper()}: {row.verdict_reason}"]
    for n in family.not_judged:
        lines.append(f"\n{n.arm} - {n.baseline}: not judged\n  verdict: NOT JUDGED: {n.reason}")
    return lines


def from_study(args) -> int:
    from analysis.load import family_records, load_study
    from analysis.tasks.compare import has_tasks

    study = load_study(args.source[0])
    if has_tasks(study.runs):  # several tasks: per-task verdicts, then across tasks
        from analysis.tasks.output import print_tasks

        return print_tasks(study, args)
    family, notes = study_family(study, metric=args.metric, baseline=args.baseline, pairs=args.pairs,
                                 alpha=args.alpha, margin=args.margin, rng=args.seed,
                                 direction=args.direction, chance=args.chance, failures=args.failures)
    for line in warning_lines(family, notes, units=args.json):
        print(line, file=sys.stderr)
    if args.json:
        for row in family_records(family, family.plan.metric if family.plan else "test_acc"):
            print(json.dumps(row))
        return 0
    from analysis.sequential.record import stopping_lines

    plan = family.plan
    print("\n".join([*stopping_lines(study.path, plan.metric if plan else None, plan.baseline if plan else None),
                      *verdict_lines(study.name, family)]))
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    from analysis.load import StudyNotFound

    try:
        if all(_is_number(s) for s in args.source):
            return single_run(args)
        if len(args.source) != 1:
            raise ValueError("give one study directory (or runs.csv), or two accuracies")
        return from_study(args)
    except (StudyNotFound, ValueError, KeyError, OSError) as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2


class _CallableModule(types.ModuleType):
    """The package exports the function `analysis.compare`, and this CLI module has the same
    name: importing it (``python -m``, ``from analysis.compare import main``) rebinds the
    package attribute to the module, which silently broke ``from analysis import compare``
    in the same process. Calling the module forwards to the function, so both keep working."""

    def __call__(self, *args, **kwargs):
        from analysis.stats.paired import compare

        return compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
