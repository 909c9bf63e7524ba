"""Which way is better for a metric, and the sign that follows: the one rule, for the spec
(`study.spec`), the analysis plan (`analysis.stats.metric_plan`) and every statistic that orients a
difference.

A metric's direction is what was declared for it; else what its name says without doubt:
a word of the name (split at ``_``, ``-``, ``.``, ``/``, spaces and camelCase; a plural
``s``/``es`` or trailing digits allowed) names a higher-is-better quantity (accuracy, F1,
AUC, score, reward, return, ...) or a lower-is-better one (loss, error, MSE, perplexity,
regret, WER, ...), and not both. Words, not substrings: "err" in "terrain" or "acc" in
"accel" say nothing. Anything else has no direction until it is declared: guessing
"higher is better" turned a higher loss into a BETTER verdict.
"""

from __future__ import annotations

import json
import re

from analysis.contract import DIRECTIONS

__all__ = ["DIRECTIONS", "UndeclaredDirection", "better_words", "from_name", "how_to_declare",
           "resolve", "sign", "spec_declaration", "toml_key", "unsaid"]

HIGHER_IS_BETTER = frozenset({
    "acc", "accuracy", "top1", "top5", "f1", "auc", "auroc", "auprc", "score",
    "reward", "return", "precision", "recall", "iou", "miou", "dice", "bleu", "rouge",
    "psnr", "ssim", "r2", "fitness", "success"})
LOWER_IS_BETTER = frozenset({
    "loss", "error", "err", "mse", "mae", "rmse", "msle", "mape", "nll", "perplexity", "ppl",
    "regret", "wer", "cer", "fid", "ece", "bpd", "cost"})


def _words(metric: str) -> list[str]:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", metric)  # valLoss -> val_Loss
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


def _forms(word: str) -> set[str]:
    """The word, and the word without a plural ending or trailing digits (losses, acc1)."""
    forms = {word, word.rstrip("0123456789")}
    for ending in ("es", "s"):
        if word.endswith(ending):
            forms.add(word[: -len(ending)])
    return forms


def from_name(metric: str) -> str | None:
    """"maximize" or "minimize" when the name says so without doubt (module docstring);
    None when it says nothing, or both (``loss_score``)."""
    forms = set().union(*(_forms(w) for w in _words(str(metric))))
    up, down = bool(forms & HIGHER_IS_BETTER), bool(forms & LOWER_IS_BETTER)
    if up == down:
        return None
    return "maximize" if up else "minimize"


def toml_key(name: str) -> str:
    """`name` as a TOML key: bare when TOML allows it, else quoted."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def unsaid(metric: str) -> str:
    """The question an undeclared, unclear metric leaves open."""
    return f"is a higher or a lower `{metric}` better? Its name does not say"


def spec_declaration(metric: str) -> str:
    """The spec lines that declare `metric`'s direction."""
    return f"[analysis.metrics.{toml_key(metric)}] direction = \"maximize\" (or \"minimize\")"


def how_to_declare(metric: str) -> str:
    """One line saying how to declare `metric`'s direction: in the spec, or on the command line."""
    return (f"{unsaid(metric)}; declare it in the spec, {spec_declaration(metric)} (`direction` "
            "under [analysis] for the analysis metric), or pass --direction maximize|minimize")


class UndeclaredDirection(ValueError):
    """A metric with no declared direction whose name does not say which way is better."""


def resolve(metric: str, declared: str | None = None) -> str:
    """The direction of `metric`: `declared` when given (checked), else `from_name`; raises
    UndeclaredDirection (how to declare it) when neither says."""
    if declared is not None:
        if declared not in DIRECTIONS:
            raise ValueError(f"`direction` of `{metric}` must be 'maximize' or 'minimize', got {declared!r}")
        return declared
    found = from_name(metric)
    if found is None:
        raise UndeclaredDirection(how_to_declare(metric))
    return found


def sign(direction: str) -> int:
    """+1 when higher is better, -1 when lower is: multiply a difference by it and larger is
    always better."""
    if direction not in DIRECTIONS:
        raise ValueError(f"`direction` must be 'maximize' or 'minimize', got {direction!r}")
    return 1 if direction == "maximize" else -1


def better_words(direction: str) -> str:
    """"higher is better" or "lower is better"."""
    return "higher is better" if sign(direction) > 0 else "lower is better"
