"""Referring-classification metrics of Osprey's ``lvis_paco_eval.py``: SS and S-IoU.

* Semantic Similarity (SS): cosine of the sentence embeddings of prediction and ground truth.
* Semantic IoU (S-IoU): |A ∩ B| / |A ∪ B| over the sets of whitespace tokens (the reference
  lower-cases both strings before calling it).

Both are micro averages over regions; callers multiply by 100 for the papers' scale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from evalkit.metrics.spec import MetricSpec, declare

declare(
    MetricSpec("ss", "SS", True, "semantic"),  # mean cosine of answer and label embeddings
    MetricSpec("s_iou", "S-IoU", True, "semantic"),  # mean word-set IoU of answer and label
    # How much of a multi-region answer was scored (SPHINX-V's ROC pairs lines by position and
    # skips regions without a predicted line): counts, neither direction is better.
    MetricSpec("n_scored", "Regions scored", None, "other", scale=1.0),
    MetricSpec("n_gt_regions", "GT regions", None, "other", scale=1.0),
)

Encoder = Callable[[Sequence[str]], np.ndarray]


def semantic_iou(prediction: str, target: str) -> float:
    pred_tokens = set(prediction.split())
    target_tokens = set(target.split())
    union = pred_tokens | target_tokens
    if not union:
        # The reference divides by zero here; both empty means nothing to disagree on.
        return 1.0
    return len(pred_tokens & target_tokens) / len(union)


def semantic_similarity(predictions: Sequence[str], targets: Sequence[str], encoder: Encoder) -> np.ndarray:
    """Per-pair cosine similarity of the encoder's embeddings (rows need not be normalised)."""
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
    if not predictions:
        return np.zeros(0)
    a = np.asarray(encoder(predictions), dtype=np.float64)
    b = np.asarray(encoder(targets), dtype=np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-8)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-8)
    return np.einsum("ij,ij->i", a, b)
