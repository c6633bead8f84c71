"""VCR accuracies (rowanz/r2c ``77813d9`` ``models/eval_q2ar.py``)::

    answer_hits = answer_preds.argmax(1) == answer_labels
    rationale_hits = rationale_preds.argmax(1) == rationale_labels
    joint_hits = answer_hits & rationale_hits

Q->A is the answer accuracy, QA->R the rationale accuracy with the ground-truth answer given,
Q->AR the per-question AND of the two (not the product of the accuracies); x100.

Example (PROTOCOLS_WAVE2.md §P item 9):
    >>> vcr_accuracies([True, True, False, True], [True, False, True, True])
    {'q2a': 75.0, 'qa2r': 75.0, 'q2ar': 50.0}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evalkit.metrics.spec import MetricSpec, declare

declare(
    MetricSpec("q2a", "Q→A", True, "classification"),
    MetricSpec("qa2r", "QA→R", True, "classification"),
    MetricSpec("q2ar", "Q→AR", True, "classification"),
)


def vcr_accuracies(answer_hits: Sequence[bool], rationale_hits: Sequence[bool]) -> dict[str, float]:
    """Q->A, QA->R and Q->AR (per cent) from per-question hits, in the same question order."""
    if len(answer_hits) != len(rationale_hits):
        raise ValueError(f"{len(answer_hits)} answer hits for {len(rationale_hits)} rationale hits")
    if not answer_hits:
        return {"q2a": 0.0, "qa2r": 0.0, "q2ar": 0.0}
    a = np.asarray(answer_hits, dtype=bool)
    r = np.asarray(rationale_hits, dtype=bool)
    return {
        "q2a": float(np.mean(a)) * 100,
        "qa2r": float(np.mean(r)) * 100,
        "q2ar": float(np.mean(a & r)) * 100,
    }


def hit_rate(hits: Sequence[bool]) -> float:
    """Per cent of hits (one of the three accuracies alone); 0 for none."""
    return 100.0 * sum(hits) / len(hits) if hits else 0.0
