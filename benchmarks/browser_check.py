"""What a person sees, rendered by a real browser: the report page and optuna-dashboard.

    python benchmarks/browser_check.py                                  # committed quick study
    python benchmarks/browser_check.py --study results/my-study --shots /tmp/shots

Copies the study's results directory (with its study.db) to a temporary folder, never touching
the original; writes the report there (which also writes the verdict note and the per-arm
figures into the copy's study.db); renders report.html in headless Chromium and checks the
verdict table, the figures and the verdicts are on the page; then serves the copy with
`optuna-dashboard` on 127.0.0.1 (a free port) and checks that the rendered study page shows the
arm names, the note and the figures, the verdict table above the Best Trial card, and (from the
server's API) that neither the Hyperparameter Importance panel nor the Best Trial card treats
the seed as a hyperparameter; it prints what those two panels show. With --shots, also saves
PNG screenshots of both. The server is stopped at the end, whatever happens; every step has a
time limit.

Exit status: 0 all checks passed, 1 a check failed (listed), 2 no Chromium / bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DASHBOARD = Path(sys.executable).parent / "optuna-dashboard"  # = analysis.dashboard.server's
FIGURE_TITLES = ("Verdicts:", "per arm over seeds", "Difference from")  # analysis.dashboard.panels's figures
BEST_TRIAL = "Best Trial (number="  # optuna-dashboard's card title for a single-objective study


def find_chromium() -> str | None:
    """The first Chromium-family browser on PATH (or $CHROMIUM), None if there is none."""
    for name in (os.environ.get("CHROMIUM"), *CHROMIUM_NAMES):
        if name and (path := shutil.which(name)):
            return path
    return None


def _chromium(browser: str, url: str, *args: str, budget_ms: int, timeout: float) -> str:
    # --no-sandbox: containers run as root, where Chromium's sandbox refuses to start.
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--hide-scrollbars", f"--virtual-time-budget={budget_ms}", *args, url]
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        done = subprocess.run([*cmd, f"--user-data-dir={profile}"], capture_output=True,
                              text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr.strip()[-400:]}")
    return done.stdout


def dump_dom(browser: str, url: str, *, budget_ms: int = 8000, timeout: float = 90) -> str:
    """The page's DOM after its scripts ran for `budget_ms` of virtual time."""
    return _chromium(browser, url, "--dump-dom", budget_ms=budget_ms, timeout=timeout)


def screenshot(browser: str, url: str, png: Path, *, size: tuple[int, int] = (1400, 2400),
               budget_ms: int = 8000, timeout: float = 90) -> Path:
    _chromium(browser, url, f"--screenshot={png}", f"--window-size={size[0]},{size[1]}",
              budget_ms=budget_ms, timeout=timeout)
    return png


def _text(dom: str) -> str:
    """Visible-ish text of a DOM dump: tags dropped, entities left (we only search words)."""
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    return " ".join(re.sub(r"<[^>]+>", " ", dom).split())


def check_report_dom(dom: str, arms: Sequence[str]) -> list[str]:
    """Problems with a rendered report.html (an empty list: all present)."""
    problems = []
    text = _text(dom)
    if "Table (results)" not in text or not re.search(r"<th>verdict</th>", dom):
        problems.append("report: no results table with a verdict column")
    for fig in ("distribution", "forest"):
        if not re.search(rf'<img alt="{fig}" src="data:image/png;base64,[A-Za-z0-9+/]{{200}}', dom):
            problems.append(f"report: figure {fig!r} is not embedded")
    problems += [f"report: arm {a!r} not shown" for a in arms if a not in text]
    if not re.search(r"\b(better|worse|equivalent|inconclusive)\.", text):
        problems.append("report: no verdict sentence")
    return problems


def check_dashboard_dom(main_dom: str, note_dom: str, arms: Sequence[str],
                        note_heading: str, figure_titles: Sequence[str]) -> list[str]:
    """Problems with the rendered optuna-dashboard study page and its Note page."""
    text, note = _text(main_dom), _text(note_dom)
    problems = [f"dashboard: arm {a!r} not shown" for a in arms if a not in text]
    if "test_acc" not in text:
        problems.append("dashboard: the metric name test_acc is not shown")
    problems += [f"dashboard: figure {t!r} not rendered" for t in figure_titles
                 if t not in text]
    if note_heading not in note:
        problems.append(f"dashboard: the note ({note_heading!r}) is not shown")
    elif not re.search(r"\b(better|worse|equivalent|inconclusive)\.", note):
        problems.append("dashboard: the note shows no verdict")
    if "luckiest seed" not in note:
        problems.append("dashboard: the note does not say which widgets do not apply")
    verdicts, best = text.find(figure_titles[0]), text.find(BEST_TRIAL)
    if verdicts >= 0 and best >= 0 and best < verdicts:
        problems.append("dashboard: the Best Trial card comes before the verdict table")
    return problems


def panels(detail: dict, importances: dict) -> str:
    """What the Hyperparameter Importance panel and the Best Trial card show, in one line, from
    optuna-dashboard's API answers (`/api/studies/ID` and `.../param_importances`)."""
    ranked = ", ".join(f"{p['name']} {p['importance']:.2f}"
                       for p in (importances.get("param_importances") or [[]])[0]) or "none"
    best = "none"
    if detail.get("best_trials"):
        b = detail["best_trials"][0]
        params = ", ".join(f"{p['name']}: {p['param_external_value']}" for p in b["params"])
        best = f"number={b['number']} {', '.join(f'{v:g}' for v in b['values'] or [])} [{params}]"
    return f"Hyperparameter Importance: {ranked}; Best Trial: {best}"


def check_dashboard_api(detail: dict, importances: dict, storage_hint: str) -> list[str]:
    """Problems with what the importance and best-trial panels are given: a `seed` there reads
    a replicate as a tuned hyperparameter (a study stored before the seed left the trial
    parameters; `storage_hint` names it for `python -m study.migrate`)."""
    ranked = {p["name"] for p in (importances.get("param_importances") or [[]])[0]}
    best = {p["name"] for b in detail.get("best_trials", []) for p in b["params"]}
    fix = f"; python -m study.migrate {storage_hint} makes it an attribute only"
    problems = []
    if "seed" in ranked:
        problems.append(f"dashboard: Hyperparameter Importance ranks the seed{fix}")
    if "seed" in best:
        problems.append(f"dashboard: the Best Trial card lists the seed as a parameter{fix}")
    return problems


def _get_json(url: str, timeout: float = 120) -> dict:
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def copy_results(study_dir: Path, into: Path) -> Path:
    """Copy `study_dir` and its sibling studies (a tuning or confirmation study may share the
    storage) under `into`, pointing every copied study.json at the copied study.db."""
    src_root = study_dir.resolve().parent
    dst_root = into / src_root.name
    shutil.copytree(src_root, dst_root)  # artifacts too: the report reads test predictions
    for meta_path in dst_root.glob("*/study.json"):
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        url = meta.get("storage") or ""
        if url.startswith("sqlite:///"):
            db = Path(url[len("sqlite:///"):])
            meta["storage"] = f"sqlite:///{dst_root / db.parent.name / db.name}"
            meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return dst_root / study_dir.resolve().name


def run_checks(study_dir: Path, work: Path, browser: str, shots: Path | None,
               log=print) -> list[str]:
    """Every check on a copy of `study_dir` under `work`; the list of problems found."""
    from analysis.dashboard.server import start_dashboard
    from analysis.load import load_study
    from analysis.report import write_report

    copy = copy_results(study_dir, work)
    messages: list[str] = []
    write_report(copy, work / "paper", dpi=60, log=messages.append)
    log("report: " + "; ".join(messages))
    study = load_study(copy)
    arms = study.arms()
    name = study.meta.get("study", copy.name)
    page = (work / "paper" / "report.html").resolve()
    problems = check_report_dom(dump_dom(browser, page.as_uri(), budget_ms=2000), arms)
    if shots:
        log(f"screenshot {screenshot(browser, page.as_uri(), shots / 'report.png')}")

    import optuna

    summaries = optuna.get_all_study_summaries(study.storage_url)
    study_id = next(s._study_id for s in summaries if s.study_name == name)
    with start_dashboard(study.storage_url) as server:
        api = f"{server.base}/api/studies/{study_id}"
        detail, importances = _get_json(api), _get_json(f"{api}/param_importances")
        log(f"dashboard panels: {panels(detail, importances)}")
        problems += check_dashboard_api(detail, importances, str(study_dir))
        url = f"{server.base}/dashboard/studies/{study_id}"
        main_dom = dump_dom(browser, url, budget_ms=15000)
        note_dom = dump_dom(browser, f"{url}/note", budget_ms=10000)
        problems += check_dashboard_dom(main_dom, note_dom, arms,
                                        f"seedwise verdicts: {name}", FIGURE_TITLES)
        if shots:
            for page, png in ((url, "dashboard.png"), (f"{url}/note", "dashboard_note.png")):
                log(f"screenshot {screenshot(browser, page, shots / png, budget_ms=15000)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", default="results/notebook-ablation-quick",
                   help="results directory of the study to check (copied, never modified)")
    p.add_argument("--shots", help="folder for report.png and dashboard.png screenshots")
    args = p.parse_args(argv)
    if str(ROOT) not in sys.path:  # run as a script: the repository's packages
        sys.path.insert(0, str(ROOT))
    browser = find_chromium()
    if browser is None:
        print("error: no Chromium found (apt-get install chromium, or set $CHROMIUM)",
              file=sys.stderr)
        return 2
    study_dir = Path(args.study)
    if not (study_dir / "runs.csv").exists():
        print(f"error: --study {study_dir}: no runs.csv there", file=sys.stderr)
        return 2
    if not DASHBOARD.exists():
        print(f"error: optuna-dashboard not found beside {sys.executable}", file=sys.stderr)
        return 2
    shots = Path(args.shots) if args.shots else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="seedwise-browser-") as work:
        problems = run_checks(study_dir, Path(work), browser, shots)
    for line in problems:
        print("FAIL " + line)
    print("browser check: " + ("all present" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
