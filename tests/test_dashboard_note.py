"""What the report writes into the Optuna study for optuna-dashboard, and the report's polish
(grouped notes, integer columns, lr panel ticks, provenance without machine-local paths)."""

import json

import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution
from test_report import make_study

from analysis._checks import NoteWarning
from analysis.dashboard.panels import FIGURE_IDS, OBJECTIVE
from analysis.load import compare_arms, load_study
from analysis.report import build_report, render_markdown, write_report
from analysis.report.figures import lr_schedule_figure
from analysis.report.notes import group_notes
from analysis.report.tables import to_html, to_latex, to_markdown
from analysis.types import Note

optuna_dashboard = pytest.importorskip("optuna_dashboard")
ARMS = {"baseline": {}, "wide": {"width": 32}, "narrow": {"width": 8}}


def stored_study(path, *, data_source, versions, seed_param=False):
    """The Optuna study `study.run` would have written for `path`'s runs.csv (`seed_param`: as
    it did before the seed left the trial parameters)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = optuna.create_study(study_name=path.name, storage=f"sqlite:///{path}/study.db",
                             direction="maximize")
    runs = pd.read_csv(path / "runs.csv")
    dists = {"arm": CategoricalDistribution(sorted(set(runs["arm"]))),
             **({"seed": IntDistribution(0, 100)} if seed_param else {})}
    for r in runs.itertuples():
        params = {"arm": r.arm, **({"seed": int(r.seed)} if seed_param else {})}
        st.add_trial(optuna.trial.create_trial(
            value=float(r.test_acc), params=params, distributions=dists,
            user_attrs={"arm": r.arm, "seed": int(r.seed), "data_source": data_source,
                        "versions": versions}))
    return st


def graph_objects(st):
    from optuna_dashboard._custom_plot_data import get_plotly_graph_objects

    return {k: json.loads(v) for k, v in get_plotly_graph_objects(
        st._storage.get_study_system_attrs(st._study_id)).items()}


def test_report_writes_verdict_note_metric_name_and_figures_into_the_study(tmp_path):
    pytest.importorskip("plotly")
    path = make_study(tmp_path, ARMS, effects={"wide": 3.0}, seeds=range(4))
    st = stored_study(path, data_source="x", versions={})
    assert st.metric_names is None  # the dashboard would say "Objective 0"
    messages = []
    write_report(path, tmp_path / "out", dpi=30, log=messages.append)
    assert messages[0].endswith("with its per-arm figures"), messages
    st = optuna.load_study(study_name=path.name, storage=f"sqlite:///{path}/study.db")
    assert st.metric_names == [OBJECTIVE]
    note = optuna_dashboard.get_note(st)
    assert "| wide |" in note and "**wide: better.**" in note
    assert "Best Trial" in note and "luckiest seed" in note  # the widgets that do not apply

    figs = graph_objects(st)
    assert set(figs) == set(FIGURE_IDS.values())
    runs = pd.read_csv(path / "runs.csv")
    points = {t["name"]: sorted(t["y"]) for t in figs["seedwise-distribution"]["data"]
              if t["type"] == "box"}
    assert points == {a: sorted(runs.loc[runs["arm"] == a, "test_acc"]) for a in ARMS}
    forest = {t["name"]: t["y"] for t in figs["seedwise-forest"]["data"]}
    assert forest["better"] == ["wide"] and "wide" not in forest.get("inconclusive", [])
    (table,) = figs["seedwise-verdicts"]["data"]
    rows = dict(zip(table["cells"]["values"][0], zip(*table["cells"]["values"][1:], strict=True),
                    strict=True))
    assert set(rows) == set(ARMS) and rows["wide"][-1] == "better" and rows["baseline"][2] == "(baseline)"
    assert rows["wide"][0] == "4" and float(rows["wide"][2]) > 0  # seeds, then diff vs baseline
    assert "luckiest seed" in figs["seedwise-verdicts"]["layout"]["title"]["text"]

    # More seeds later: a new report replaces the note and the figures, never stale or doubled.
    path2 = make_study(tmp_path / "more", ARMS, effects={"wide": 3.0}, seeds=range(7))
    (path2 / "study.db").unlink(missing_ok=True)
    (path / "runs.csv").write_text((path2 / "runs.csv").read_text())
    write_report(path, tmp_path / "out", dpi=30, log=messages.append)
    st = optuna.load_study(study_name=path.name, storage=f"sqlite:///{path}/study.db")
    assert set(graph_objects(st)) == set(FIGURE_IDS.values())
    points = {t["name"]: len(t["y"]) for t in graph_objects(st)["seedwise-distribution"]["data"]
              if t["type"] == "box"}
    assert points == {a: 7 for a in ARMS}
    assert "| wide | 7 |" in optuna_dashboard.get_note(st)


def test_metric_names_already_set_are_kept(tmp_path):
    path = make_study(tmp_path, ARMS, seeds=range(3))
    st = stored_study(path, data_source="x", versions={})
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        st.set_metric_names(["accuracy"])
    write_report(path, tmp_path / "out", dpi=30, log=lambda m: None)
    assert optuna.load_study(study_name=path.name,
                             storage=f"sqlite:///{path}/study.db").metric_names == ["accuracy"]


def test_provenance_has_no_machine_local_paths_and_names_the_source_tree(tmp_path):
    path = make_study(tmp_path, ARMS, seeds=range(3))
    stored_study(path, data_source="CIFAR-10 (JPEG copy) from /work/shared/data/cifar.tar.gz",
                 versions={"seedwise": "not installed", "torch": "2.0"})
    rep = build_report(load_study(path))
    prov = dict(rep.tables["provenance"][0].itertuples(index=False))
    text = render_markdown(rep)
    assert str(tmp_path) not in text  # no folder of this machine anywhere in the report
    assert prov["storage"] == "SQLite file study.db in the study's results directory"
    assert prov["data source"].startswith("CIFAR-10 (JPEG copy) from cifar.tar.gz")
    assert "/work" not in prov["data source"]
    assert "not installed" not in prov["versions (training)"]
    assert "seedwise: source tree, see git commit" in prov["versions (training)"]
    assert "seedwise " in prov["analysis versions"]


def test_pairing_notes_are_one_bullet_with_seed_ranges(tmp_path):
    # `narrow` ran seeds 0-3 only: every comparison with it warns about seeds 4-9.
    path = make_study(tmp_path, ARMS, seeds=range(10),
                      missing=[("narrow", s) for s in range(4, 10)])
    text = render_markdown(build_report(load_study(path)))
    notes = text.split("Notes raised by the analysis:")[1].split("## 5.")[0]
    bullets = [line for line in notes.splitlines() if line.startswith("- ")]
    pairing = [b for b in bullets if "no runs for seeds" in b]
    assert len(pairing) == 1, bullets
    assert "`narrow` has no runs for seeds 4–9" in pairing[0] and "use seeds 0–3 only" in pairing[0]
    assert "[4, 5, 6" not in notes


def test_group_notes_merges_repeats_and_keeps_distinct_notes():
    def pairing(a, b):  # the text is never read back: a wrong one must not change the bullet
        return Note(f"{a} vs {b}: (text not parsed)", kind="pairing", arms=(a, b),
                    seeds=(0, 1, 2), dropped=(3, 4), missing=("a",))

    notes = [pairing("a", "b"), pairing("c", "a"),
             Note("ties dropped", arms=("a", "b")), Note("ties dropped", arms=("c", "b")),
             Note("omnibus: [1, 2, 3, 7]", kind="omnibus"), pairing("a", "b")]
    out = group_notes(notes)
    assert out == ["`a` has no runs for seeds 3, 4, so the 2 paired comparisons involving it use "
                   "seeds 0–2 only: `a` vs `b`, `c` vs `a`.",
                   "`a` vs `b`, `c` vs `b`: ties dropped", "omnibus: 1–3, 7"]
    assert group_notes([Note("x"), Note("x"), Note("y")]) == ["x", "y"]


def test_pairing_warning_carries_its_fields(tmp_path):
    # The CLI's warning text and the report's bullet come from one Note raised by load.
    path = make_study(tmp_path, ARMS, seeds=range(6), missing=[("narrow", 5)])
    with pytest.warns(NoteWarning) as caught:
        compare_arms(load_study(path))
    found = [w.message.note for w in caught if isinstance(w.message, NoteWarning)
             and w.message.note.kind == "pairing"]
    assert {n.arms for n in found} == {("narrow", "baseline")}
    assert found[0].seeds == (0, 1, 2, 3, 4) and found[0].dropped == (5,)
    assert found[0].missing == ("narrow",) and str(found[0]).startswith("narrow vs baseline: paired on")


def test_integer_columns_print_as_integers():
    df = pd.DataFrame({"arm": ["baseline", "tuned"], "trial": [None, 19.0],
                       "mean": [47.0, 49.02], "gap": [None, 2.5]})
    md = to_markdown(df)
    assert "| tuned | 19 | 49.02 | 2.50 |" in md and "19.00" not in md
    assert "| baseline |  | 47.00 |  |" in md  # a whole measured value keeps its decimals
    assert "19.00" not in to_html(df) and "19.00" not in to_latex(df)


def test_every_lr_panel_has_epoch_tick_labels(tmp_path):
    # 5 arms in 3 columns: the third column's only panel sits above an empty slot.
    arms = {f"arm{i}": {"lr": 0.1 / (i + 1)} for i in range(5)}
    arms["baseline"] = arms.pop("arm0")
    path = make_study(tmp_path, arms, seeds=range(2))
    study = load_study(path)
    fig = lr_schedule_figure(study.epochs, arms=study.arms(),
                               configs={a: v["config"] for a, v in study.meta["arms"].items()})
    fig.canvas.draw()
    drawn = [ax for ax in fig.axes if ax.axison]
    assert len(drawn) == 5
    labelled = {ax.get_subplotspec().colspan.start for ax in drawn
                if any(t.get_visible() and t.get_text() for t in ax.get_xticklabels())}
    assert labelled == {0, 1, 2}  # every column shows its epochs, also above the empty slot


def test_verdict_table_keeps_an_arm_that_could_not_be_judged():
    pytest.importorskip("plotly")
    from analysis.dashboard.panels import DashboardData, verdict_plotly

    runs = pd.DataFrame({"arm": ["baseline"] * 3 + ["wide"] * 3 + ["broken"] * 2,
                         "seed": [0, 1, 2] * 2 + [0, 1],
                         "status": ["complete"] * 6 + ["failed"] * 2,
                         "test_acc": [70.0, 71.0, 72.0, 73.0, 74.0, 75.0, None, None]})
    comparisons = pd.DataFrame([{"arm": "wide", "n_arm": 3, "mean_arm": 74.0, "diff": 3.0,
                                 "ci_low": 2.0, "ci_high": 4.0, "p_adjusted": 0.01,
                                 "verdict": "better"}])
    data = DashboardData(runs=runs, comparisons=comparisons, arms=["baseline", "wide", "broken"],
                         baseline="baseline", metric="test_acc", metric_label="test accuracy (%)",
                         margin=0.5, palette={})
    cells = verdict_plotly(data).data[0].cells.values
    assert list(cells[0]) == ["baseline", "wide", "broken"]
    assert list(cells[1]) == ["3", "3", "0"] and list(cells[2]) == ["71.00", "74.00", "n/a"]
    assert list(cells[-1]) == ["", "better", "not judged"]
