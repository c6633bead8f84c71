"""Referring expression comprehension over candidate regions (RegionGPT Table 5).

The model picks one of the candidate boxes it was shown; the pick is right when it overlaps
the ground-truth box with IoU ≥ 0.5 (PROTOCOLS_WAVE2.md §I: boxes ``[x1, y1, x2, y2]`` in
continuous pixel coordinates, IoU = intersection / union, no +1 — unlike the refer toolkit's
integer-pixel ``computeIoU``). Several candidates may be right (a proposal and the injected
ground truth). The oracle is the share of samples where some candidate is right: what a
perfect chooser would score.

Example:
    >>> box_iou((0, 0, 10, 10), (5, 0, 15, 10))  # 50 / 150
    0.3333333333333333
    >>> rec_correct(2, [(0, 0, 10, 10), (1, 0, 11, 10)], (0, 0, 10, 10))  # IoU 90/110
    True
    >>> rec_correct(3, [(0, 0, 10, 10), (1, 0, 11, 10)], (0, 0, 10, 10))  # no 3rd candidate
    False
    >>> rec_accuracy([True, False, True, True])
    75.0
"""

from __future__ import annotations

from collections.abc import Sequence

from evalkit.metrics.spec import MetricSpec, declare

declare(
    MetricSpec("acc@0.5", "Acc@0.5", True, "classification"),
    # Properties of the candidate sets, not of the model: never bolded, never a regression.
    MetricSpec("oracle@0.5", "Oracle@0.5", None, "other"),
    MetricSpec("candidates", "Candidates", None, "other", scale=1.0),
)

Box = tuple[float, float, float, float]  # x1, y1, x2, y2
REC_IOU = 0.5


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``xyxy`` boxes (0 when the union is empty)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def rec_correct(choice: int | None, candidates: Sequence[Sequence[float]], target: Sequence[float]) -> bool:
    """Whether the 1-based ``choice`` names a candidate with IoU ≥ 0.5 to ``target``
    (``None``, 0 or past the last candidate: wrong)."""
    if choice is None or not 1 <= choice <= len(candidates):
        return False
    return box_iou(candidates[choice - 1], target) >= REC_IOU


def oracle_hit(candidates: Sequence[Sequence[float]], target: Sequence[float]) -> bool:
    """Whether any candidate has IoU ≥ 0.5 to ``target``."""
    return any(box_iou(c, target) >= REC_IOU for c in candidates)


def rec_accuracy(correct: Sequence[bool]) -> float:
    """Per cent of samples answered right (0 for none)."""
    return 100.0 * sum(correct) / len(correct) if correct else 0.0
