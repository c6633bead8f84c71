"""Regional OCR accuracy (SPHINX-V on COCO-Text): exact match after ``.lower()``, micro over
regions — Draw-and-Understand ``28a1bd1`` ``accessory/eval/Regional_OCR/OCR_eval.py``::

    if pred_list[i].lower() == gt_list[i].lower(): match_count += 1
    ...  overall acc = match_count / sum_count

No strip, no punctuation removal. The released script asserts that every image has as many
predicted as GT texts; :func:`ocr_matches` scores positionally over the GT instead (a missing
prediction is wrong, an extra one ignored), which equals the reference wherever it runs.

Example:
    >>> ocr_matches(["STOP", "exit "], ["stop", "EXIT", "Open"])
    [True, False, False]
    >>> ocr_accuracy([[True, False, False], [True]])
    50.0
"""

from __future__ import annotations

from collections.abc import Sequence

# "accuracy" (header, direction, tolerance) is declared by evalkit.metrics.pope.


def ocr_matches(predicted: Sequence[str], targets: Sequence[str]) -> list[bool]:
    """Per GT text, whether the prediction at its position equals it after ``.lower()``."""
    return [i < len(predicted) and predicted[i].lower() == t.lower() for i, t in enumerate(targets)]


def ocr_accuracy(matches: Sequence[Sequence[bool]]) -> float:
    """Per cent of GT regions read right, over all images (0 with no regions)."""
    total = sum(len(m) for m in matches)
    return 100.0 * sum(sum(m) for m in matches) / total if total else 0.0
