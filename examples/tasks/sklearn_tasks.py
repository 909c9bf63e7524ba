"""Three classifiers on four datasets that ship with scikit-learn, over seeds: a tidy CSV
(task, arm, seed, test_acc) like an export from another tracker, for `seedwise compare`.

    python examples/tasks/sklearn_tasks.py --out tasks.csv --seeds 8
    seedwise compare tasks.csv --metric test_acc --baseline logreg

Each seed draws the train/test split and the model's own randomness; the arms of a task share
the split of a seed, so the comparison pairs them by (task, seed). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import warnings

import pandas as pd
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

TASKS = {"iris": load_iris, "wine": load_wine, "breast_cancer": load_breast_cancer,
         "digits": load_digits}


def arms(seed: int) -> dict:
    return {
        "logreg": make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)),
        "forest": RandomForestClassifier(n_estimators=50, random_state=seed),
        "mlp": make_pipeline(StandardScaler(), MLPClassifier((32,), max_iter=100,
                                                             random_state=seed)),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="tasks.csv")
    p.add_argument("--seeds", type=int, default=8)
    args = p.parse_args(argv)
    rows = []
    for task, load in TASKS.items():
        x, y = load(return_X_y=True)
        for seed in range(args.seeds):
            xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)
            for arm, model in arms(seed).items():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)  # a short MLP budget
                    acc = 100 * model.fit(xtr, ytr).score(xte, yte)
                rows.append({"task": task, "arm": arm, "seed": seed, "test_acc": acc})
    pd.DataFrame(rows).to_csv(args.out, index=False)
    print(f"wrote {len(rows)} runs to {args.out}")


if __name__ == "__main__":
    main()
