"""Several tasks (datasets, environments): per-task verdicts and what holds across tasks.

`compare` gives the per-task verdicts (Holm over arms x tasks) and gathers the rest;
`aggregates` the rliable-style normalised scores, IQM and probability of improvement; `meta`
the Friedman/Nemenyi ranking and the random-effects meta-analysis; `output` the command line's
text and `--json`. The report's section is `analysis.report.tasks`.
"""
