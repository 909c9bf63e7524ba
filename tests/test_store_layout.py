"""How a run is stored as an Optuna trial: `arm` is the one parameter, the seed a user attribute,
so optuna-dashboard's importance and best-trial panels cannot read a seed as a hyperparameter;
studies stored with `seed` as a parameter too still read and resume unchanged."""

import json
import shutil
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution

from analysis.contract import ABLATION_KIND
from study.migrate import MigrationError, seed_to_attribute
from study.migrate import main as migrate_main
from study.store import RunStore

ARMS = ("baseline", "wide")
QUICK = Path(__file__).resolve().parents[1] / "results" / "notebook-ablation-quick"


def add(store, arm, seed, value):
    store.add_run(True, value, arm, seed, {"status": "complete", "metrics": {"acc": value}, "epochs": []},
                  {1: value - 1}, None)


def test_a_run_has_arm_as_its_only_parameter_and_the_seed_as_an_attribute(tmp_path):
    store = RunStore(tmp_path / "s", "s", "id1", ARMS, {})
    # Seeds 2-9 for one arm only, and the luckiest run of all is seed 7: what made the dashboard
    # rank `seed` first and crown "seed 7" when the seed was a parameter.
    for seed in range(10):
        for arm in ARMS[: 1 if seed >= 2 else 2]:
            add(store, arm, seed, 50.0 + (9.0 if seed == 7 else seed % 3) + (1.0 if arm == "wide" else 0.0))
    store.record_failure("wide", 2, "boom", "Traceback ...", {})
    trials = store.trials()
    assert [t.params for t in trials] == [{"arm": t.user_attrs["arm"]} for t in trials]
    assert all(set(t.distributions) == {"arm"} for t in trials)
    assert sorted((t.user_attrs["arm"], t.user_attrs["seed"]) for t in trials) == sorted(
        [(a, s) for s in range(10) for a in ARMS[: 1 if s >= 2 else 2]] + [("wide", 2)])
    assert store.done() == {(a, s) for s in range(10) for a in ARMS[: 1 if s >= 2 else 2]}
    runs, _ = store.tables()
    assert sorted(runs["seed"]) == sorted(t.user_attrs["seed"] for t in trials)

    study = optuna.load_study(study_name="s", storage=store.url)
    assert list(optuna.importance.get_param_importances(study)) == ["arm"]  # never "seed"
    assert study.best_trial.params == {"arm": "baseline"} and study.best_trial.user_attrs["seed"] == 7


def old_layout_study(folder: Path, identity: str, wrong_attr: int | None = None) -> list[tuple[str, int]]:
    """A study as RunStore stored it before: `arm` and `seed` both trial parameters (the trial
    numbered `wrong_attr`, if any, with a seed attribute of 99 instead)."""
    url = f"sqlite:///{folder / 'study.db'}"
    folder.mkdir(parents=True)
    st = optuna.create_study(study_name="old", storage=url, direction="maximize")
    st.set_user_attr("identity", identity)
    dists = {"arm": CategoricalDistribution(ARMS), "seed": IntDistribution(0, 2**31 - 1)}
    keys = [(a, s) for s in range(3) for a in ARMS]
    for i, (arm, seed) in enumerate(keys):
        st.add_trial(optuna.trial.create_trial(
            value=50.0 + seed, params={"arm": arm, "seed": seed}, distributions=dists,
            user_attrs={"arm": arm, "seed": 99 if i == wrong_attr else seed, "status": "complete", "metrics": {"acc": 50.0 + seed},
                        "epochs": []}))
    return keys


def test_a_study_stored_with_the_seed_as_a_parameter_reads_and_resumes(tmp_path):
    keys = old_layout_study(tmp_path / "old", "id-old")
    store = RunStore(tmp_path / "old", "old", "id-old", ARMS, {})
    assert store.done() == set(keys)
    add(store, "baseline", 3, 60.0)  # Optuna accepts a trial without the older trials' `seed`
    add(store, "wide", 3, 61.0)
    trials = store.trials()
    assert [set(t.params) for t in trials] == [{"arm", "seed"}] * 6 + [{"arm"}] * 2  # nothing rewritten
    assert store.done() == {*keys, ("baseline", 3), ("wide", 3)}
    runs, _ = store.tables()
    assert list(zip(runs["arm"], runs["seed"], runs["acc"], strict=True)) == [
        (a, s, 50.0 + s) for a, s in keys] + [("baseline", 3, 60.0), ("wide", 3, 61.0)]
    again = RunStore(tmp_path / "old", "old", "id-old", ARMS, {})  # reopened: identity kept
    assert again.study.user_attrs["identity"] == "id-old" and len(again.trials()) == 8


def test_the_committed_quick_study_resumes_under_the_new_layout(tmp_path):
    if not (QUICK / "study.db").exists():
        pytest.skip("the committed quick study is not in this checkout")
    copy = tmp_path / QUICK.name
    shutil.copytree(QUICK, copy)
    meta = json.loads((copy / "study.json").read_text())
    store = RunStore(copy, meta["study"], meta["identity"], tuple(meta["arms"]), {},
                     storage=f"sqlite:///{copy / 'study.db'}")
    before = store.done()
    assert len(before) == len(store.trials()) > 0
    add(store, "baseline", 10_000, 42.0)
    assert store.done() == {*before, ("baseline", 10_000)}
    assert store.trials()[-1].params == {"arm": "baseline"}


def test_migration_drops_only_the_seed_parameters_of_an_ablation_study(tmp_path):
    keys = old_layout_study(tmp_path / "old", "id-old")
    url = f"sqlite:///{tmp_path / 'old' / 'study.db'}"
    study = optuna.load_study(study_name="old", storage=url)
    study.set_user_attr("kind", ABLATION_KIND)
    tuning = optuna.create_study(study_name="old-tune", storage=url)  # same storage: untouched
    tuning.optimize(lambda t: t.suggest_int("seed", 0, 9) + t.suggest_float("lr", 0, 1), n_trials=3)
    before = [(t.number, t.value, t.user_attrs, t.intermediate_values) for t in study.get_trials()]

    dry = seed_to_attribute(url, "old", dry_run=True)
    assert (dry.trials, dry.with_seed_param, dry.deleted) == (6, 6, 0)
    assert all("seed" in t.params for t in study.get_trials())
    assert seed_to_attribute(url, "old").deleted == 6
    after = optuna.load_study(study_name="old", storage=url)
    assert [t.params for t in after.get_trials()] == [{"arm": a} for a, _ in keys]
    assert [(t.number, t.value, t.user_attrs, t.intermediate_values) for t in after.get_trials()] == before
    assert after.user_attrs == {"identity": "id-old", "kind": ABLATION_KIND}
    assert list(optuna.importance.get_param_importances(after)) == ["arm"]
    assert all({"seed", "lr"} == set(t.params) for t in optuna.load_study(study_name="old-tune", storage=url).trials)
    assert seed_to_attribute(url, "old").deleted == 0  # again: nothing to do
    store = RunStore(tmp_path / "old", "old", "id-old", ARMS, {})  # and it resumes
    assert store.done() == set(keys)
    add(store, "wide", 3, 61.0)
    assert len(store.trials()) == 7

    with pytest.raises(MigrationError, match="not a seedwise ablation"):
        seed_to_attribute(url, "old-tune")
    with pytest.raises(MigrationError, match="no study 'nope'"):
        seed_to_attribute(url, "nope")


def test_migration_refuses_a_seed_parameter_that_disagrees_with_the_attribute(tmp_path):
    old_layout_study(tmp_path / "old", "id-old", wrong_attr=4)
    url = f"sqlite:///{tmp_path / 'old' / 'study.db'}"
    study = optuna.load_study(study_name="old", storage=url)
    study.set_user_attr("kind", ABLATION_KIND)
    with pytest.raises(MigrationError, match=r"trial 4: parameter seed=2 but attribute seed=99"):
        seed_to_attribute(url, "old")
    assert all("seed" in t.params for t in study.get_trials())  # nothing deleted


def test_the_committed_ablation_studies_store_the_seed_as_an_attribute_only(tmp_path, capsys):
    """They were migrated (python -m study.migrate); their tuning studies were not touched."""
    results = QUICK.parent
    if not (QUICK / "study.db").exists():
        pytest.skip("the committed studies are not in this checkout")
    copy = tmp_path / "results"
    shutil.copytree(results, copy, ignore=shutil.ignore_patterns("artifacts"))
    kinds = {}
    for db in sorted(copy.glob("*/study.db")):
        url = f"sqlite:///{db}"
        for summary in optuna.get_all_study_summaries(url):
            study = optuna.load_study(study_name=summary.study_name, storage=url)
            kind = kinds[summary.study_name] = study.user_attrs.get("kind")
            trials = study.get_trials(deepcopy=False)
            if kind == ABLATION_KIND:
                assert all(t.params == {"arm": t.user_attrs["arm"]} and isinstance(t.user_attrs["seed"], int)
                           for t in trials), summary.study_name
                assert migrate_main([url, "--study", summary.study_name]) == 0
                assert f"{len(trials)} trials, 0 with a seed parameter; deleted 0" in capsys.readouterr().out
            else:
                assert all("seed" not in t.params and t.params for t in trials), summary.study_name
    assert list(kinds.values()).count(ABLATION_KIND) >= 7 and "seedwise-tuning" in kinds.values()
    # A copied folder resolves to its own database (study.json's URL is relative), never the checkout's.
    assert migrate_main([str(copy / QUICK.name), "--dry-run"]) == 0
    assert f"sqlite:///{copy / QUICK.name / 'study.db'}" in capsys.readouterr().out
    assert migrate_main([str(tmp_path / "nowhere")]) == 2  # no database: refused, none created
    assert not (tmp_path / "nowhere").exists()


def test_migration_records_the_builtin_seed_streams_once_and_leaves_user_studies_alone(tmp_path):
    """A built-in study.json from before `seed_streams` gains the streams (its report may then
    say what seeds share: the analysis no longer guesses from a missing key); the study's
    identity and every other key stay as they were."""
    from analysis.contract import BUILTIN_SEED_STREAMS, seed_streams
    from study.migrate import record_seed_streams

    old = {"study": "s", "identity": "abc", "arms": {"baseline": {}}, "storage": "sqlite:///x"}
    for name, meta in {"old": old, "user": {**old, "experiment": "train:train"},
                       "declared": {**old, "seed_streams": {}}}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "study.json").write_text(json.dumps(meta, indent=2) + "\n")
    assert seed_streams(old) == {}  # undeclared: nothing said about shared randomness
    assert record_seed_streams(tmp_path / "old", dry_run=True)
    assert "seed_streams" not in json.loads((tmp_path / "old" / "study.json").read_text())
    assert record_seed_streams(tmp_path / "old") and not record_seed_streams(tmp_path / "old")
    migrated = json.loads((tmp_path / "old" / "study.json").read_text())
    assert migrated == {**old, "seed_streams": BUILTIN_SEED_STREAMS}
    assert seed_streams(migrated) == BUILTIN_SEED_STREAMS
    before = {n: (tmp_path / n / "study.json").read_text() for n in ("user", "declared")}
    assert not record_seed_streams(tmp_path / "user") and not record_seed_streams(tmp_path / "declared")
    assert {n: (tmp_path / n / "study.json").read_text() for n in before} == before


def test_the_committed_builtin_studies_declare_their_seed_streams():
    for meta in QUICK.parent.glob("*/study.json"):
        assert "seed_streams" in json.loads(meta.read_text()), meta


def old_builtin_study(folder: Path) -> tuple[dict, str]:
    """A study of the built-in experiment as its own runner stored it before the experiment was
    named: metrics as attributes of their own, a study.json without `experiment`."""
    from analysis.contract import stable_hash
    from study.spec import load_spec

    spec = load_spec()
    arms = {a: {"description": "", "overrides": {}, "config": spec.config(a, "smoke")} for a in spec.arm_names}
    identity = stable_hash({"preset": "smoke", "arms": {a: d["config"] for a, d in arms.items()},
                            "analysis": spec.analysis.identity_blob()})
    meta = {"study": "old", "identity": identity, "preset": "smoke", "analysis": spec.analysis.declared(),
            "arms": arms, "set": {}, "storage": f"sqlite:///{folder / 'study.db'}"}
    store = RunStore(folder, "old", identity, spec.arm_names, meta)
    for arm, seed, acc in (("baseline", 0, 41.5), ("no_bn", 0, 37.25), ("baseline", 1, 40.0)):
        epochs = [{"epoch": 1, "lr": 0.1, "train_loss": 2.0, "train_acc": 20.0, "val_acc": 30.0, "test_acc": None,
                   "train_seconds": 1.0},
                  {"epoch": 2, "lr": 0.05, "train_loss": 1.5, "train_acc": 35.5, "val_acc": acc - 1, "test_acc": acc,
                   "train_seconds": 1.0}]
        store.add_run(True, acc, arm, seed, {"status": "complete", "test_acc": acc, "val_acc": acc - 1, "epochs": epochs,
                                             "n_bn": 6 if arm == "baseline" else 0, "bn_layers": [1, 2] if arm == "baseline" else [],
                                             "init_hash": f"h{seed}", "precision": "fp32", "data_fingerprint": "fp",
                                             "data_source": "CIFAR-10", "config_hash": "c", "wall_time_s": 2.0,
                                             "device": "cpu", "threads": 1, "group": [seed]}, {1: 30.0}, None)
    store.record_failure("no_bn", 1, "RuntimeError: boom", "trace", {})
    (folder / "study.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta, identity


def test_a_builtin_study_of_the_old_layout_is_refused_then_migrated_once_with_every_number_kept(tmp_path):
    from study import run_study
    from study.migrate import contract_layout
    from study.plan import UsageError
    from study.spec import load_spec

    folder = tmp_path / "old"
    _, before = old_builtin_study(folder)
    with pytest.raises(UsageError, match="old layout.*python -m study.migrate"):
        run_study(None, preset="smoke", seeds=2, arms=["baseline", "no_bn"], study="old", results=tmp_path,
                  dry_run=True)
    url = f"sqlite:///{folder / 'study.db'}"
    assert contract_layout(folder, url, "old", dry_run=True).trials == 4
    assert "experiment" not in json.loads((folder / "study.json").read_text())  # a dry run changes nothing
    done = contract_layout(folder, url, "old")
    assert done.trials == 4 and done.identity[0] == before
    assert contract_layout(folder, url, "old") is None  # once
    meta = json.loads((folder / "study.json").read_text())
    spec = load_spec()
    assert meta["identity"] == done.identity[1] == spec.identity("smoke")  # what a resume computes
    assert meta["experiment"] == "study.cifar.experiment:train"
    import pandas as pd

    runs = pd.read_csv(folder / "runs.csv").set_index(["arm", "seed"])
    assert runs.loc[("baseline", 0), "test_acc"] == 41.5 and runs.loc[("no_bn", 0), "val_acc"] == 36.25
    assert runs.loc[("baseline", 1), "train_acc"] == 35.5 and runs.loc[("baseline", 1), "lr_final"] == 0.05
    assert runs.loc[("baseline", 0), "bn_layers"] == "1 2" and runs.loc[("no_bn", 0), "n_bn"] == 0
    assert runs.loc[("no_bn", 1), "status"] == "failed" and runs.loc[("no_bn", 1), "error"] == "RuntimeError: boom"
    assert set(runs["data_fingerprint"].dropna()) == {"fp"} and set(runs["init_hash"].dropna()) == {"h0", "h1"}
    epochs = pd.read_csv(folder / "epochs.csv")
    assert len(epochs) == 6 and epochs["test_acc"].notna().sum() == 3  # not measured stays empty
    store = RunStore(folder, "old", spec.identity("smoke"), spec.arm_names, {})
    assert store.done() == {("baseline", 0), ("no_bn", 0), ("baseline", 1)}  # the failure is retried
    # a resume finds every finished run done: only the failed one is to do
    res = run_study(None, preset="smoke", seeds=2, arms=["baseline", "no_bn"], study="old", results=tmp_path,
                    dry_run=True)
    assert res.exit_code == 0


def test_the_committed_builtin_studies_are_in_the_contracts_layout_under_their_specs_identity():
    from study.migrate import old_layout
    from study.spec import load_spec

    for path in sorted(QUICK.parent.glob("*/study.json")):
        meta = json.loads(path.read_text())
        assert not old_layout(meta) and meta["experiment"] == "study.cifar.experiment:train", path
        source = meta["spec_source"]
        spec = load_spec(None if source.startswith("the default spec") else QUICK.parents[1] / source)
        if "variance" not in path.parent.name and "sequential" not in path.parent.name:
            assert spec.identity(meta["preset"], meta["set"]) == meta["identity"], path


def test_a_refused_layout_migration_changes_nothing_not_even_the_seed_streams(tmp_path, capsys):
    """The checks of every step run before the first change: exit 2 says "nothing changed"."""
    folder = tmp_path / "old"
    meta, _ = old_builtin_study(folder)
    (folder / "study.json").write_text(json.dumps({**meta, "identity": "not-its-hash"}, indent=2) + "\n")
    before = (folder / "study.json").read_bytes()
    assert migrate_main([str(folder)]) == 2
    assert "identity not-its-hash" in capsys.readouterr().err
    assert (folder / "study.json").read_bytes() == before  # no seed_streams added before the refusal


def test_a_layout_migration_that_cannot_write_runs_csv_says_so_in_one_line_and_a_rerun_finishes_it(tmp_path, capsys):
    folder = tmp_path / "old"
    old_builtin_study(folder)
    (folder / "runs.csv").mkdir()  # what the export cannot overwrite
    assert migrate_main([str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "runs.csv" in err and "Traceback" not in err
    (folder / "runs.csv").rmdir()
    assert migrate_main([str(folder)]) == 0  # not "nothing to migrate": the export was still to do
    assert "rewrote 0 trial(s)" in capsys.readouterr().out  # the database's part was done the first time
    import pandas as pd

    assert pd.read_csv(folder / "runs.csv").set_index(["arm", "seed"]).loc[("baseline", 0), "test_acc"] == 41.5
    assert json.loads((folder / "study.json").read_text())["experiment"] == "study.cifar.experiment:train"
    assert migrate_main([str(folder)]) == 0 and "rewrote" not in capsys.readouterr().out  # once


@pytest.mark.parametrize("damage", ["not json", "no analysis", "no study name"])
def test_a_damaged_study_json_is_refused_in_one_line_naming_it(tmp_path, capsys, damage):
    folder = tmp_path / "old"
    meta, _ = old_builtin_study(folder)
    text = {"not json": '{"study": "old",',
            "no analysis": json.dumps({k: v for k, v in meta.items() if k != "analysis"}),
            "no study name": json.dumps({k: v for k, v in meta.items() if k != "study"})}[damage]
    (folder / "study.json").write_text(text)
    assert migrate_main([str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(folder / "study.json") in err, err
    assert (folder / "study.json").read_text() == text


def test_a_study_db_that_is_not_a_database_is_refused_in_one_line(tmp_path, capsys):
    folder = tmp_path / "old"
    old_builtin_study(folder)
    (folder / "study.db").write_bytes(b"these are not the bytes of an SQLite file" * 100)
    assert migrate_main([str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "study.db" in err, err


def test_a_study_whose_database_sits_outside_its_folder_is_migrated_in_that_database(tmp_path):
    """As results/*-tuned-per-arm/ is kept: no study.db of its own, study.json naming another
    folder's. Migrating study.json alone would mark the study done and leave its trials behind."""
    folder = tmp_path / "old"
    meta, before = old_builtin_study(folder)
    shared = tmp_path / "shared.db"
    (folder / "study.db").rename(shared)
    (folder / "study.json").write_text(json.dumps({**meta, "storage": f"sqlite:///{shared}"}, indent=2) + "\n")
    assert migrate_main([str(folder)]) == 0
    study = optuna.load_study(study_name="old", storage=f"sqlite:///{shared}")
    after = json.loads((folder / "study.json").read_text())["identity"]
    assert after != before and study.user_attrs["identity"] == after
    assert all("metrics" in t.user_attrs for t in study.trials if t.user_attrs.get("status") == "complete")


def test_a_study_whose_storage_is_gone_has_its_study_json_alone_migrated(tmp_path, capsys):
    folder = tmp_path / "old"
    _, before = old_builtin_study(folder)
    (folder / "study.db").unlink()  # results kept as their exports
    assert migrate_main([str(folder)]) == 0
    assert f"study.json's identity {before} ->" in capsys.readouterr().out
    from analysis.contract import BUILTIN_SEED_STREAMS

    migrated = json.loads((folder / "study.json").read_text())
    assert migrated["experiment"] == "study.cifar.experiment:train"
    # its seed streams too: once the experiment is named, no later run would record them
    assert migrated["seed_streams"] == BUILTIN_SEED_STREAMS
