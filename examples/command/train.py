"""Any program can be a seedwise experiment: it takes its config and seed on the command line and
prints its metrics as a JSON line (the last one counts; lines with "epoch" are curves).
Here: softmax regression on scikit-learn's digits in plain numpy."""
import argparse
import json

import numpy as np
from sklearn.datasets import load_digits

p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, required=True)
p.add_argument("--l2", type=float, required=True)
p.add_argument("--epochs", type=int, required=True)
p.add_argument("--seed", type=int, required=True)
args = p.parse_args()

X, y = load_digits(return_X_y=True)
X = np.c_[X / 16.0, np.ones(len(X))]
split = np.random.default_rng(0).permutation(len(y))  # one split for every arm and seed
test, val, train = split[:400], split[400:700], split[700:]
order = np.random.default_rng(args.seed)  # (in Python, study.seeds.rng gives named streams)
W = order.normal(0, 0.01, (X.shape[1], 10))
for epoch in range(1, args.epochs + 1):
    for batch in np.array_split(order.permutation(train), len(train) // 32):
        logits = X[batch] @ W
        prob = np.exp(logits - logits.max(1, keepdims=True))
        prob /= prob.sum(1, keepdims=True)
        prob[np.arange(len(batch)), y[batch]] -= 1
        W -= args.lr * (X[batch].T @ prob / len(batch) + args.l2 * W)
    print(json.dumps({"epoch": epoch, "val_error": 100.0 * float(((X[val] @ W).argmax(1) != y[val]).mean())}))
errors = {f"{name}_error": 100.0 * float(((X[idx] @ W).argmax(1) != y[idx]).mean())
          for name, idx in (("val", val), ("test", test))}
print(json.dumps(errors))
