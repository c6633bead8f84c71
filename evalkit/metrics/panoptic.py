"""Panoptic Quality (PQ, SQ, RQ; all / things / stuff), identical to panopticapi ``pq_compute``.

The reference reads a ground-truth and a predicted PNG per image, counts the pixels of every
(gt segment, predicted segment) pair and matches pairs of one category with IoU > 0.5. This
module takes those counts directly (:class:`PanopticImage`), so a caller that already knows
them (the open-vocabulary assembly relabels ground-truth segments, so every count is a
ground-truth segment's area) never paints or re-reads a PNG; :func:`intersections_from_maps`
computes them from two id maps for everyone else.

Kept from the reference on purpose, because they change numbers:

* ground-truth areas come from the JSON ``area`` field, predicted areas from the pixels;
* the union subtracts the predicted segment's overlap with VOID (id 0);
* an unmatched prediction is ignored when more than half of it lies on VOID plus the *last*
  crowd segment of its category in the image (the reference keeps one per category);
* a category with no TP, FP or FN is left out of the mean.

The reference divides by zero when a split (things or stuff) has no counted category; here
that split's numbers are 0 and ``n`` is 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from evalkit.metrics.spec import MetricSpec, declare

declare(
    MetricSpec("pq", "PQ", True, "segmentation"),
    MetricSpec("sq", "SQ", True, "segmentation"),
    MetricSpec("rq", "RQ", True, "segmentation"),
    MetricSpec("pq_th", "PQ-Th", True, "segmentation"),
    MetricSpec("pq_st", "PQ-St", True, "segmentation"),
)

VOID = 0
OFFSET = 256 * 256 * 256


@dataclass(frozen=True)
class Segment:
    id: int
    category_id: int
    area: int  # ground truth: the JSON ``area``; prediction: its pixel count
    iscrowd: bool = False


@dataclass
class PanopticImage:
    gt: Sequence[Segment]
    pred: Sequence[Segment]
    intersections: Mapping[tuple[int, int], int]  # (gt id, pred id) -> pixels; VOID = 0
    image_id: object = None  # only for error messages


@dataclass
class CategoryStats:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    iou: float = 0.0


@dataclass
class PanopticResult:
    splits: dict[str, dict[str, float]]  # "all" / "things" / "stuff" -> pq, sq, rq, n
    per_category: dict[int, dict[str, float]] = field(default_factory=dict)
    stats: dict[int, CategoryStats] = field(default_factory=dict)


def intersections_from_maps(gt_ids: np.ndarray, pred_ids: np.ndarray) -> dict[tuple[int, int], int]:
    """Pixel counts of every (gt id, pred id) pair of two equally sized id maps."""
    if gt_ids.shape != pred_ids.shape:
        raise ValueError(f"id maps differ in size: {gt_ids.shape} vs {pred_ids.shape}")
    joint = gt_ids.astype(np.uint64) * OFFSET + pred_ids.astype(np.uint64)
    labels, counts = np.unique(joint, return_counts=True)
    return {
        (int(label // OFFSET), int(label % OFFSET)): int(count)
        for label, count in zip(labels.tolist(), counts.tolist(), strict=True)
    }


def pred_segments_from_map(pred_ids: np.ndarray, categories: Mapping[int, int]) -> list[Segment]:
    """Predicted segments with their pixel areas; ``categories`` maps segment id -> category."""
    labels, counts = np.unique(pred_ids, return_counts=True)
    present = {int(lab): int(c) for lab, c in zip(labels.tolist(), counts.tolist(), strict=True)}
    for label in present:
        if label != VOID and label not in categories:
            raise ValueError(f"segment {label} is in the predicted map but has no category")
    missing = [sid for sid in categories if sid not in present]
    if missing:
        raise ValueError(f"predicted segments {missing} have a category but no pixel")
    return [Segment(sid, cat, present[sid]) for sid, cat in categories.items()]


def accumulate_image(image: PanopticImage, stats: dict[int, CategoryStats]) -> None:
    """Add one image's TP / FP / FN / IoU sums to ``stats`` (pq_compute_single_core)."""
    gt_segms = {s.id: s for s in image.gt}
    pred_segms = {s.id: s for s in image.pred}
    for s in image.pred:
        if s.category_id not in stats:
            raise ValueError(
                f"image {image.image_id}: predicted segment {s.id} has unknown category {s.category_id}"
            )
    inter = image.intersections
    gt_matched: set[int] = set()
    pred_matched: set[int] = set()
    for (gt_label, pred_label), intersection in inter.items():
        gt = gt_segms.get(gt_label)
        pred = pred_segms.get(pred_label)
        if gt is None or pred is None or gt.iscrowd or gt.category_id != pred.category_id:
            continue
        union = pred.area + gt.area - intersection - inter.get((VOID, pred_label), 0)
        iou = intersection / union
        if iou > 0.5:
            cat = stats[gt.category_id]
            cat.tp += 1
            cat.iou += iou
            gt_matched.add(gt_label)
            pred_matched.add(pred_label)
    crowd_by_category: dict[int, int] = {}
    for gt_label, gt in gt_segms.items():
        if gt_label in gt_matched:
            continue
        if gt.iscrowd:
            crowd_by_category[gt.category_id] = gt_label  # the last one wins, as in the reference
            continue
        stats[gt.category_id].fn += 1
    for pred_label, pred in pred_segms.items():
        if pred_label in pred_matched:
            continue
        ignored = inter.get((VOID, pred_label), 0)
        if pred.category_id in crowd_by_category:
            ignored += inter.get((crowd_by_category[pred.category_id], pred_label), 0)
        if ignored / pred.area > 0.5:
            continue
        stats[pred.category_id].fp += 1


def pq_average(
    stats: Mapping[int, CategoryStats], isthing: Mapping[int, bool], things: bool | None
) -> tuple[dict[str, float], dict[int, dict[str, float]]]:
    """Mean PQ / SQ / RQ over the counted categories of one split (``PQStat.pq_average``)."""
    pq = sq = rq = 0.0
    n = 0
    per_category: dict[int, dict[str, float]] = {}
    for cat_id, cat_isthing in isthing.items():
        if things is not None and things != cat_isthing:
            continue
        s = stats[cat_id]
        if s.tp + s.fp + s.fn == 0:
            per_category[cat_id] = {"pq": 0.0, "sq": 0.0, "rq": 0.0}
            continue
        n += 1
        denominator = s.tp + 0.5 * s.fp + 0.5 * s.fn
        pq_c = s.iou / denominator
        sq_c = s.iou / s.tp if s.tp != 0 else 0.0
        rq_c = s.tp / denominator
        per_category[cat_id] = {"pq": pq_c, "sq": sq_c, "rq": rq_c}
        pq += pq_c
        sq += sq_c
        rq += rq_c
    if n == 0:
        return {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}, per_category
    return {"pq": pq / n, "sq": sq / n, "rq": rq / n, "n": n}, per_category


def panoptic_quality(images: Iterable[PanopticImage], isthing: Mapping[int, bool]) -> PanopticResult:
    """PQ over a dataset. ``isthing`` maps every ground-truth category id (in the JSON's
    order, which fixes the summation order) to whether it is a thing."""
    stats = {cat_id: CategoryStats() for cat_id in isthing}
    for image in images:
        accumulate_image(image, stats)
    return result_from_stats(stats, isthing)


def result_from_stats(stats: dict[int, CategoryStats], isthing: Mapping[int, bool]) -> PanopticResult:
    splits: dict[str, dict[str, float]] = {}
    per_category: dict[int, dict[str, float]] = {}
    for name, things in (("all", None), ("things", True), ("stuff", False)):
        splits[name], per_cat = pq_average(stats, isthing, things)
        if things is None:
            per_category = per_cat
    return PanopticResult(splits, per_category, stats)
