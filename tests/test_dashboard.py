"""The real `optuna-dashboard` server serves the tuning and the ablation study of one storage."""

import json
import urllib.request
from pathlib import Path

import optuna
import pytest
from conftest import data_source

from analysis.dashboard.server import DASHBOARD, DashboardStartError, start_dashboard
from study import run, tune

needs_cifar = pytest.mark.skipif(data_source() is None, reason="no CIFAR-10 source (set SEEDWISE_DATA)")
TINY_ARGS = ["--preset", "smoke", "--device", "cpu", "--set", "width=4", "--set", "train_size=200",
             "--set", "val_size=200", "--set", "test_size=200"]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.status == 200
        return json.loads(r.read())


@pytest.mark.skipif(not DASHBOARD.exists(), reason="optuna-dashboard is not installed in this environment")
@needs_cifar
def test_dashboard_serves_tuning_and_ablation_studies(tmp_path, cifar, monkeypatch):
    monkeypatch.setenv("SEEDWISE_DATA", data_source())
    common = [*TINY_ARGS, "--results", str(tmp_path)]
    assert tune.main([*common, "--trials", "2"]) == 0
    assert run.main([*common, "--seeds", "1", "--arms", "baseline", "--jobs", "1"]) == 0
    (study_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    url = f"sqlite:///{study_dir / 'study.db'}"
    expected = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(url)}
    ablation, tuning = study_dir.name, f"{study_dir.name}-tune-baseline"
    assert expected == {ablation: 1, tuning: 2}

    with start_dashboard(url) as server:
        base = server.base
        listing = get_json(f"{base}/api/studies")
        served = {s["study_name"]: s["study_id"] for s in listing["study_summaries"]}
        assert set(served) == {ablation, tuning}
        for name, n_trials in expected.items():
            detail = get_json(f"{base}/api/studies/{served[name]}")
            assert len(detail["trials"]) == n_trials
            assert sorted(t["number"] for t in detail["trials"]) == list(range(n_trials))
        tuning_detail = get_json(f"{base}/api/studies/{served[tuning]}")
        assert {"lr", "step_size"} <= {p["name"] for t in tuning_detail["trials"] for p in t["params"]}
        attrs = {a["key"]: a["value"] for a in tuning_detail.get("user_attrs", [])}
        assert attrs.get("kind") == "seedwise-tuning"


@pytest.mark.skipif(not DASHBOARD.exists(), reason="optuna-dashboard is not installed in this environment")
def test_dashboard_serves_a_user_experiment_minimized(tmp_path):
    """A command experiment (no CIFAR): its ablation and tuning studies, minimized, as stored."""
    pytest.importorskip("sklearn")
    spec = Path(__file__).resolve().parents[1] / "examples" / "command" / "spec.toml"
    assert tune.main(["--spec", str(spec), "--results", str(tmp_path), "--trials", "2"]) == 0
    assert run.main(["--spec", str(spec), "--results", str(tmp_path), "--seeds", "1", "--arms", "baseline,l2",
                     "--jobs", "1"]) == 0
    url = f"sqlite:///{tmp_path / 'digits-softmax' / 'study.db'}"
    with start_dashboard(url) as server:
        base = server.base
        served = {s["study_name"]: s for s in get_json(f"{base}/api/studies")["study_summaries"]}
        assert set(served) == {"digits-softmax", "digits-softmax-tune-baseline"}
        for name, n_trials in (("digits-softmax", 2), ("digits-softmax-tune-baseline", 2)):
            assert served[name]["directions"] == ["minimize"]
            detail = get_json(f"{base}/api/studies/{served[name]['study_id']}")
            assert len(detail["trials"]) == n_trials
        ablation = get_json(f"{base}/api/studies/{served['digits-softmax']['study_id']}")
        # The seed is a run's attribute, not a hyperparameter: the importance and best-trial
        # panels see only the arm.
        assert {p["name"] for t in ablation["trials"] for p in t["params"]} == {"arm"}
        assert all({"arm", "seed"} <= {a["key"] for a in t["user_attrs"]} for t in ablation["trials"])
        assert all(t["values"] and 0 <= t["values"][0] <= 100 for t in ablation["trials"])
        assert [p["name"] for p in ablation["best_trials"][0]["params"]] == ["arm"]
        importances = get_json(f"{base}/api/studies/{served['digits-softmax']['study_id']}/param_importances")
        assert [p["name"] for p in importances["param_importances"][0]] == ["arm"]


@pytest.mark.skipif(not DASHBOARD.exists(), reason="optuna-dashboard is not installed in this environment")
def test_start_dashboard_serves_a_storage_and_stops(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(storage=url, study_name="lone")
    with start_dashboard(url) as server:
        listing = get_json(f"{server.base}/api/studies")
        assert [s["study_name"] for s in listing["study_summaries"]] == ["lone"]
    assert server.process.returncode is not None  # stopped on leaving the block


@pytest.mark.skipif(not DASHBOARD.exists(), reason="optuna-dashboard is not installed in this environment")
def test_a_dashboard_that_exits_early_reports_its_output(tmp_path):
    url = f"sqlite:///{tmp_path / 'no such folder' / 'study.db'}"  # the server cannot open it
    with pytest.raises(DashboardStartError, match=r"(?s)exited with \d+ before answering: .*Error"):
        start_dashboard(url, timeout=60)


@pytest.mark.skipif(not DASHBOARD.exists(), reason="optuna-dashboard is not installed in this environment")
def test_the_dashboard_stops_ranking_the_seed_once_a_study_is_migrated(tmp_path):
    """A study stored with the seed as a parameter: the served importance panel ranks it and the
    Best Trial card lists it (what the committed quick study showed); after study.migrate, arm alone."""
    import sys

    from test_dashboard_note import ARMS, stored_study
    from test_report import make_study

    from analysis.contract import ABLATION_KIND
    from study.migrate import seed_to_attribute

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import browser_check as BC

    path = make_study(tmp_path, ARMS, effects={"wide": 3.0}, seeds=range(6))
    st = stored_study(path, data_source="x", versions={}, seed_param=True)
    st.set_user_attr("kind", ABLATION_KIND)
    url = f"sqlite:///{path / 'study.db'}"

    def served():
        with start_dashboard(url) as server:  # a fresh server: it caches importances per study
            api = f"{server.base}/api/studies/{st._study_id}"
            return get_json(api), get_json(f"{api}/param_importances")

    detail, importances = served()
    assert {p["name"] for p in importances["param_importances"][0]} == {"arm", "seed"}
    assert len(BC.check_dashboard_api(detail, importances, str(path))) == 2
    assert seed_to_attribute(url, path.name).deleted == len(detail["trials"])
    detail, importances = served()
    assert [p["name"] for p in importances["param_importances"][0]] == ["arm"]
    assert BC.check_dashboard_api(detail, importances, str(path)) == []
    assert BC.panels(detail, importances).startswith("Hyperparameter Importance: arm 1.00; Best Trial: number=")
