"""Report figures: pure functions from a study's frames to a matplotlib `Figure`.

Nothing here writes files or shows windows; `analysis.report` saves what these return. Every
function takes tidy frames (`runs.csv`, `epochs.csv`, `family_frame(...)`) or a `Family`, so it
can be called from a notebook on any subset of a study. Arms keep one colour in every figure
(`arm_palette`). Intervals for means over seeds are t intervals (the bootstrap is too narrow at
a handful of seeds, see `analysis.describe`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy import stats  # noqa: E402

from .family import Family  # noqa: E402
from .power import detectable_difference  # noqa: E402

METRIC_LABELS = {
    "test_acc": "test accuracy (%)",
    "val_acc": "validation accuracy (%)",
    "train_acc": "training accuracy (%)",
    "train_loss": "training loss",
    "lr": "learning rate",
}
VERDICT_COLORS = {
    "better": "#1a9850",
    "worse": "#d73027",
    "equivalent": "#4575b4",
    "inconclusive": "#7f7f7f",
}
CONFIDENCE = 0.95

__all__ = [
    "METRIC_LABELS", "VERDICT_COLORS", "arm_palette", "configured_lr", "detectable",
    "distribution_figure",
    "forest_figure", "learning_curves_figure", "lr_schedule_figure", "pairwise_figure",
    "power_figure", "t_interval",
]


def _label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def arm_palette(arms: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """One colour per arm, in order (colour-blind safe for up to 10 arms)."""
    arms = list(dict.fromkeys(arms))
    colors = (sns.color_palette("colorblind", len(arms)) if len(arms) <= 10
              else sns.color_palette("husl", len(arms)))
    return dict(zip(arms, colors, strict=True))


def t_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float, float] | None:
    """(mean, low, high) of the t interval for the mean; None without data.

    One value gives ``(x, nan, nan)``; zero variance collapses the interval to the mean.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return None
    mean = float(x.mean())
    if x.size == 1:
        return mean, math.nan, math.nan
    sd = float(x.std(ddof=1))
    if sd == 0:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1)) * sd / math.sqrt(x.size)
    return mean, mean - half, mean + half


def _order(arms: Sequence[str] | None, present: Sequence[str]) -> list[str]:
    present = list(dict.fromkeys(present))
    if arms is None:
        return present
    return list(arms)


def _complete(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    ok = runs[runs["status"] == "complete"].copy()
    ok[metric] = pd.to_numeric(ok[metric], errors="coerce")
    return ok[np.isfinite(ok[metric].to_numpy(dtype=float))]


def _empty(fig: Figure, ax, text: str) -> Figure:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11)
    ax.set_axis_off()
    return fig


# --- 1. per-arm distribution ------------------------------------------------------------------


def distribution_figure(
    runs: pd.DataFrame,
    *,
    metric: str = "test_acc",
    arms: Sequence[str] | None = None,
    baseline: str | None = None,
    palette: Mapping[str, object] | None = None,
    seed: int = 0,
) -> Figure:
    """Every seed's value per arm (points) with the mean and its 95% t interval (black).

    Only complete runs are plotted; the tick label gives n and any failed/diverged runs.
    `seed` fixes the horizontal jitter (seaborn draws it from NumPy's global generator).
    """
    arms = _order(arms, runs["arm"])
    palette = dict(palette or arm_palette(arms))
    ok = _complete(runs, metric)
    ok = ok[ok["arm"].isin(arms)]
    fig, ax = plt.subplots(figsize=(max(6.5, 1.5 * len(arms) + 2.5), 4.8), layout="constrained")
    if ok.empty:
        return _empty(fig, ax, f"no complete runs with {metric}")
    state = np.random.get_state()
    np.random.seed(seed)  # same figure bytes for the same data; the caller's state is restored
    try:
        sns.stripplot(data=ok, x="arm", y=metric, order=arms, hue="arm", hue_order=arms,
                      palette=palette, jitter=0.12, size=6, alpha=0.75, edgecolor="white",
                      linewidth=0.5, legend=False, ax=ax)
    finally:
        np.random.set_state(state)
    labels = []
    for i, arm in enumerate(arms):
        sel = runs[runs["arm"] == arm]
        vals = ok.loc[ok["arm"] == arm, metric].to_numpy(dtype=float)
        bad = int((sel["status"] != "complete").sum())
        labels.append(f"{arm}\nn={len(vals)}" + (f" (+{bad} not complete)" if bad else ""))
        ci = t_interval(vals)
        if ci is None:
            continue
        mean, lo, hi = ci
        x = i + 0.3
        if np.isfinite(lo):
            ax.errorbar(x, mean, yerr=[[mean - lo], [hi - mean]], fmt="D", color="black",
                        markersize=6, capsize=5, elinewidth=1.6, zorder=5)
        else:
            ax.plot(x, mean, "D", color="black", markersize=6, zorder=5)
        ax.annotate(f"{mean:.2f}", (x, mean), xytext=(7, 0), textcoords="offset points",
                    va="center", ha="left", fontsize=8.5)
    if baseline is not None and baseline in set(ok["arm"]):
        base_mean = float(ok.loc[ok["arm"] == baseline, metric].mean())
        ax.axhline(base_mean, color="0.4", lw=1, ls="--", zorder=0,
                   label=f"{baseline} mean ({base_mean:.2f})")
    ax.errorbar([], [], yerr=[], fmt="D", color="black", capsize=5,
                label=f"mean and {CONFIDENCE:.0%} t interval over seeds")
    ax.plot([], [], "o", color="0.5", alpha=0.75, label="one seed")
    ax.set_xticks(range(len(arms)), labels)
    ax.set_xlim(-0.6, len(arms) - 0.2)
    ax.set_xlabel("")
    ax.set_ylabel(_label(metric))
    ax.set_title(f"{_label(metric).capitalize()} per arm over seeds")
    ax.legend(loc="best", fontsize=8.5, framealpha=0.9)
    ax.grid(axis="y", alpha=0.3)
    return fig


# --- 2. learning curves -----------------------------------------------------------------------


def _band(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    rows = []
    for epoch, grp in frame.groupby("epoch", sort=True):
        ci = t_interval(pd.to_numeric(grp[metric], errors="coerce"))
        if ci is not None:
            rows.append((epoch, *ci))
    return pd.DataFrame(rows, columns=["epoch", "mean", "low", "high"])


def learning_curves_figure(
    epochs: pd.DataFrame,
    *,
    runs: pd.DataFrame | None = None,
    arms: Sequence[str] | None = None,
    metrics: Sequence[str] = ("val_acc", "train_loss"),
    palette: Mapping[str, object] | None = None,
) -> Figure:
    """Per arm and epoch: mean over seeds (line) and its 95% t band, one panel per metric.

    With `runs`, only runs whose status is ``complete`` are averaged (a diverged run's NaN
    losses would end the curve). Metrics that were never measured are left out.
    """
    arms = _order(arms, epochs.get("arm", []))
    palette = dict(palette or arm_palette(arms))
    data = epochs
    if runs is not None and not epochs.empty:
        keep = runs.loc[runs["status"] == "complete", ["arm", "seed"]]
        data = epochs.merge(keep, on=["arm", "seed"], how="inner")
    metrics = [m for m in metrics if m in data and pd.to_numeric(data[m], errors="coerce").notna().any()]
    if data.empty or not metrics:
        fig, ax = plt.subplots(figsize=(8, 3), layout="constrained")
        return _empty(fig, ax, "no per-epoch records")
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.0 * len(metrics), 4.6),
                             layout="constrained", squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for arm in arms:
            band = _band(data[data["arm"] == arm], metric)
            if band.empty:
                continue
            color = palette.get(arm)
            ax.plot(band["epoch"], band["mean"], color=color, lw=1.8, marker="o", ms=3,
                    label=arm)
            ax.fill_between(band["epoch"], band["low"], band["high"], color=color, alpha=0.2,
                            lw=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel(_label(metric))
        ax.set_title(_label(metric).capitalize())
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 5),
               fontsize=9, frameon=False)
    fig.suptitle(f"Learning curves: mean over complete runs and {CONFIDENCE:.0%} t band over seeds")
    return fig


# --- 3. effective learning rate ---------------------------------------------------------------


def configured_lr(config: Mapping[str, object], epochs: Sequence[int]) -> np.ndarray | None:
    """The per-epoch lr that `config` asks for (StepLR or constant); None if not known.

    StepLR(step_size, gamma) on the optimizer that steps: ``lr * gamma ** ((epoch-1) //
    step_size)`` during 1-based `epoch`; ``scheduler = "none"``: constant ``lr``.
    """
    try:
        lr = float(config["lr"])
        scheduler = config.get("scheduler", "none")
        ep = np.asarray(epochs, dtype=int)
        if scheduler == "none":
            return np.full(ep.shape, lr)
        if scheduler == "step":
            return lr * float(config["gamma"]) ** ((ep - 1) // int(config["step_size"]))
    except (KeyError, TypeError, ValueError):
        return None
    return None


def _schedule_text(config: Mapping[str, object] | None) -> str:
    if not config:
        return "config unknown"
    if config.get("scheduler") == "step":
        return f"config: StepLR({config.get('step_size')}, {config.get('gamma')}), lr {config.get('lr')}"
    if config.get("scheduler") == "none":
        return f"config: constant lr {config.get('lr')}"
    return f"config: scheduler {config.get('scheduler')!r}"


def lr_schedule_figure(
    epochs: pd.DataFrame,
    *,
    arms: Sequence[str] | None = None,
    configs: Mapping[str, Mapping[str, object]] | None = None,
    palette: Mapping[str, object] | None = None,
) -> Figure:
    """The learning rate each run's optimizer actually used, per epoch, one panel per arm.

    Solid: the lr read from the optimizer that stepped (every seed drawn; they overlap when
    they agree). Dashed: the schedule the arm's configuration asks for (`configured_lr`). A
    panel whose effective lr departs from its configuration is titled in red, and arms whose
    panels look the same ran the same schedule whatever their configs say: the figure that
    catches a scheduler attached to an optimizer that never steps.
    """
    configs = configs or {}
    present = list(epochs["arm"]) if "arm" in epochs else []
    arms = _order(arms, present)
    palette = dict(palette or arm_palette(arms))
    data = epochs.copy()
    if "lr" in data:
        data["lr"] = pd.to_numeric(data["lr"], errors="coerce")
    if data.empty or "lr" not in data or not data["lr"].notna().any():
        fig, ax = plt.subplots(figsize=(8, 3), layout="constrained")
        return _empty(fig, ax, "no per-epoch learning rates recorded")
    ncols = min(len(arms), 3)
    nrows = math.ceil(len(arms) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.0 * nrows + 0.6),
                             layout="constrained", sharex=True, sharey=True, squeeze=False)
    top = float(data["lr"].max())
    all_epochs = np.sort(data["epoch"].dropna().unique().astype(int))
    for ax in axes.flat[len(arms):]:
        ax.set_axis_off()
    for ax, arm in zip(axes.flat, arms, strict=False):
        sel = data[data["arm"] == arm]
        seqs = []
        for _, run in sel.groupby("seed", sort=True):
            run = run.sort_values("epoch")
            ax.plot(run["epoch"], run["lr"], drawstyle="steps-mid", color=palette.get(arm),
                    lw=2.2, alpha=0.6, marker="o", ms=3.5)
            seqs.append(tuple(np.round(run["lr"].to_numpy(dtype=float), 12)))
        cfg = configs.get(arm)
        expected = configured_lr(cfg, all_epochs) if cfg else None
        mismatch = False
        if expected is not None:
            top = max(top, float(expected.max()))
            ax.plot(all_epochs, expected, drawstyle="steps-mid", color="black", lw=1.1,
                    ls="--")
            want = dict(zip(all_epochs.tolist(), expected, strict=True))
            for _, row in sel.iterrows():
                e = int(row["epoch"])
                if e in want and np.isfinite(row["lr"]) and not math.isclose(
                        row["lr"], want[e], rel_tol=1e-6, abs_tol=1e-12):
                    mismatch = True
                    break
        n_distinct = len(set(seqs))
        note = (f"{len(seqs)} seed{'s' if len(seqs) != 1 else ''}"
                + ("" if n_distinct <= 1 else f", {n_distinct} different schedules"))
        title = f"{arm}\n{_schedule_text(cfg)}"
        if mismatch:
            title += "\nEFFECTIVE LR DIFFERS FROM CONFIG"
        ax.set_title(title, fontsize=9.5, color="#b2182b" if mismatch or n_distinct > 1 else "black")
        ax.text(0.97, 0.05, note, transform=ax.transAxes, ha="right", va="bottom", fontsize=8,
                color="0.3")
        ax.grid(alpha=0.3)
    # The lowest drawn panel of each column carries the epoch ticks: with sharex, matplotlib
    # only labels the last row, which leaves a column above an empty slot without any.
    for col in range(ncols):
        drawn = [r for r in range(nrows) if r * ncols + col < len(arms)]
        low = axes[drawn[-1], col]
        low.tick_params(labelbottom=True)
        low.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel("lr used")
    axes[0][0].set_ylim(0, top * 1.15)
    axes[0][0].xaxis.get_major_locator().set_params(integer=True)
    handles = [plt.Line2D([], [], color="0.35", lw=2.2, marker="o", ms=3.5,
                          label="effective lr (read from the optimizer), one line per seed"),
               plt.Line2D([], [], color="black", lw=1.1, ls="--",
                          label="lr the arm's configuration asks for")]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=8.5, frameon=False)
    fig.suptitle("Effective learning rate per epoch")
    return fig


# --- 4. forest plot ---------------------------------------------------------------------------


def _fmt_p(p) -> str:
    from .tables import fmt_p

    return fmt_p(p)


def forest_figure(
    frame: pd.DataFrame,
    *,
    margin: float,
    baseline: str | None = None,
    metric: str = "test_acc",
    direction: str = "maximize",
) -> Figure:
    """Difference of each arm from the baseline with its 95% CI, coloured by verdict.

    The x label says which side is better: right for a metric to maximize, left for one to
    minimize (a loss), so a reader never takes a higher loss for an improvement.

    `frame` is `family_frame` of a ``pairs="baseline"`` family. The grey band is the
    equivalence margin ±`margin`; the right-hand labels give the numbers and Holm p. When the
    differences span far more than the margin, a second panel zooms on ±5 margins so that the
    band stays readable next to large effects.
    """
    k = len(frame)
    height = 1.4 + 0.62 * max(k, 1) + 0.6
    if k == 0:
        fig, ax = plt.subplots(figsize=(10, height), layout="constrained")
        return _empty(fig, ax, "no comparisons (fewer than two arms with at least two runs)")
    baseline = baseline or str(frame["baseline"].iloc[0])
    lo = min(float(frame["ci_low"].min()), -margin)
    hi = max(float(frame["ci_high"].max()), margin)
    zoom = (hi - lo) > 12 * margin
    if zoom:
        fig, (ax, zax) = plt.subplots(1, 2, figsize=(12, height), layout="constrained",
                                      sharey=True, width_ratios=[3, 2])
        panels = [(ax, lo, hi, f"arm − {baseline}: all arms"), (zax, -5 * margin, 5 * margin,
                                             f"zoom on ±{5 * margin:g} (5 margins)")]
    else:
        fig, ax = plt.subplots(figsize=(10, height), layout="constrained")
        panels = [(ax, lo, hi, f"arm − {baseline}")]
    y = np.arange(k)[::-1]
    verdicts = frame["verdict"].astype(str).tolist()
    for pax, a, b, title in panels:
        pax.axvspan(-margin, margin, color="0.85", zorder=0)
        pax.axvline(0, color="0.3", lw=1, zorder=1)
        for yi, row, verdict in zip(y, frame.itertuples(index=False), verdicts, strict=True):
            color = VERDICT_COLORS.get(verdict, "black")
            pax.errorbar(row.diff, yi, xerr=[[max(0.0, row.diff - row.ci_low)],
                                             [max(0.0, row.ci_high - row.diff)]],
                         fmt="o", color=color, capsize=5, ms=7, elinewidth=2, zorder=3)
            if row.ci_high < a or row.ci_low > b:  # entirely off this panel's scale
                pax.annotate("◀ off scale" if row.ci_high < a else "off scale ▶",
                             (0.02 if row.ci_high < a else 0.98, yi),
                             xycoords=("axes fraction", "data"), va="center",
                             ha="left" if row.ci_high < a else "right", fontsize=8, color=color)
        pad = 0.06 * (b - a)
        pax.set_xlim(a - pad, b + pad)
        pax.grid(axis="x", alpha=0.3)
        for side in ("top", "right"):
            pax.spines[side].set_visible(False)
        if title:
            pax.set_title(title, fontsize=10.5)
    ax.set_yticks(y, list(frame["arm"]))
    ax.set_ylim(-0.7, k - 0.3)
    last = panels[-1][0]
    twin = last.twinx()
    twin.set_ylim(ax.get_ylim())
    twin.set_yticks(y, [f"{r.diff:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]\n"
                        f"{v}, p(Holm) {_fmt_p(r.p_adjusted)}"
                        for r, v in zip(frame.itertuples(index=False), verdicts, strict=True)],
                    fontsize=8.5)
    twin.tick_params(axis="y", length=0)
    for side in ("top", "right"):
        twin.spines[side].set_visible(False)
    sides = "← worse | better →" if direction == "maximize" else "← better | worse →"
    fig.supxlabel(f"difference in {_label(metric)}: arm − {baseline} "
                  f"(mean and {CONFIDENCE:.0%} CI, unadjusted)   {sides}", fontsize=10)
    handles = [matplotlib.patches.Patch(color="0.85", label=f"equivalence margin ±{margin:g}")]
    handles += [plt.Line2D([], [], marker="o", ls="-", color=VERDICT_COLORS[v], label=v)
                for v in VERDICT_COLORS if v in verdicts]
    fig.legend(handles=handles, loc="outside upper center", ncol=len(handles), fontsize=8.5,
               frameon=False)
    return fig


# --- 5. all pairs -----------------------------------------------------------------------------


def pairwise_figure(
    frame: pd.DataFrame,
    *,
    arms: Sequence[str] | None = None,
    alpha: float = 0.05,
    metric: str = "test_acc",
) -> Figure:
    """All-pairs heatmap: cell (row, column) = mean(row) − mean(column), with Holm p.

    `frame` is `family_frame` of a ``pairs="all"`` family; only the lower triangle is drawn
    (the upper one is its mirror). Significant cells (Holm p < `alpha`) are starred.
    """
    present = list(dict.fromkeys([*frame.get("baseline", []), *frame.get("arm", [])]))
    arms = [a for a in _order(arms, present) if a in set(present)]
    k = len(arms)
    if k < 2:
        fig, ax = plt.subplots(figsize=(6, 3), layout="constrained")
        return _empty(fig, ax, "fewer than two arms to compare")
    idx = {a: i for i, a in enumerate(arms)}
    diff = np.full((k, k), np.nan)
    pval = np.full((k, k), np.nan)
    for row in frame.itertuples(index=False):
        if row.arm in idx and row.baseline in idx:
            i, j = idx[row.arm], idx[row.baseline]
            diff[i, j], diff[j, i] = row.diff, -row.diff
            pval[i, j] = pval[j, i] = row.p_adjusted
    d, p = diff[1:, :-1], pval[1:, :-1]
    rows, cols = arms[1:], arms[:-1]
    mask = np.triu(np.ones_like(d, dtype=bool), k=1) | np.isnan(d)
    annot = np.empty(d.shape, dtype=object)
    for i in range(d.shape[0]):
        for j in range(d.shape[1]):
            annot[i, j] = "" if mask[i, j] else (
                f"{d[i, j]:+.2f}{'*' if p[i, j] < alpha else ''}\np={_fmt_p(p[i, j])}")
    vmax = float(np.nanmax(np.abs(d))) if np.isfinite(d).any() else 1.0
    size = 1.05 * (k - 1) + 2.6
    fig, ax = plt.subplots(figsize=(size + 1.6, size), layout="constrained")
    with warnings.catch_warnings():  # seaborn 0.13 calls the deprecated Colormap.set_bad
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        sns.heatmap(pd.DataFrame(d, index=rows, columns=cols), mask=mask, annot=annot, fmt="",
                    cmap="RdBu", center=0, vmin=-vmax, vmax=vmax, linewidths=1,
                    linecolor="white", annot_kws={"fontsize": 9}, square=True, ax=ax,
                    cbar_kws={"label": f"row − column, {_label(metric)}", "shrink": 0.8})
    ax.set_xlabel("column arm")
    ax.set_ylabel("row arm")
    ax.tick_params(axis="x", rotation=30)
    plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
    ax.tick_params(axis="y", rotation=0)
    ax.set_title(f"All pairs: row − column; p Holm-adjusted over the {len(frame)} pairs\n"
                 f"(* = significant at α = {alpha:g})", fontsize=10.5)
    return fig


# --- 6. power ---------------------------------------------------------------------------------


def detectable(n_seeds, sd: float, *, paired: bool, alpha: float, power: float) -> np.ndarray:
    """`detectable_difference` at each n in `n_seeds`, NaN where it cannot be computed.

    Called one n at a time: for a few n (e.g. 59, 71, 121 at alpha 0.0125) statsmodels'
    ``solve_power`` returns a 1-element array, which `detectable_difference` cannot convert
    to a float on numpy 2; those points are left out of the curve rather than failing.
    """
    out = []
    for n in np.atleast_1d(np.asarray(n_seeds, dtype=np.int64)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out.append(float(detectable_difference(np.int64(n), sd, paired=paired,
                                                        alpha=alpha, power=power)))
            except (TypeError, ValueError, FloatingPointError):
                out.append(math.nan)
    return np.asarray(out)


def power_figure(
    family: Family,
    *,
    max_seeds: int | None = None,
    palette: Mapping[str, object] | None = None,
) -> Figure:
    """Smallest true difference each comparison can detect vs seeds per arm (log-log).

    Uses `detectable_difference` with each comparison's observed seed sd (of the paired
    differences when paired), its power and alpha / m (Holm's first step, as for
    ``seeds_needed``). The dashed line is the equivalence margin, the dotted line the seeds
    run so far; where a curve crosses the margin is the number of seeds needed.
    """
    comps = [c for c in family.comparisons if c.sd > 0 and np.isfinite(c.sd)]
    fig, ax = plt.subplots(figsize=(9, 5), layout="constrained")
    if not comps:
        return _empty(fig, ax, "no comparison with a non-zero seed sd: power cannot be estimated")
    n_now = max(c.n_arm for c in comps)
    needed = [c.seeds_needed for c in comps if c.seeds_needed]
    top = max([4 * n_now, 20, *(int(1.3 * n) for n in needed)])
    top = int(min(max_seeds or top, 2000))
    grid = np.unique(np.geomspace(2, max(top, 3), 60).round().astype(int))
    palette = dict(palette or arm_palette(
        [family.baseline or comps[0].baseline_name, *(c.arm_name for c in comps)]))
    m = comps[0].family_size
    for c in comps:
        dd = detectable(grid, c.sd, paired=c.paired, alpha=c.alpha / m, power=c.power)
        at_n = detectable(max(c.n_arm, 2), c.sd, paired=c.paired, alpha=c.alpha / m,
                          power=c.power)[0]
        keep = np.isfinite(dd)
        need = (f"{c.seeds_needed} seeds for ±{c.margin:g}" if c.seeds_needed
                else "seeds needed n/a")
        color = palette[c.arm_name]
        ax.plot(grid[keep], dd[keep], color=color, lw=2,
                label=f"{c.arm_name} vs {c.baseline_name} (sd {c.sd:.3g}; {need})")
        ax.plot([c.n_arm], [at_n], "o", color=color, ms=7, zorder=4)
        if c.seeds_needed and c.seeds_needed <= grid[-1]:
            ax.plot([c.seeds_needed], [c.margin], "x", color=color, ms=9, mew=2, zorder=4)
    margin = comps[0].margin
    ax.axhline(margin, color="black", ls="--", lw=1.2, label=f"equivalence margin {margin:g}")
    ax.axvline(n_now, color="0.35", ls=":", lw=1.5, label=f"seeds run so far ({n_now})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(2, grid[-1])
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_xlabel("seeds per arm")
    ax.set_ylabel("smallest detectable true difference (points)")
    design = "paired t-test" if comps[0].paired else "two-sample t-test"
    ax.set_title(f"Detectable difference at {comps[0].power:.0%} power ({design}, two-sided "
                 f"α = {comps[0].alpha:g}/{m}, Holm's first step; observed sd)", fontsize=10.5)
    ax.grid(which="both", alpha=0.25)
    ax.legend(fontsize=8.5, loc="upper right", framealpha=0.92)
    return fig
