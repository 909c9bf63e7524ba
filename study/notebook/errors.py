"""The built-in experiment's bad-input error, importable without torch: the runner catches it
(exit 2) even when it runs a user experiment, which must never import torch."""


class DataError(RuntimeError):
    """CIFAR-10 could not be found, read or decoded; the message says how to provide it."""
