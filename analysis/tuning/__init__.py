"""The tuning side of a study, read back from Optuna: `studies` (tuning studies stored beside an
ablation study), `racing` (the race's pure statistics) and `race_study` (a stored race). The
report's sections are `analysis.report.tuning` and `analysis.report.race`.
"""
