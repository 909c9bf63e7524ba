"""A real browser renders the report and optuna-dashboard (benchmarks/browser_check.py).

Skipped where no Chromium is installed (`apt-get install chromium`, or set $CHROMIUM)."""

import sys
from pathlib import Path

import optuna
import pytest
from test_dashboard_note import ARMS, stored_study
from test_report import make_study

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import browser_check as BC  # noqa: E402

optuna_dashboard = pytest.importorskip("optuna_dashboard")

BROWSER = BC.find_chromium()
pytestmark = [
    pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (apt-get install chromium)"),
    pytest.mark.skipif(not BC.DASHBOARD.exists(), reason="optuna-dashboard is not installed"),
]


def test_report_and_dashboard_show_verdicts_figures_and_note(tmp_path):
    pytest.importorskip("plotly")
    path = make_study(tmp_path / "results", ARMS, effects={"wide": 3.0}, seeds=range(4))
    stored_study(path, data_source="x", versions={})
    logged: list[str] = []
    problems = BC.run_checks(path, tmp_path / "work", BROWSER, shots=None, log=logged.append)
    assert problems == []
    (shown,) = [m for m in logged if m.startswith("dashboard panels:")]
    assert "Hyperparameter Importance: arm 1.00;" in shown and "seed" not in shown
    # The checks ran on a copy: the original study has no note and no figures.
    st = optuna.load_study(study_name=path.name, storage=f"sqlite:///{path}/study.db")
    assert optuna_dashboard.get_note(st) == ""
    assert not any(k.startswith("dashboard:plot_data")
                   for k in st._storage.get_study_system_attrs(st._study_id))


def test_checks_fail_on_pages_without_the_key_elements():
    assert BC.check_report_dom("<html><body><p>nothing</p></body></html>", ["baseline"])
    problems = BC.check_dashboard_dom("<div>baseline</div>", "<div>a note</div>", ["baseline", "wide"],
                                      "seedwise verdicts: s", BC.FIGURE_TITLES)
    assert any("'wide'" in p for p in problems) and any("the note" in p for p in problems)
    assert any("per arm over seeds" in p for p in problems)
    titles, note = " ".join(BC.FIGURE_TITLES), "seedwise verdicts: s wide: better. the luckiest seed"
    assert not BC.check_dashboard_dom(f"baseline wide test_acc {titles} {BC.BEST_TRIAL}1)", note,
                                      ["baseline", "wide"], "seedwise verdicts: s", BC.FIGURE_TITLES)
    problems = BC.check_dashboard_dom(f"baseline wide test_acc {BC.BEST_TRIAL}1) {titles}", note,
                                      ["baseline", "wide"], "seedwise verdicts: s", BC.FIGURE_TITLES)
    assert problems == ["dashboard: the Best Trial card comes before the verdict table"]


def test_api_check_flags_a_seed_read_as_a_hyperparameter():
    detail = {"best_trials": [{"number": 88, "values": [50.78],
                               "params": [{"name": "arm", "param_external_value": "baseline"},
                                          {"name": "seed", "param_external_value": "29"}]}]}
    importances = {"param_importances": [[{"name": "seed", "importance": 0.97},
                                          {"name": "arm", "importance": 0.03}]]}
    assert BC.panels(detail, importances) == ("Hyperparameter Importance: seed 0.97, arm 0.03; "
                                              "Best Trial: number=88 50.78 [arm: baseline, seed: 29]")
    problems = BC.check_dashboard_api(detail, importances, "results/q")
    assert len(problems) == 2 and all("python -m study.migrate results/q" in p for p in problems)
    detail["best_trials"][0]["params"].pop()
    assert BC.check_dashboard_api(detail, {"param_importances": [[{"name": "arm", "importance": 1.0}]]},
                                  "results/q") == []


@pytest.mark.slow
def test_committed_quick_study_in_the_browser(tmp_path, capsys):
    study = Path(__file__).resolve().parents[1] / "results" / "notebook-ablation-quick"
    if not (study / "study.db").exists():
        pytest.skip("the committed quick study is not in this checkout")
    before = (study / "study.db").read_bytes()
    assert BC.main(["--study", str(study), "--shots", str(tmp_path)]) == 0
    assert "all present" in capsys.readouterr().out
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    assert (study / "study.db").read_bytes() == before  # checks ran on a copy
