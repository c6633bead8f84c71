"""Grounded-captioning mask metrics of GLaMM's GCG evaluator (and MGLMM's MGSC copy of it):
AP50, per-image greedy mIoU and mask recall.

Read from GLaMM ``eval/gcg/evaluate.py`` (e74865f) and MGLMM ``eval/mgsc/evaluate.py``
(d2abee8); the order-sensitive details are reproduced on purpose:

* **IoU** is ``np.sum(and) / np.sum(or)`` on decoded masks (``eval/utils.py::compute_iou``):
  0/0 (an empty prediction against an empty ground truth) is NaN, and NaN then steers the
  greedy loops below exactly as it steers numpy's ``max`` / ``argmax`` there. Counts come
  from RLE intersections here (no decoding), the division is the same float64 one.
* **mIoU** (``compute_miou``, per image): repeatedly take the largest entry of the
  prediction x ground-truth IoU matrix while it is > 0, delete its row and column; the image
  scores the mean of the taken IoUs, 0.0 when none. The split's mIoU is the mean over *all*
  its images.
* **Mask recall** (``find_best_matches``): on the ground-truth x prediction IoU matrix, take
  the largest IoU; if it is < ``iou_threshold`` or the phrase similarity of that very pair is
  < ``text_threshold``, **stop** (``break``: a later admissible pair is never looked at);
  otherwise count it and zero its row and column in both matrices. Recall = matches summed
  over images / ground-truth labels summed over images (micro). An image whose best pair
  falls outside the similarity matrix (more masks than phrases, or than labels) raises
  ``IndexError`` in the reference: GLaMM has already counted its labels (0 matches, labels
  counted), MGLMM's threaded copy drops the image from both sums — :func:`mask_recall` takes
  which.
* **AP50** is pycocotools ``COCOeval(..., "segm")`` with ``catIds = [1]``, every prediction
  of category 1 with score 1.0: with all scores tied, the precision-recall curve follows the
  (stable) order of images by sorted id, then each image's masks in prediction order
  (:func:`evalkit.metrics.instance.coco_segm_ap` reproduces COCOeval; pycocotools' own IoUs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pycocotools import mask as mask_utils

from evalkit.metrics.instance import InstanceImage, coco_segm_ap, mask_ious
from evalkit.metrics.spec import MetricSpec, declare

declare(MetricSpec("mask_recall", "MR", True, "segmentation"))
# ``ap50`` (instance.py) and ``miou`` (semseg.py) keep the specs their modules declare.

Rle = dict[str, Any]  # COCO RLE {"size": [h, w], "counts": str}
FailedImages = Literal["counted", "excluded"]


def _coco(rle: Rle) -> Rle:
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.encode() if isinstance(counts, str) else counts}


def rle_area(rle: Rle) -> int:
    """Foreground pixels of one RLE."""
    return int(mask_utils.area(_coco(rle)))


def intersection_counts(a: Sequence[Rle], b: Sequence[Rle]) -> np.ndarray:
    """``(len(a), len(b))`` int64: pixels in both masks of each pair (RLE ops, no decoding)."""
    out = np.zeros((len(a), len(b)), dtype=np.int64)
    ca, cb = [_coco(r) for r in a], [_coco(r) for r in b]
    for i, ra in enumerate(ca):
        for j, rb in enumerate(cb):
            out[i, j] = int(mask_utils.area(mask_utils.merge([ra, rb], intersect=True)))
    return out


def iou_matrix(a: Sequence[Rle], b: Sequence[Rle]) -> np.ndarray:
    """``(len(a), len(b))`` float64 IoU as GLaMM's ``compute_iou``: NaN where both are empty.

    Example:
        >>> from pycocotools import mask as m
        >>> import numpy as np
        >>> x = np.zeros((4, 4), np.uint8, order="F"); x[:2] = 1
        >>> r = m.encode(x); r["counts"] = r["counts"].decode()
        >>> iou_matrix([r], [r]).tolist()
        [[1.0]]
    """
    inter = intersection_counts(a, b)
    area_a = np.array([rle_area(r) for r in a], dtype=np.int64)
    area_b = np.array([rle_area(r) for r in b], dtype=np.int64)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / union


def greedy_miou(ious: np.ndarray) -> float:
    """One image's mIoU from its prediction x ground-truth IoU matrix (``compute_miou``).

    Args:
        ious: ``(n_pred, n_gt)`` IoUs (NaN allowed: it stops the loop, as in numpy).
    Returns:
        the mean of the greedily paired IoUs, 0.0 when nothing pairs.

    Example:
        >>> greedy_miou(np.array([[0.9, 0.6], [0.7, 0.0]]))  # 0.9, then [[0.0]] stops
        0.9
    """
    m = np.array(ious, dtype=float)
    paired: list[float] = []
    while m.size > 0 and np.max(m) > 0:
        i, j = np.unravel_index(np.argmax(m, axis=None), m.shape)
        paired.append(float(m[i, j]))
        m = np.delete(m, i, axis=0)
        m = np.delete(m, j, axis=1)
    return float(np.mean(paired)) if paired else 0.0


@dataclass(frozen=True)
class RecallImage:
    """One image's mask-recall outcome: its matched (gt, prediction) pairs and label count;
    ``failed`` says why the reference raised on it (then ``matches`` is empty)."""

    n_labels: int
    matches: tuple[tuple[int, int], ...] = ()
    failed: str | None = None


def recall_matches(
    ious: np.ndarray,
    text_sims: np.ndarray,
    n_labels: int,
    iou_threshold: float = 0.5,
    text_threshold: float = 0.5,
) -> RecallImage:
    """``find_best_matches`` on one image.

    Args:
        ious: ``(n_gt_masks, n_pred_masks)`` IoUs.
        text_sims: ``(n_gt_labels, n_pred_phrases)`` phrase similarities.
        n_labels: the image's ground-truth label count (its recall denominator).
    Returns:
        the matches, or ``failed`` where the reference's indexing raises.

    Example (PROTOCOLS_WAVE2 §P vector 1: the loop stops at the first failing pair):
        >>> ious = np.array([[0.9, 0.0], [0.0, 0.8]])
        >>> sims = np.array([[0.3, 0.0], [0.0, 0.9]])
        >>> recall_matches(ious, sims, 2).matches
        ()
    """
    iou = np.array(ious, dtype=float)
    sims = np.array(text_sims, dtype=float)
    found: list[tuple[int, int]] = []
    while iou.size > 0:
        idx = np.unravel_index(np.argmax(iou), iou.shape)
        i, j = int(idx[0]), int(idx[1])
        # ``a < t or b < t``: the similarity is only read when the IoU passes (or is NaN).
        if iou[i, j] < iou_threshold:
            break
        if i >= sims.shape[0] or j >= sims.shape[1]:
            return RecallImage(
                n_labels,
                failed=(
                    f"the best pair (ground truth {i}, prediction {j}) has no phrase "
                    f"similarity ({sims.shape[0]} labels x {sims.shape[1]} phrases): IndexError"
                ),
            )
        if sims[i, j] < text_threshold:
            break
        found.append((i, j))
        iou[i, :] = 0
        iou[:, j] = 0
        sims[i, :] = 0
        sims[:, j] = 0
    return RecallImage(n_labels, tuple(found))


@dataclass
class RecallResult:
    recall: float  # [0, 1]
    true_positives: int
    actual_positives: int
    failed_images: list[int] = field(default_factory=list)  # indices into the images given


def mask_recall(images: Sequence[RecallImage], failed: FailedImages = "counted") -> RecallResult:
    """Micro recall over images: Σ matches / Σ labels (0 when there are no labels).

    ``failed``: ``counted`` (GLaMM: a failing image adds its labels and no match) or
    ``excluded`` (MGLMM's ``process_image`` returns (0, 0)).
    """
    tp = positives = 0
    bad = []
    for k, image in enumerate(images):
        if image.failed is not None:
            bad.append(k)
            if failed == "counted":
                positives += image.n_labels
            continue
        tp += len(image.matches)
        positives += image.n_labels
    return RecallResult(tp / positives if positives > 0 else 0.0, tp, positives, bad)


@dataclass(frozen=True)
class SegmImage:
    """One image for AP50: its ground-truth masks (category 1 only, as ``catIds = [1]``)
    and its predicted masks in prediction order."""

    image_id: str
    gt_ids: Sequence[int]
    gt_rles: Sequence[Rle]
    gt_crowd: Sequence[bool]
    pred_rles: Sequence[Rle]


def grounded_ap50(images: Sequence[SegmImage], max_dets: int = 100) -> float:
    """COCOeval segm AP at IoU 0.5 with every score 1.0, on [0, 1] (NaN without ground truth).

    Images are ordered by their string ids (``sorted(cocoGt.getImgIds())``); an image's
    first ``max_dets`` masks count.
    """
    instance_images = []
    for im in images:
        preds = [_coco(r) for r in im.pred_rles]
        gts = [_coco(r) for r in im.gt_rles]
        instance_images.append(
            InstanceImage(
                image_id=im.image_id,
                gt_ids=np.asarray(im.gt_ids, dtype=np.int64),
                gt_categories=np.ones(len(gts), dtype=np.int64),
                gt_crowd=np.asarray(im.gt_crowd, dtype=bool),
                det_categories=np.ones(len(preds), dtype=np.int64),
                det_scores=np.ones(len(preds)),
                ious=mask_ious(preds, gts, list(im.gt_crowd)),
            )
        )
    return coco_segm_ap(instance_images, [1], max_dets).ap50
