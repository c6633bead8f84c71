"""Open-vocabulary segmentation from region answers (Osprey's ``eval_open_vocab_seg_detectron2``).

Each ground-truth segment is one query whose answer is mapped to class scores by sentence
similarity; Mask2Former-style inference then turns (query scores, query masks) into a
semantic map, a panoptic map and instances. The queries' masks are the ground-truth
segments themselves — disjoint, binary, at the original resolution — so everything the
reference computes with dense ``300 x H x W`` tensors is computed here from per-segment
areas, exactly:

* scores: rows of a ``300 x C`` matrix = cosines (0 for padding rows); per row
  ``p = softmax(row) * (1 - void)`` with void 1 for padding, appended as column C, stored as
  ``log(p + 1e-8)``; every step applies ``softmax`` to that again (float64 here, float32 on
  the GPU in the reference).
* semantic: per pixel, argmax over classes of sum over queries of prob x mask — the covering
  query's argmax class; pixels no query covers get class 0 (argmax of zeros).
* panoptic: label = argmax incl. void, score = its prob; keep label != void and score > 0;
  pixels go to the query of highest score x mask (uncovered pixels to the first kept query,
  argmax of zeros), a query whose surviving mask is < 80 % of its mask is dropped; stuff
  segments of one predicted class merge; thing / stuff follows the predicted class.
* instance: as the reference, in float32 (its ``mask_cls`` and ``mask_pred`` are float32
  tensors): the ``300 x C`` (query, class) probabilities, padding included, recomputed in
  float32; the top 100, then thing classes only; score = prob x the mean sigmoid of the
  binary mask over it = prob x sigmoid(1) x A / (A + 1e-6). In float32 ``A + 1e-6`` rounds
  to ``A`` for A >= 32 px (and the factor A / (A + 1e-6) is below float32's resolution for
  A > ~17 px), so regions with the same answer keep the same score and COCOeval's stable
  sort keeps the detection order; float64 would rank them by area instead (issue 20 A1:
  88.7 vs 68.1 AP on a toy case). The sum of the A sigmoids is taken exactly (what an
  error-free reduction returns); a GPU's reduction order may move the factor by one ulp.
  Detection order: a stable top-k (higher probability first, ties in query order, then
  class order). The reference's own order is undefined: ``topk(100, sorted=False)`` on CUDA
  returns an unspecified order, which decides COCOeval's order among equal scores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

TEMPLATE = "There is a {} in the scene."
NUM_QUERIES = 300
TOP_K = 100
OVERLAP_THRESHOLD = 0.8

Encoder = Callable[[Sequence[str]], np.ndarray]


def class_cosines(answers: Sequence[str], synonyms: Sequence[Sequence[str]], encoder: Encoder) -> np.ndarray:
    """(n, C): per class, the max cosine between an answer and ``TEMPLATE`` of each synonym."""
    sentences = [TEMPLATE.format(name) for names in synonyms for name in names]
    starts = np.cumsum([0] + [len(names) for names in synonyms])[:-1]
    if not answers:
        return np.zeros((0, len(synonyms)))
    a = np.asarray(encoder(list(answers)), dtype=np.float64)
    b = np.asarray(encoder(sentences), dtype=np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    cos = a @ b.T
    return np.maximum.reduceat(cos, starts, axis=1)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def query_log_probs(cosines: np.ndarray, num_queries: int = NUM_QUERIES) -> np.ndarray:
    """``log(p + 1e-8)``, (num_queries, C + 1): the reference's ``mask_cls_results``."""
    n, c = cosines.shape
    if n > num_queries:
        raise ValueError(f"{n} queries exceed the {num_queries} query slots")
    logits = np.zeros((num_queries, c))
    logits[:n] = cosines
    void = np.ones((num_queries, 1))
    void[:n] = 0.0
    probs = np.concatenate([_softmax(logits) * (1.0 - void), void], axis=1)
    return np.log(probs + 1e-8)


@dataclass
class PanopticSegment:
    id: int
    class_index: int
    isthing: bool
    queries: list[int]  # the queries (GT segments) painted with this id


@dataclass
class AssembledImage:
    semantic_class: np.ndarray  # (Q,) class of each real query's pixels
    panoptic: list[PanopticSegment]
    det_query: np.ndarray  # (D,) query index (>= Q: a padding query, empty mask)
    det_class: np.ndarray  # (D,)
    det_score: np.ndarray  # (D,)


def assemble(cosines: np.ndarray, areas: np.ndarray, isthing: np.ndarray, uncovered: int) -> AssembledImage:
    """Semantic, panoptic and instance outputs of one image.

    ``cosines`` (Q, C) for the Q real queries in query order; ``areas`` (Q,) their pixel
    counts; ``isthing`` (C,) bool per class; ``uncovered`` = pixels no query covers.
    """
    n_real = cosines.shape[0]
    probs = _softmax(query_log_probs(cosines))
    class_probs = probs[:, :-1]
    semantic_class = class_probs[:n_real].argmax(axis=1)
    panoptic = _panoptic(probs, areas, isthing, uncovered)
    det_query, det_class, det_score = _instances(cosines, areas, isthing)
    return AssembledImage(semantic_class, panoptic, det_query, det_class, det_score)


def _instances(
    cosines: np.ndarray, areas: np.ndarray, isthing: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query, class, score) of the detections, in detection order, with the reference's
    float32 arithmetic (``instance_inference`` of eval_open_vocab_seg_detectron2.py)."""
    n_real, n_classes = cosines.shape
    probs = _softmax32(query_log_probs32(cosines))[:, :-1]
    flat = probs.ravel()
    k = min(TOP_K, flat.size)
    order = np.argsort(-flat, kind="stable")[:k]  # stable: ties in (query, class) order
    det_query, det_class = np.divmod(order, n_classes)
    keep = isthing[det_class]
    det_query, det_class = det_query[keep], det_class[keep]
    padded_areas = np.zeros(probs.shape[0], dtype=np.int64)
    padded_areas[:n_real] = areas  # padding queries have empty masks
    det_score = flat[order][keep] * mask_scores32(padded_areas[det_query])
    return det_query, det_class, det_score.astype(np.float64)


def query_log_probs32(cosines: np.ndarray, num_queries: int = NUM_QUERIES) -> np.ndarray:
    """:func:`query_log_probs` in float32, as the reference's tensors are."""
    n, c = cosines.shape
    if n > num_queries:
        raise ValueError(f"{n} queries exceed the {num_queries} query slots")
    logits = np.zeros((num_queries, c), dtype=np.float32)
    logits[:n] = cosines
    void = np.ones((num_queries, 1), dtype=np.float32)
    void[:n] = 0.0
    probs = np.concatenate([_softmax32(logits) * (np.float32(1.0) - void), void], axis=1)
    return np.log(probs + np.float32(1e-8))


def _softmax32(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


SIGMOID_ONE_32 = np.float32(1.0) / (np.float32(1.0) + np.exp(np.float32(-1.0)))


def mask_scores32(areas: np.ndarray) -> np.ndarray:
    """float32 ``(sigmoid(mask) * mask).sum() / (mask.sum() + 1e-6)`` of binary masks of
    ``areas`` pixels: the exact sum A x sigmoid(1) over ``A + 1e-6`` rounded to float32,
    the quotient rounded to float32 (0 for an empty mask).

    Example:
        >>> mask_scores32(np.array([0, 16, 31, 32, 5000])) == SIGMOID_ONE_32
        array([False, False, False,  True,  True])
    """
    a = np.asarray(areas, dtype=np.int64)
    denominator = (a.astype(np.float32) + np.float32(1e-6)).astype(np.float64)
    # A x sigmoid(1) is exact in float64 (24-bit mantissa x an integer < 2^29), and a float64
    # quotient rounded to float32 is the correctly rounded float32 quotient.
    return (a * np.float64(SIGMOID_ONE_32) / denominator).astype(np.float32)


def _panoptic(
    probs: np.ndarray, areas: np.ndarray, isthing: np.ndarray, uncovered: int
) -> list[PanopticSegment]:
    n_real = len(areas)
    void_index = probs.shape[1] - 1
    labels = probs.argmax(axis=1)
    scores = probs.max(axis=1)
    keep = (labels != void_index) & (scores > 0)
    kept = [q for q in np.flatnonzero(keep).tolist() if q < n_real]
    # Padding queries have all-zero masks: when kept they own no pixel and are skipped below
    # (mask_area == 0), as in the reference.
    first_kept = int(np.flatnonzero(keep)[0]) if keep.any() else -1
    segments: list[PanopticSegment] = []
    stuff_segment: dict[int, PanopticSegment] = {}
    next_id = 0
    for q in kept:
        original_area = int(areas[q])
        # argmax over queries of score x mask: a pixel belongs to its covering query (masks
        # are disjoint, scores > 0); uncovered pixels go to the first kept query.
        mask_area = original_area + (uncovered if q == first_kept else 0)
        if mask_area == 0 or original_area == 0:
            continue
        if mask_area / original_area < OVERLAP_THRESHOLD:
            continue
        cls = int(labels[q])
        thing = bool(isthing[cls])
        if not thing and cls in stuff_segment:
            stuff_segment[cls].queries.append(q)
            continue
        next_id += 1
        segment = PanopticSegment(next_id, cls, thing, [q])
        segments.append(segment)
        if not thing:
            stuff_segment[cls] = segment
    return segments
