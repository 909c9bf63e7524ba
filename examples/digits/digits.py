"""Does a small MLP on scikit-learn's digits need ReLU, dropout or momentum? One seedwise experiment."""
import numpy as np
import torch
from sklearn.datasets import load_digits

from study.seeds import rng, stream_seed

X, Y = load_digits(return_X_y=True)
X, Y = torch.tensor(X / 16.0, dtype=torch.float32), torch.tensor(Y)
SPLIT = np.random.default_rng(0).permutation(len(Y))
TEST, REST = SPLIT[:400], SPLIT[400:]  # the held-out digits: the same in every run


def train(config, seed, report=None):
    # Every random draw comes from one of the seed's named streams, so arms are paired by seed
    # and `python -m study.variance` can vary one source at a time.
    split = rng(seed, "split") if config["split_seed"] == -1 else np.random.default_rng(config["split_seed"])
    rest = split.permutation(REST)  # split_seed -1: each seed its own validation digits
    val, train_idx = rest[:300], rest[300:]
    torch.manual_seed(stream_seed(seed, "init"))  # this seed's initial weights, in every arm
    act = torch.nn.Tanh() if config["activation"] == "tanh" else torch.nn.ReLU()
    model = torch.nn.Sequential(torch.nn.Linear(64, config["hidden"]), act, torch.nn.Dropout(config["dropout"]),
                                torch.nn.Linear(config["hidden"], 10))
    opt = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=config["momentum"])
    order = rng(seed, "order")  # this seed's data order, in every arm
    torch.manual_seed(stream_seed(seed, "augment"))  # dropout masks: the per-step noise

    def accuracy(idx):
        model.eval()
        with torch.no_grad():
            pred = model(X[idx]).argmax(1)
        return 100.0 * (pred == Y[idx]).float().mean().item(), pred

    for epoch in range(1, config["epochs"] + 1):
        model.train()
        for batch in np.array_split(order.permutation(train_idx), len(train_idx) // config["batch_size"]):
            loss = torch.nn.functional.cross_entropy(model(X[batch]), Y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if report:
            report(epoch, train_loss=loss.item(), val_acc=accuracy(val)[0])
    test_acc, pred = accuracy(TEST)
    return {"test_acc": test_acc, "val_acc": accuracy(val)[0], "train_loss": loss.item(),
            "predictions": pred.numpy(), "labels": Y[TEST].numpy()}
