"""The report generator on small synthetic studies written here (no CIFAR-10, no training)."""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from analysis import formatting
from analysis.contract import BUILTIN_SEED_STREAMS
from analysis.load import compare_arms, family_frame, load_study
from analysis.report import build_report, figures, integrity_checks, main, tables, write_report

ROOT = Path(__file__).resolve().parents[1]
BASE = {"width": 16, "bn": "all", "train_size": 1000, "val_size": 500, "test_size": 10000,
        "split_seed": 0, "flip": True, "epochs": 4, "batch_size": 100, "lr": 0.1,
        "momentum": 0.0, "weight_decay": 0.0001, "scheduler": "step", "step_size": 2,
        "gamma": 0.5, "precision": "auto", "test_every_epoch": False}
RUN_COLUMNS = ["arm", "seed", "status", "test_acc", "val_acc", "train_acc", "train_loss",
               "epochs_run", "diverged_epoch", "n_bn", "bn_layers", "lr_final", "wall_time_s",
               "device", "precision", "threads", "config_hash", "init_hash", "data_fingerprint",
               "git_commit", "trial_number", "error"]
BN = {"all": [1, 2, 3, 4, 5, 6], "none": [], "alternating": [1, 3, 5]}


def chash(config):
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def lr_for(config, epoch, *, broken=False):
    if config["scheduler"] == "none" or broken:
        return config["lr"]
    return config["lr"] * config["gamma"] ** ((epoch - 1) // config["step_size"])


def make_study(root, arms, *, seeds=range(5), effects=None, sd=None, failed=(), diverged=(),
               missing=(), broken_scheduler=(), name="synthetic", rng=0):
    """A results/<study>/ directory as `study.run` writes it.

    arms: name -> overrides. effects: name -> planted shift of test_acc (points). sd: name ->
    seed sd (default 0.4). failed/diverged/missing: (arm, seed) pairs. broken_scheduler: arms
    whose recorded lr ignores their StepLR config (the notebook bug).
    """
    effects, sd = effects or {}, sd or {}
    gen = np.random.default_rng(rng)
    path = root / name
    path.mkdir(parents=True)
    configs = {a: {**BASE, **o} for a, o in arms.items()}
    seed_effect = {s: gen.normal(0, 0.6) for s in seeds}
    runs, epochs = [], []
    for seed in seeds:
        for arm in arms:
            if (arm, seed) in missing:
                continue
            cfg = configs[arm]
            layers = BN[cfg["bn"]] if isinstance(cfg["bn"], str) else list(cfg["bn"])
            status = ("failed" if (arm, seed) in failed else
                      "diverged" if (arm, seed) in diverged else "complete")
            noise = gen.normal(0, sd.get(arm, 0.4)) if sd.get(arm, 0.4) > 0 else 0.0
            acc = 70.0 + seed_effect[seed] + effects.get(arm, 0.0) + noise
            if sd.get(arm) == 0:
                acc = 10.0
            n_ep = 0 if status == "failed" else (2 if status == "diverged" else cfg["epochs"])
            for e in range(1, n_ep + 1):
                epochs.append({"arm": arm, "seed": seed, "epoch": e,
                               "lr": lr_for(cfg, e, broken=arm in broken_scheduler),
                               "train_loss": 2.0 / e + gen.normal(0, 0.02),
                               "train_acc": acc * e / n_ep, "val_acc": acc * e / n_ep - 1,
                               "test_acc": None, "train_seconds": 1.0})
            runs.append({
                "arm": arm, "seed": seed, "status": status,
                "test_acc": round(acc, 2) if status == "complete" else None,
                "val_acc": round(acc - 1, 2) if status == "complete" else None,
                "train_acc": acc, "train_loss": 0.8, "epochs_run": n_ep,
                "diverged_epoch": 2 if status == "diverged" else None,
                "n_bn": len(layers), "bn_layers": " ".join(map(str, layers)),
                "lr_final": lr_for(cfg, cfg["epochs"]), "wall_time_s": 10.0,
                "device": "cpu: test", "precision": "bf16", "threads": 1,
                "config_hash": chash(cfg), "init_hash": f"init{seed}", "data_fingerprint": "f" * 64,
                "git_commit": "a" * 40, "trial_number": len(runs),
                "error": "RuntimeError: boom" if status == "failed" else None,
            })
    pd.DataFrame(runs, columns=RUN_COLUMNS).to_csv(path / "runs.csv", index=False)
    pd.DataFrame(epochs, columns=["arm", "seed", "epoch", "lr", "train_loss", "train_acc",
                                  "val_acc", "test_acc", "train_seconds"]).to_csv(
        path / "epochs.csv", index=False)
    meta = {"study": name, "identity": "abc123", "preset": "smoke", "spec_name": "synthetic",
            "spec_source": "tests", "description": "Does width matter?", "baseline": "baseline",
            "analysis": {"metric": "test_acc", "baseline": "baseline", "alpha": 0.05,
                         "margin": 0.5},
            "set": {}, "arms": {a: {"description": f"arm {a}", "overrides": o,
                                    "config": configs[a]} for a, o in arms.items()},
            "storage": f"sqlite:///{path}/study.db",
            "seed_streams": dict(BUILTIN_SEED_STREAMS)}  # as the runner records the built-in's
    (path / "study.json").write_text(json.dumps(meta, indent=2))
    return path


ARMS = {"baseline": {}, "wide": {"width": 32}, "low_lr_a": {"lr": 0.05},
        "low_lr_b": {"lr": 0.05}}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    path = make_study(root, ARMS, effects={"wide": 3.0}, failed=[("low_lr_b", 5)],
                      seeds=range(6), missing=[("wide", 5), ("low_lr_a", 5)])
    out = root / "paper"
    paths = write_report(path, out, note=False, dpi=50)
    return path, out, paths


def test_report_writes_every_file(written):
    _, out, paths = written
    names = {p.relative_to(out).as_posix() for p in paths}
    assert {"report.md", "report.html", "tables/results.tex", "tables/results.md",
            "tables/design.tex", "tables/provenance.tex"} <= names
    figs = {n for n in names if n.startswith("figures/")}
    assert figs == {f"figures/{k}.png" for k in
                    ("distribution", "learning_curves", "lr_schedule", "forest", "pairs", "power")}
    for p in paths:
        assert p.exists() and p.stat().st_size > 0
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_md_has_verdicts_and_integrity_flag(written):
    _, out, _ = written
    md = (out / "report.md").read_text()
    results = md[md.index("## 2. Results"):md.index("## 3. Figures")]
    row = next(line for line in results.splitlines() if line.startswith("| wide |"))
    assert row.rstrip(" |").endswith("better")
    assert "**`wide`: better.**" in md
    integrity = md[md.index("## 5. Integrity"):md.index("## 6. Provenance")]
    assert "These arms ran the same thing:" in integrity
    assert "⚠ **Integrity: 1 problem found**" in results
    flag = next(line for line in integrity.splitlines() if "ran the same thing" in line)
    assert "`low_lr_a`" in flag and "`low_lr_b`" in flag and "`wide`" not in flag
    assert "low_lr_b | 5 | failed" in integrity  # the failed run is listed
    for section in ("1. Question and design", "4. Methods", "6. Provenance"):
        assert f"## {section}" in md
    assert "paired t-test" in md and "Holm" in md
    assert "seeds 5" in md or "[5]" in md  # the seed dropped from the paired analysis is named


def test_tex_uses_booktabs_and_escapes(written):
    _, out, _ = written
    tex = (out / "tables" / "results.tex").read_text()
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert tex.count(rule) == 1
    assert r"low\_lr\_a" in tex and r"\begin{tabular}" in tex
    assert "−" not in tex and "_lr_" not in tex  # unicode minus and bare underscores escaped


def test_html_is_self_contained(written):
    _, out, _ = written
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 6
    assert 'src="figures/' not in page and "<table>" in page
    assert "ran the same thing" in page


def test_numbers_in_text_come_from_the_results(written):
    path, out, _ = written
    study = load_study(path)
    with pytest.warns(UserWarning, match=r"seeds \[5\] dropped"):
        fam = compare_arms(study, arms=["baseline", "wide", "low_lr_a", "low_lr_b"])
    frame = family_frame(fam).set_index("arm")
    md = (out / "report.md").read_text()
    assert formatting.number(frame.loc["wide", "diff"], signed=True, minus=formatting.MINUS) in md
    assert formatting.interval(frame.loc["wide", "ci_low"], frame.loc["wide", "ci_high"], signed=True,
                            minus=formatting.MINUS) in md
    assert formatting.p_value(frame.loc["wide", "p_adjusted"], minus=formatting.MINUS) in md


def test_figure_functions_return_figures_and_write_nothing(tmp_path, monkeypatch):
    path = make_study(tmp_path, ARMS, effects={"wide": 3.0})
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    study = load_study(path)
    arms = study.arms()
    configs = {a: v["config"] for a, v in study.meta["arms"].items()}
    fam = compare_arms(study)
    figs = [
        figures.distribution_figure(study.runs, arms=arms, baseline="baseline"),
        figures.learning_curves_figure(study.epochs, runs=study.runs, arms=arms),
        figures.lr_schedule_figure(study.epochs, arms=arms, configs=configs),
        figures.forest_figure(family_frame(fam), margin=0.5),
        figures.pairwise_figure(family_frame(compare_arms(study, pairs="all")), arms=arms),
        figures.power_figure(fam),
    ]
    for fig in figs:
        assert isinstance(fig, Figure) and fig.axes
    assert list(work.iterdir()) == []


def test_notebook_scheduler_bug_is_flagged(tmp_path):
    arms = {"baseline": {}, "no_scheduler": {"scheduler": "none"}}
    path = make_study(tmp_path, arms, broken_scheduler={"baseline"})
    study = load_study(path)
    result = integrity_checks(study.runs, study.epochs, study.meta, study.arms())
    text = " ".join(result["flags"])
    assert result["lr_mismatch"] == ["baseline"]
    assert "differs from the schedule its configuration asks for" in text
    assert "`baseline`, `no_scheduler` ran identical effective learning rates" in text
    assert result["same_thing"] == []  # the configs differ: not "the same thing"
    fig = figures.lr_schedule_figure(study.epochs, arms=study.arms(),
                               configs={a: v["config"] for a, v in study.meta["arms"].items()})
    assert "EFFECTIVE LR DIFFERS FROM CONFIG" in fig.axes[0].get_title()


def test_clean_study_has_no_flags_and_bn_mismatch_is_caught(tmp_path):
    arms = {"baseline": {}, "no_bn": {"bn": "none"}}
    path = make_study(tmp_path, arms)
    study = load_study(path)
    assert integrity_checks(study.runs, study.epochs, study.meta, study.arms())["flags"] == []
    runs = study.runs.copy()
    runs.loc[runs["arm"] == "no_bn", ["n_bn", "bn_layers"]] = [1, "4"]  # the notebook's "no BN"
    flags = integrity_checks(runs, study.epochs, study.meta, study.arms())["flags"]
    assert len(flags) == 1 and "`no_bn`" in flags[0] and "BatchNorm" in flags[0]


def test_a_loss_that_varies_in_its_third_decimal_is_not_called_flat(tmp_path):
    # A log loss near 0.09 whose seeds differ by ~0.001 in every arm: the caption said each arm
    # "barely varies (sd 0.001 points): check whether its runs learned at all (chance level is
    # 100 / number of classes)", a rule for accuracy in percent, not for this metric.
    gen = np.random.default_rng(1)
    arms = {"baseline (ours)": 0.0, "dropout=0.1": 0.001, "no-aug": -0.001, "dead": None}
    rows = [{"arm": a, "seed": s, "status": "complete",
             "val_loss": 0.693 if shift is None else 0.095 + shift + gen.normal(0, 0.0012)}
            for a, shift in arms.items() for s in range(5)]
    csv = tmp_path / "train_mlp_runs.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    rep = build_report(load_study(csv), plan={"metric": "val_loss", "baseline": "baseline (ours)", "margin": 0.01})
    caption = rep.figures["distribution"][1]
    # The results table showed every arm as 0.09 or 0.10 with CIs [0.09, 0.10]: two decimals
    # hid the differences the verdicts are about. It shows the intervals' first digit now.
    results = rep.tables["results"][0].set_index("arm")
    means = {a: float(results.loc[a, "mean"]) for a in ("baseline (ours)", "dropout=0.1", "no-aug")}
    assert len(set(means.values())) == 3 and all(abs(m - 0.095) < 0.0025 for m in means.values())
    low, high = (float(x) for x in results.loc["baseline (ours)", "95% CI"].strip("[]").split(", "))
    assert low < means["baseline (ours)"] < high
    assert float(results.loc["dead", "mean"]) == 0.693
    assert "`dead` barely varies" in caption  # a constant loss while the others vary: flagged
    for arm in ("baseline (ours)", "dropout=0.1", "no-aug"):
        assert f"`{arm}` barely varies" not in caption
    assert "100 / number of classes" not in caption and " points)" not in caption


def test_a_flat_arm_near_chance_shows_its_mean_to_the_digit_its_sd_reaches(tmp_path):
    # "mean 10, sd 0.0447": three significant digits rounded away the 0.02 that sets the arm
    # above chance (10.02), the one thing the caption asks the reader to check.
    gen = np.random.default_rng(3)
    rows = [{"arm": a, "seed": s, "status": "complete",
             "test_acc": 10.02 + gen.normal(0, 0.045) if a == "no BN" else 47 + gen.normal(0, 2)}
            for a in ("baseline", "no BN", "lr 3e-4") for s in range(6)]
    csv = tmp_path / "runs.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    rep = build_report(load_study(csv), plan={"metric": "test_acc", "baseline": "baseline", "chance": 10})
    caption = rep.figures["distribution"][1]
    mean = pd.DataFrame(rows).query("arm == 'no BN'")["test_acc"].mean()
    assert f"`no BN` barely varies across seeds (mean {mean:.2f}, sd 0.0" in caption
    assert "(chance level 10)" in caption


def test_every_arm_stuck_at_chance_is_still_flagged(tmp_path):
    # Flat only against the other arms' sd: when all arms sit at 10% with sds of 0.02, none is
    # flat against the rest, and no chance level is declared; the absolute floor still warns.
    gen = np.random.default_rng(4)
    rows = [{"arm": a, "seed": s, "status": "complete", "test_acc": 10 + gen.normal(0, 0.02)}
            for a in ("baseline", "no BN") for s in range(5)]
    csv = tmp_path / "runs.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    caption = build_report(load_study(csv), plan={"metric": "test_acc", "baseline": "baseline"}).figures["distribution"][1]
    assert "`baseline` barely varies" in caption and "`no BN` barely varies" in caption


def test_degenerate_studies(tmp_path):
    # zero-variance arm at chance, a diverged run, unequal seeds
    path = make_study(tmp_path / "a", {"baseline": {}, "dead": {"bn": "none"},
                                       "other": {"width": 8}},
                      sd={"dead": 0}, diverged=[("other", 1)], missing=[("other", 4)])
    rep = build_report(load_study(path))
    md_blocks = " ".join(getattr(b, "text", "") for b in rep.blocks)
    assert "`dead` barely varies" in rep.figures["distribution"][1]
    assert "diverged" in md_blocks
    assert set(rep.tables["excluded_runs"][0]["status"]) == {"diverged"}
    results = rep.tables["results"][0].set_index("arm")
    # each comparison is paired on the seeds its own two arms share: `other`'s diverged and
    # missing seeds cost only `other`'s comparison, so every n behind a Δ is the arm's n
    assert results.loc["dead", "n"] == 5 and results.loc["other", "n"] == 3
    assert "n in Δ" not in results.columns
    # a single arm: summaries only, no comparison figures
    path = make_study(tmp_path / "b", {"baseline": {}})
    rep = build_report(load_study(path))
    assert "forest" not in rep.figures and "power" not in rep.figures
    assert any("No comparisons" in getattr(b, "text", "") for b in rep.blocks)
    # the baseline has one complete run only
    path = make_study(tmp_path / "c", {"baseline": {}, "x": {"width": 8}}, seeds=range(3),
                      failed=[("baseline", 0), ("baseline", 1)])
    out = tmp_path / "c_out"
    assert main([str(path), "--out", str(out), "--no-note", "--dpi", "40"]) == 0
    assert ("the baseline `baseline` cannot be compared with: only 1 of its 3 runs has a value"
            in (out / "report.md").read_text())
    # no runs at all yet (header-only runs.csv)
    path = make_study(tmp_path / "d", {"baseline": {}, "x": {"width": 8}}, seeds=[])
    out = tmp_path / "d_out"
    assert main([str(path), "--out", str(out), "--no-note", "--dpi", "40"]) == 0
    assert "No complete runs yet" in (out / "report.md").read_text()


def test_cli_errors_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), "--no-note"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:")
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--no-note"]) == 2
    assert "runs.csv" in capsys.readouterr().err


def test_cli_prints_paths_and_saves_optuna_note(tmp_path, capsys):
    optuna = pytest.importorskip("optuna")
    dashboard = pytest.importorskip("optuna_dashboard")
    path = make_study(tmp_path, {"baseline": {}, "wide": {"width": 32}}, effects={"wide": 3.0},
                      seeds=range(3))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name="synthetic", storage=f"sqlite:///{path}/study.db")
    out = tmp_path / "out"
    assert main([str(path), "--out", str(out), "--dpi", "40"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert str(out / "report.md") in printed and str(out / "report.html") in printed
    assert any(line.startswith("saved the verdict note") for line in printed)
    note = dashboard.get_note(optuna.load_study(study_name="synthetic",
                                                storage=f"sqlite:///{path}/study.db"))
    assert "| wide |" in note and "better" in note


def test_missing_storage_skips_note_with_notice(tmp_path):
    path = make_study(tmp_path, {"baseline": {}, "wide": {"width": 32}}, seeds=range(3))
    messages = []
    write_report(path, tmp_path / "out", dpi=40, log=messages.append)
    assert len(messages) == 1 and messages[0].startswith("skipped the Optuna note")
    assert not (path / "study.db").exists()  # looking for it must not create it


def test_number_rules():
    # one rule per kind of number, in the report's typography (true minus) or plain text
    assert formatting.number(-0.0) == "0.00" and formatting.number(0.0, signed=True) == "+0.00"
    # a value its decimals would print as zero is written in significant digits, never "0.00"
    assert formatting.number(-0.001) == "-0.001" and formatting.number(0.001388, signed=True) == "+0.00139"
    assert formatting.number(0.0049, 3) == "0.005" and formatting.number(-4e-5, minus=formatting.MINUS) == "−4e−05"
    assert formatting.number(-1.5, signed=True, minus=formatting.MINUS) == "−1.50"
    assert formatting.number(-1.5, signed=True) == "-1.50" and formatting.number(float("nan")) == "n/a"
    assert formatting.number(None, missing="-") == "-" and formatting.number(float("inf")) == "∞"
    assert formatting.interval(-1.234, 2.0, signed=True) == "[-1.23, +2.00]"
    assert formatting.interval(1.0, float("nan")) == "n/a"
    assert formatting.p_value(0.0123) == "0.012" and formatting.p_value(1.66e-6, minus=formatting.MINUS) == "1.7e−6"
    assert formatting.p_relation(0.00432) == "= 0.0043" and formatting.p_relation(3e-5) == "< 0.0001"
    assert formatting.p_relation(0.0432) == "= 0.043"
    assert formatting.significant(0.000217) == "0.000217" and formatting.significant(-36.57, signed=True) == "-36.6"
    assert formatting.significant(float("inf")) == "n/a" and formatting.significant(2.5e-7, 2) == "2.5e-07"
    assert formatting.percent(0.25) == "25%" and formatting.percent(0.8, 1) == "80.0%"
    assert formatting.count(45_000) == "45,000" and formatting.count(0.1) == "0.1" and formatting.count(True) == "True"


def test_table_helpers():
    assert tables.seed_ranges([0, 1, 2, 3, 5, 7, 8]) == "0–3, 5, 7, 8"
    assert tables.seed_ranges([]) == "none"
    assert tables.config_diff({"bn": "none", "lr": 0.1}, {"bn": "all", "lr": 0.1}) == "bn: all → none"
    df = pd.DataFrame({"arm": ["a_b"], "x": ["−1.00"], "note": ["50% & more"]})
    tex = tables.to_latex(df, caption="`a_b` vs α", label="tab:x")
    assert r"a\_b & $-$1.00 & 50\% \& more \\" in tex
    assert r"\caption{\texttt{a\_b} vs $\alpha$}" in tex
    md = tables.to_markdown(pd.DataFrame({"a": ["x|y"], "n": ["1.0"]}))
    assert md.splitlines()[1] == "| --- | ---: |" and r"x\|y" in md
    assert re.search(r"<td class=\"num\">1.0</td>", tables.to_html(pd.DataFrame({"n": ["1.0"]})))


def test_the_report_leaves_matplotlib_to_its_caller(tmp_path):
    """Importing the analysis package used to call ``matplotlib.use("Agg")``, overriding the
    backend a notebook or MPLBACKEND had chosen, and every report figure stayed open in pyplot
    until closed by hand. Figures are now plain `Figure` objects drawn by Agg."""
    path = make_study(tmp_path, {"baseline": {}, "no_bn": {"bn": "none"}})
    code = ("import sys, matplotlib, matplotlib.pyplot as plt; import analysis.report as report; "
            "from analysis.load import load_study; "
            "rep = report.build_report(load_study(sys.argv[1])); "
            "print(matplotlib.get_backend(), len(rep.figures) > 3, plt.get_fignums())")
    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, env={**os.environ, "MPLBACKEND": "svg"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["svg", "True", "[]"]



def test_a_report_classifies_the_runs_and_resolves_the_plan_once(tmp_path, monkeypatch):
    """One owner per rule (issue 24): the classified runs table is computed once per report and
    passed down (summary, comparisons, all pairs, integrity), and the plan is not resolved again."""
    import analysis.load as load

    calls = {"classify": 0, "resolve_plan": 0}

    def counting(name, f):
        def counted(*a, **k):
            calls[name] += 1
            return f(*a, **k)
        return counted

    for name in calls:
        monkeypatch.setattr(load, name, counting(name, getattr(load, name)))
    path = make_study(tmp_path, ARMS, effects={"wide": 3.0}, missing=[("wide", 4)])
    build_report(load_study(path))
    assert calls == {"classify": 1, "resolve_plan": 1}


def test_methods_name_each_arms_primary_test_when_they_differ(tmp_path):
    """One arm's comparison falls back to the sign-flip permutation test (two seeds never
    learned: a bimodal arm) while the other keeps the paired t-test: the methods text and the
    captions say which test each comparison used, as the verdict table does, not the first
    arm's test for all."""
    from analysis.load import load_study
    from analysis.report import build_report

    gen = np.random.default_rng(3)
    shared = gen.normal(0, 0.5, 10)
    rows = []
    for arm, effect in {"baseline": 0.0, "wider": 1.5, "no_warmup": 1.0}.items():
        acc = 75 + effect + shared + gen.normal(0, 0.3, 10)
        if arm == "no_warmup":
            acc[[2, 7]] = 10.0  # chance: these seeds never learned
        rows += [{"arm": arm, "seed": s, "test_acc": float(v), "status": "complete"}
                 for s, v in enumerate(acc)]
    csv = tmp_path / "warmup_ablation.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    rep = build_report(load_study(csv), plan={"chance": 10})
    methods = next(b.text for b in rep.blocks if getattr(b, "text", "").startswith("**Primary test.**"))
    assert "the sign-flip permutation test for `no_warmup`" in methods
    assert "the paired t-test for `wider`" in methods
    assert "by the sign-flip permutation test on" not in methods  # not one test for all
    caption = rep.tables["results"][1]
    assert "sign-flip permutation test for `no_warmup`; paired t-test for `wider`" in caption


def test_a_figure_of_an_arm_named_with_a_space_is_a_working_markdown_link():
    """An arm named "no BN" gives figures/tuning_space_no BN_race.png: a Markdown link with a bare
    space in its target is no link at all (CommonMark), so the figure vanished from report.md."""
    from analysis.report.blocks import Report
    from analysis.report.render import render_markdown

    rep = Report(study="toyloss", title="toyloss")
    rep.add_figure("tuning_space_no BN_race", None, "Where the sampler looked.")  # type: ignore[arg-type]
    rep.add_figure("ci_plot", None, "Intervals.")  # type: ignore[arg-type]
    md = render_markdown(rep)
    assert "![tuning_space_no BN_race](<figures/tuning_space_no BN_race.png>)" in md
    assert "![ci_plot](figures/ci_plot.png)" in md  # names without a space are written as before
