"""Report figures: pure functions from a study's frames to a matplotlib `Figure`.

Nothing here writes files or shows windows; `analysis.report` saves what these return. Every
function takes tidy frames (`runs.csv`, `epochs.csv`, `family_frame(...)`) or a `Family`, so it
can be called from a notebook on any subset of a study. Arms keep one colour in every figure
(`arm_palette`). Intervals for means over seeds are t intervals (the bootstrap is too narrow at
a handful of seeds, see `analysis.stats.describe`). Figures are made outside pyplot (`new_figure`):
drawing one selects no backend and needs no display; `fig.savefig(...)` writes it.

- `runs`: `distribution_figure` (each seed's value per arm), `learning_curves_figure`;
- `learning_rate`: `lr_schedule_figure` (effective against configured lr), `configured_lr`;
- `comparisons`: `forest_figure`, `pairwise_figure`, `power_figure`, `detectable`;
- `common`: labels, colours, `arm_palette`, `t_interval`, `new_figure`.
"""

from analysis.report.figures.common import (
    CONFIDENCE,
    METRIC_LABELS,
    VERDICT_COLORS,
    arm_palette,
    metric_label,
    new_figure,
    t_interval,
)
from analysis.report.figures.comparisons import (
    detectable,
    forest_figure,
    pairwise_figure,
    power_figure,
)
from analysis.report.figures.learning_rate import configured_lr, lr_schedule_figure
from analysis.report.figures.runs import distribution_figure, learning_curves_figure

__all__ = [
    "CONFIDENCE", "METRIC_LABELS", "VERDICT_COLORS", "arm_palette", "configured_lr", "detectable",
    "distribution_figure", "forest_figure", "learning_curves_figure", "lr_schedule_figure",
    "metric_label", "new_figure", "pairwise_figure", "power_figure", "t_interval",
]
