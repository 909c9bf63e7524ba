"""The tuning report's account of a race (`study.tune --race`) and the expected best validation
score against budget of every tuned arm: what the race did, each finalist's seeds and mean with
its CI, which candidates were dropped when and by what test, the selection gap that remains,
and the winner that `--confirm` re-runs on fresh evaluation seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.formatting import interval, p_value, param_value, significant
from analysis.report.blocks import Para, Report
from analysis.report.figures import metric_label
from analysis.report.figures.tuning_budget import expected_best_figure, expected_best_table
from analysis.report.tables import seed_ranges
from analysis.tuning.race_study import DEFAULT, SEED_OFFSET, RaceSummary
from analysis.tuning.racing import expected_best
from analysis.tuning.studies import Tuning


def _params(params: dict) -> str:
    return ", ".join(f"{k} = {param_value(v)}" for k, v in params.items()) or "-"


def race_text(t: Tuning, race: RaceSummary) -> str:
    s, data = race.state, race.data
    score = f"`{t.objective}`"
    text = (f"`{t.name}` raced `{t.arm}` ({t.direction} {score}) over {data.runs} runs: "
            f"{len(data.candidates)} candidate configurations, the arm's own parameters first "
            f"(`{DEFAULT}`: {_params(data.params[DEFAULT])}) and the rest proposed by a seeded TPE sampler; "
            f"{s.rounds} complete round(s) on the paired tuning seeds "
            f"{seed_ranges([SEED_OFFSET + j for j in range(s.rounds)]) if s.rounds else '(none)'}, "
            "disjoint from the evaluation seeds. After each round from the third seed on, a rival that a "
            "one-sided paired t-test (Holm over the live rivals, α = 0.05) showed worse than the incumbent "
            f"was dropped: {sum(not (d.unscored or d.never_learned) for d in s.dropped)} of them. ")
    unscored = sum(d.unscored for d in s.dropped)
    if unscored:  # dropped by no test: a run of theirs has no score (failures rule, race_study.ATTEMPTS)
        text += (f"{unscored} more could not be scored (a run diverged with no chance level declared, or "
                 "raised again on its retry) and left the race. ")
    retired = [d for d in s.dropped if d.never_learned]
    if retired and data.retire is not None:  # dropped by no test: they never left chance
        text += (f"{len(retired)} more never learned (their first {data.retire.seeds} runs all within "
                 f"{significant(data.retire.tolerance)} of chance, {significant(data.retire.chance)}: between "
                 "candidates at chance no test can drop any) and were retired so that newcomers could take "
                 "their slots; the default is never retired. ")
    w = race.winner
    if s.incumbent is None:
        return text + "No round is complete yet: there is no incumbent."
    text += f"Incumbent: `{s.incumbent}` (best mean over the shared seeds). "
    if w.versus_default is not None:
        r = w.versus_default
        text += (f"Against the default it leads by {significant(r.diff, signed=True)} "
                 f"{interval(r.ci_low, r.ci_high, signed=True)} over {r.n} paired seeds; ")
    text += f"**winner: `{w.candidate}`** ({_params(data.params[w.candidate])}): {w.reason}."
    if race.gap is not None and len(race.finalists) > 1:
        text += (f" Remaining selection gap: the incumbent may still trail the best finalist by up to "
                 f"{significant(race.gap.bound)} (simultaneous {race.gap.level:.0%} upper bound over the "
                 f"{len(race.gap.rivals)} live rival(s)); more budget narrows it.")
    return text


def finalist_table(race: RaceSummary) -> pd.DataFrame:
    rows = []
    for r in race.finalists.itertuples():
        rows.append({"candidate": r.candidate + (" (winner)" if r.candidate == race.winner.candidate else ""),
                     "params": _params(r.params),
                     "tuning seeds": seed_ranges([SEED_OFFSET + j for j in range(race.state.rounds)]),
                     "mean [95% CI]": f"{significant(r.mean, 4)} {interval(r.ci_low, r.ci_high, 3)}",
                     "vs incumbent": "(incumbent)" if r.candidate == race.state.incumbent else
                     f"{significant(r.diff_vs_incumbent, signed=True)}, Holm p {p_value(r.p_holm)}"})
    return pd.DataFrame(rows, columns=["candidate", "params", "tuning seeds", "mean [95% CI]", "vs incumbent"])


def drop_table(race: RaceSummary) -> pd.DataFrame:
    rows = [{"candidate": d.candidate, "params": _params(race.data.params.get(d.candidate, {})),
             "dropped after": f"{d.round + 1} seed(s)", "against": d.incumbent,
             "difference": significant(d.diff, signed=True), "Holm p": p_value(d.p_holm), "test": d.test}
            for d in race.state.dropped]
    return pd.DataFrame(rows, columns=["candidate", "params", "dropped after", "against", "difference",
                                       "Holm p", "test"])


def race_section(rep: Report, t: Tuning) -> None:
    race = t.race
    assert race is not None, "race_section is for race studies"
    rep.add(Para(race_text(t, race)))
    if len(race.finalists):
        rep.add_table(f"race_finalists_{t.arm}", finalist_table(race),
                      f"The race's finalists for `{t.arm}`: each on the same tuning seeds, its mean with a 95% t "
                      "interval over seeds (shared seed effects included; the paired differences in the last "
                      "column remove them).")
    if race.state.dropped:
        rep.add_table(f"race_dropped_{t.arm}", drop_table(race),
                      f"Candidates dropped from the race for `{t.arm}`, when and by what test (or as never "
                      "learned: against chance, by no test); a difference is the candidate minus the incumbent "
                      "of that round, over their shared seeds.")


def budget_section(rep: Report, tunings: list[Tuning]) -> None:
    """Expected best validation score against budget, per tuned arm (Dodge et al. 2019, with
    Tang et al. 2020's unbiased estimator): whether a gap between tuned arms is budget."""
    curves: dict[str, np.ndarray] = {}
    for t in tunings:
        values = t.candidate_values
        if len(values):
            label = t.arm + (" (race)" if t.race is not None else "")
            curves[label] = expected_best(values, t.direction)
    if not curves:
        return
    objective = tunings[0].objective
    rep.add(Para("**Expected best validation score against budget.** For n = 1, 2, ... candidate "
                 "configurations drawn at random from those each tuning tried, the expected best "
                 f"`{objective}` (Dodge et al. 2019, with the unbiased estimator of Tang et al. 2020: "
                 "n drawn without replacement). A race's candidates are compared on the leading tuning "
                 "seeds they all ran; each trial of a `--trials` study ran its own seed, so its curve "
                 "also rises with the luck of the seeds (the winner's curse). Where the curves are still rising at the budget used, more tuning "
                 "would still pay, and a gap between arms may be budget rather than the arms."))
    rep.add_figure("tuning_budget", expected_best_figure(curves, metric_label(objective)),
                   "Expected best validation score of n candidate configurations, per tuned arm.")
    rep.add_table("tuning_budget", expected_best_table(curves),
                  "Expected best validation score at budgets of n candidates (blank: the arm tried fewer).")
