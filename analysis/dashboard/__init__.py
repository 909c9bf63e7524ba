"""What optuna-dashboard shows for an ablation study (`panels`: the verdict note and figures)
and the real dashboard server started on a study's storage (`server`).
"""
