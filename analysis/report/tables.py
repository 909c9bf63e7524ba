"""Report tables: display-ready DataFrames and their Markdown, LaTeX (booktabs) and HTML text.

Pure functions: frames in, frames or strings out; `analysis.report` writes the files. Every
number is formatted here from computed results (never typed by hand), by `analysis.formatting`,
so the Markdown, LaTeX and HTML versions always agree.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.contract import COMPLETE, DIVERGED, FAILED
from analysis.formatting import MINUS, interval, is_missing, number, p_value

__all__ = [
    "bn_table", "config_diff", "design_table", "excluded_runs_table", "fmt_value", "latex_escape",
    "pairs_table", "results_table", "seed_ranges", "to_html", "to_latex", "to_markdown",
]


# --- small values -----------------------------------------------------------------------------


def seed_ranges(seeds: Iterable) -> str:
    """``[0, 1, 2, 3, 5]`` -> ``"0–3, 5"``."""
    vals = sorted({int(s) for s in seeds})
    if not vals:
        return "none"
    parts, start, prev = [], vals[0], vals[0]
    for s in [*vals[1:], None]:
        if s is not None and s == prev + 1:
            prev = s
            continue
        parts.append(str(start) if start == prev else
                     f"{start}, {prev}" if prev == start + 1 else f"{start}–{prev}")
        if s is not None:
            start = prev = s
    return ", ".join(parts)


def fmt_value(v) -> str:
    """A configuration value as written in the report: lists in brackets, strings bare."""
    if isinstance(v, list | tuple):
        return "[" + ", ".join(map(str, v)) + "]"
    if isinstance(v, str):
        return v
    return repr(v) if isinstance(v, bool) else str(v)


def config_diff(config: Mapping | None, base: Mapping | None) -> str:
    """What `config` changes relative to `base`: ``"bn: all → none; lr: 0.1 → 0.05"``."""
    if config is None or base is None:
        return "config not recorded"
    changes = []
    for key in [*base, *(k for k in config if k not in base)]:
        a, b = base.get(key, "(unset)"), config.get(key, "(unset)")
        if a != b:
            changes.append(f"{key}: {fmt_value(a)} → {fmt_value(b)}")
    return "; ".join(changes) if changes else "none (same configuration)"


# --- the report's tables ----------------------------------------------------------------------


def design_table(runs: pd.DataFrame, meta: Mapping, arms: Sequence[str]) -> pd.DataFrame:
    """One row per arm: its change from the baseline (resolved configs), description, seeds."""
    specs = meta.get("arms", {})
    baseline = meta.get("analysis", {}).get("baseline", meta.get("baseline"))
    base_cfg = specs.get(baseline, {}).get("config")
    rows = []
    for arm in arms:
        sel = runs[runs["arm"] == arm]
        done = sel[sel["status"] == COMPLETE]
        spec = specs.get(arm, {})
        change = ("(baseline)" if arm == baseline else
                  config_diff(spec.get("config"), base_cfg))
        rows.append({
            "arm": arm,
            "change from baseline": change,
            "description": spec.get("description", ""),
            "seeds (complete)": seed_ranges(done["seed"]),
            "complete": len(done),
            "failed": int((sel["status"] == FAILED).sum()),
            "diverged": int((sel["status"] == DIVERGED).sum()),
        })
    return pd.DataFrame(rows, columns=["arm", "change from baseline", "description",
                                       "seeds (complete)", "complete", "failed", "diverged"])


def decimals_for(widths: pd.Series, least: int = 2) -> int:
    """Decimals that show the first digit of the narrowest interval's half-width, at least
    `least`: a loss near 0.09 known to +-0.0008 printed as "0.09 [0.09, 0.10]" at two."""
    half = pd.to_numeric(widths, errors="coerce") / 2
    half = half[np.isfinite(half) & (half > 0)]
    if half.empty:
        return least
    return int(min(max(least, math.ceil(-math.log10(float(half.min())))), 8))


def results_table(arms: pd.DataFrame, comparisons: pd.DataFrame, *, baseline: str | None,
                  alpha: float) -> pd.DataFrame:
    """The headline table: per arm n, mean and 95% CI; vs baseline: difference and CI,
    effect size, primary-test p raw and Holm-adjusted, verdict.

    `arms` is `arm_frame(...)`, `comparisons` `family_frame(...)` of the baseline family.
    """
    by_arm = {r["arm"]: r for _, r in comparisons.iterrows()} if len(comparisons) else {}
    names = sorted(set(comparisons.get("effect_size_name", pd.Series(dtype=str)).dropna()))
    es_col = f"effect size ({', '.join(names)})" if names else "effect size"
    rows = []
    at = decimals_for(arms.get("ci_high", pd.Series(dtype=float)) - arms.get("ci_low", pd.Series(dtype=float)))
    d_at = decimals_for(comparisons.get("ci_high", pd.Series(dtype=float))
                        - comparisons.get("ci_low", pd.Series(dtype=float)))
    for _, a in arms.iterrows():
        row = {
            "arm": a["arm"], "n": int(a["n"]), "mean": number(a["mean"], at, minus=MINUS),
            "95% CI": interval(a["ci_low"], a["ci_high"], at, minus=MINUS),
        }
        c = by_arm.get(a["arm"])
        if c is not None:
            p_adj = c["p_adjusted"]
            star = "*" if not is_missing(p_adj) and float(p_adj) < alpha else ""
            used = (f"{int(c['n_arm'])}" if c.get("paired", True) else
                    f"{int(c['n_arm'])} vs {int(c['n_baseline'])}")
            row.update({
                "n in Δ": used,
                f"Δ vs {baseline}": number(c["diff"], d_at, signed=True, minus=MINUS),
                "95% CI of Δ": interval(c["ci_low"], c["ci_high"], d_at, signed=True, minus=MINUS),
                es_col: number(c["effect_size"], signed=True, minus=MINUS),
                "p": p_value(c["p_value"], minus=MINUS),
                "p (Holm)": p_value(p_adj, minus=MINUS) + star,
                "verdict": str(c["verdict"]),
            })
        else:
            what = "(baseline)" if a["arm"] == baseline else "not compared"
            row.update({"n in Δ": "", f"Δ vs {baseline}": what, "95% CI of Δ": "", es_col: "",
                        "p": "", "p (Holm)": "", "verdict": ""})
        rows.append(row)
    out = pd.DataFrame(rows)
    # Show the n behind each difference only where it is not the arm's n (seeds dropped to pair).
    if "n in Δ" in out and all(u in ("", str(n)) for u, n in zip(out["n in Δ"], out["n"],
                                                               strict=True)):
        out = out.drop(columns="n in Δ")
    return out


def pairs_table(comparisons: pd.DataFrame, *, alpha: float) -> pd.DataFrame:
    """All-pairs family: one row per pair (first minus second)."""
    rows = []
    for _, c in comparisons.iterrows():
        p_adj = c["p_adjusted"]
        rows.append({
            "pair": f"{c['arm']} − {c['baseline']}",
            "Δ": number(c["diff"], signed=True, minus=MINUS),
            "95% CI": interval(c["ci_low"], c["ci_high"], signed=True, minus=MINUS),
            "p": p_value(c["p_value"], minus=MINUS),
            "p (Holm)": p_value(p_adj, minus=MINUS)
            + ("*" if not is_missing(p_adj) and p_adj < alpha else ""),
            "verdict": str(c["verdict"]),
        })
    return pd.DataFrame(rows, columns=["pair", "Δ", "95% CI", "p", "p (Holm)", "verdict"])


def _expected_bn(bn, recorded_alike: set[tuple[int, ...]]) -> tuple[int, ...] | None:
    """The BatchNorm layers a configured `bn` implies, from recorded data only (`analysis`
    does not know the model): an explicit list of layers is itself; "none" is no layer; any
    other name must give the same layers in every run of every arm configured with it
    (`recorded_alike`), so that is what is expected when they agree (None when they do not:
    then no arm can be checked against it, and the table says so)."""
    if isinstance(bn, list | tuple):
        try:
            return tuple(int(i) for i in bn)
        except (TypeError, ValueError):
            return None
    if bn in ("none", None, False, 0):
        return ()
    return next(iter(recorded_alike)) if len(recorded_alike) == 1 else None


def _layers(text) -> tuple[int, ...]:
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return ()
    return tuple(int(float(t)) for t in str(text).split())


def bn_table(runs: pd.DataFrame, meta: Mapping, arms: Sequence[str]) -> pd.DataFrame:
    """Per arm: the configured `bn`, the BatchNorm layers that implies, and what the runs'
    models really contained (`n_bn`, `bn_layers`); ``matches`` says whether they agree."""
    specs = meta.get("arms", {})
    configured = {a: json.dumps((specs.get(a, {}).get("config") or {}).get("bn"), sort_keys=True)
                  for a in arms}
    rows = []
    for arm in arms:
        sel = runs[(runs["arm"] == arm) & runs["n_bn"].notna()] if "n_bn" in runs else runs[:0]
        counts = sorted({int(v) for v in sel["n_bn"]}) if len(sel) else []
        layers = sorted({_layers(v) for v in sel.get("bn_layers", [])}) if len(sel) else []
        cfg = specs.get(arm, {}).get("config", {})
        alike = runs[runs["arm"].isin([a for a in arms if configured[a] == configured[arm]])]
        recorded = ({_layers(v) for v in alike["bn_layers"]} if "bn_layers" in alike
                    else set())
        expected = _expected_bn(cfg.get("bn"), recorded) if cfg else None
        if not counts:
            ok = "no runs"
        elif expected is None:
            ok = "unknown" if len(recorded) <= 1 else "NO"
        else:
            ok = "yes" if layers == [tuple(expected)] and counts == [len(expected)] else "NO"
        rows.append({
            "arm": arm,
            "configured bn": fmt_value(cfg.get("bn")) if cfg else "n/a",
            "expected layers": ("none" if expected == () else " ".join(map(str, expected)))
            if expected is not None else "n/a" if len(recorded) <= 1 else
            "the same in every arm configured alike",
            "n_bn (runs)": ", ".join(map(str, counts)) if counts else "n/a",
            "BN after convs (runs)": "; ".join(" ".join(map(str, t)) or "none" for t in layers)
            if layers else "n/a",
            "matches": ok,
        })
    return pd.DataFrame(rows)


def excluded_runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that are not in the statistics: failed (exception) or diverged (NaN/inf loss)."""
    bad = runs[runs["status"] != COMPLETE]
    rows = []
    for _, r in bad.iterrows():
        error = r.get("error")
        error = "" if is_missing(error) or error is None else str(error).strip().splitlines()[0][:160]
        epoch = r.get("diverged_epoch")
        rows.append({"arm": r["arm"], "seed": int(r["seed"]), "status": r["status"],
                     "diverged at epoch": "" if is_missing(epoch) else str(int(float(epoch))),
                     "error": error})
    return pd.DataFrame(rows, columns=["arm", "seed", "status", "diverged at epoch", "error"])


# --- renderers --------------------------------------------------------------------------------


def _cell(v) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, float):
        return number(v, minus=MINUS)
    return str(v)


def _integer_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Integer columns that pandas turned into floats for a gap (a trial number, a count, a
    missing row's NaN) back to integers, so they print "19", not "19.00". A float column
    counts as integer only with a gap and whole numbers elsewhere: a measured mean that
    happens to be whole keeps its decimals."""
    out = df.copy()
    for col in out.columns:
        s = out[col]
        if not pd.api.types.is_float_dtype(s) or not s.isna().any():
            continue
        present = s.dropna()
        if len(present) and np.isfinite(present).all() and (present == present.round()).all():
            out[col] = s.astype("Int64")
    return out


def _cells(df: pd.DataFrame) -> list[list[str]]:
    return [[_cell(v) for v in row] for row in _integer_columns(df).itertuples(index=False)]


def _numeric_like(values: Sequence[str]) -> bool:
    pat = re.compile(r"^[\s+\-−\[\]0-9.,e*∞×]*$|^n/a$|^$|^\(.*\)$")
    return all(pat.match(v) for v in values) and any(re.search(r"[0-9]", v) for v in values)


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured pipe table (numbers right-aligned)."""
    cols = [str(c) for c in df.columns]
    cells = [[v.replace("|", "\\|").replace("\n", " ") for v in row] for row in _cells(df)]
    align = ["---:" if _numeric_like([r[i] for r in cells]) else "---"
             for i in range(len(cols))]
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in cols) + " |",
             "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}
_LATEX_UNICODE = {
    MINUS: "$-$", "±": r"$\pm$", "Δ": r"$\Delta$", "→": r"$\to$", "–": "--", "∞": r"$\infty$",
    "α": r"$\alpha$", "≥": r"$\geq$", "≤": r"$\leq$", "×": r"$\times$", "≠": r"$\neq$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials; map the unicode the report uses to math; `code` -> texttt."""
    parts = re.split(r"`([^`]*)`", str(text))
    if len(parts) > 1:  # odd indices were inside backticks
        return "".join(r"\texttt{" + latex_escape(p) + "}" if i % 2 else latex_escape(p)
                       for i, p in enumerate(parts))
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    for k, v in _LATEX_UNICODE.items():
        out = out.replace(k, v)
    return out


def to_latex(df: pd.DataFrame, *, caption: str | None = None, label: str | None = None) -> str:
    """A booktabs table (``\\toprule``/``\\midrule``/``\\bottomrule``; needs
    ``\\usepackage{booktabs}``), in a ``table`` float when a caption or label is given."""
    cols = [str(c) for c in df.columns]
    cells = [[v.replace("\n", " ") for v in row] for row in _cells(df)]
    spec = "".join("r" if _numeric_like([r[i] for r in cells]) else "l"
                   for i in range(len(cols)))
    body = [r"\begin{tabular}{" + spec + "}", r"\toprule",
            " & ".join(latex_escape(c) for c in cols) + r" \\", r"\midrule"]
    body += [" & ".join(latex_escape(v) for v in r) + r" \\" for r in cells]
    body += [r"\bottomrule", r"\end{tabular}"]
    if caption is None and label is None:
        return "\n".join(body) + "\n"
    out = [r"\begin{table}[htbp]", r"\centering", r"\small"]
    if caption:
        out.append(r"\caption{" + latex_escape(caption) + "}")
    if label:
        out.append(r"\label{" + label + "}")
    return "\n".join([*out, *body, r"\end{table}"]) + "\n"


def to_html(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    cells = _cells(df)
    num = [_numeric_like([r[i] for r in cells]) for i in range(len(cols))]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    rows = []
    for r in cells:
        tds = "".join(f'<td class="num">{html.escape(v)}</td>' if n else
                      f"<td>{html.escape(v)}</td>" for v, n in zip(r, num, strict=True))
        rows.append(f"<tr>{tds}</tr>")
    return (f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(rows)
            + "\n</tbody>\n</table>\n")
