"""A logistic regression on one of four datasets that ship with scikit-learn: one seedwise
experiment, run on every dataset by spec.toml's [tasks.NAME] tables. Nothing is downloaded."""
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from study.seeds import rng, stream_seed

DATASETS = {"iris": load_iris, "wine": load_wine, "breast_cancer": load_breast_cancer, "digits": load_digits}


def train(config, seed, report=None):
    x, y = DATASETS[config["dataset"]](return_X_y=True)
    # The arms of a task share the seed's split and the seed's noisy labels: paired by (task, seed).
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=config["test_size"], stratify=y,
                                          random_state=stream_seed(seed, "split") % 2**32)
    noise = rng(seed, "augment")
    flip = noise.random(len(ytr)) < config["label_noise"]  # the same draws in every arm
    ytr = np.where(flip, noise.integers(0, y.max() + 1, len(ytr)), ytr)
    model = LogisticRegression(C=config["C"], max_iter=config["max_iter"])
    if config["scale"]:
        model = make_pipeline(StandardScaler(), model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # unscaled features: lbfgs stops at max_iter
        model.fit(xtr, ytr)
    return {"test_acc": 100 * model.score(xte, yte), "train_acc": 100 * model.score(xtr, ytr)}
