"""The built-in experiment's bad-input error, importable without torch: an `InputError`, which
the runner reports in one line (exit 2) for any experiment."""

from study.experiment import InputError


class DataError(InputError, RuntimeError):
    """CIFAR-10 could not be found, read or decoded; the message says how to provide it."""
