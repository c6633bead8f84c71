"""POPE yes/no parsing and metrics, as the official ``evaluate.py`` (RUCAIBox/POPE) computes them.

* Parsing: keep the text before the first ``.``; drop ``,``; split on single spaces; the answer
  is ``no`` when a word is exactly ``No``, ``not`` or ``no``, otherwise ``yes`` (so an empty or
  unrelated answer counts as yes). Osprey lower-cases the answer first; LLaVA does not.
* Positive = yes. Accuracy, precision, recall, F1 and yes-ratio (share of yes predictions).

The official script divides by zero when no answer is yes (precision) or no label is yes
(recall); :func:`pope_metrics` returns 0 for those and says so in ``undefined``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from evalkit.metrics.spec import MetricSpec, declare

declare(
    MetricSpec("accuracy", "Acc", True, "pope"),
    MetricSpec("precision", "Prec", True, "pope"),
    MetricSpec("recall", "Rec", True, "pope"),
    MetricSpec("f1", "F1", True, "pope"),
    # The share of yes answers: 50 is balanced on POPE's balanced splits, neither end is better.
    MetricSpec("yes_ratio", "Yes %", None, "pope"),
)

NEGATIVE_WORDS = ("No", "not", "no")


def pope_answer(text: str, lowercase: bool = True) -> str:
    """``yes`` or ``no`` from a free-form answer, by the official rule."""
    if lowercase:
        text = text.lower()
    if text.find(".") != -1:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if any(w in words for w in NEGATIVE_WORDS) else "yes"


@dataclass
class PopeScores:
    metrics: dict[str, float]  # accuracy, precision, recall, f1, yes_ratio, all x100
    tp: int
    fp: int
    tn: int
    fn: int
    undefined: list[str] = field(default_factory=list)  # metrics the reference cannot compute


def pope_metrics(predictions: Sequence[str], labels: Sequence[str]) -> PopeScores:
    """Metrics from parsed predictions and labels (both ``yes`` / ``no``), paired in order."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    for value in (*predictions, *labels):
        if value not in ("yes", "no"):
            raise ValueError(f"expected 'yes' or 'no', got {value!r}")
    tp = sum(1 for p, y in zip(predictions, labels, strict=True) if p == "yes" and y == "yes")
    fp = sum(1 for p, y in zip(predictions, labels, strict=True) if p == "yes" and y == "no")
    tn = sum(1 for p, y in zip(predictions, labels, strict=True) if p == "no" and y == "no")
    fn = sum(1 for p, y in zip(predictions, labels, strict=True) if p == "no" and y == "yes")
    undefined: list[str] = []

    def ratio(num: int, den: int, name: str) -> float:
        if den == 0:
            undefined.append(name)
            return 0.0
        return num / den

    n = len(predictions)
    precision = ratio(tp, tp + fp, "precision")
    recall = ratio(tp, tp + fn, "recall")
    if precision + recall == 0:
        undefined.append("f1")
        f1 = 0.0
    else:
        f1 = 2 * precision * recall / (precision + recall)
    accuracy = ratio(tp + tn, n, "accuracy")
    yes_ratio = ratio(sum(1 for p in predictions if p == "yes"), n, "yes_ratio")
    metrics = {
        "accuracy": accuracy * 100,
        "precision": precision * 100,
        "recall": recall * 100,
        "f1": f1 * 100,
        "yes_ratio": yes_ratio * 100,
    }
    return PopeScores(metrics, tp, fp, tn, fn, undefined)
