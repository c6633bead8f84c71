"""COCO mask AP and AP50, identical to pycocotools ``COCOeval`` (iouType ``segm``).

AP and AP50 are ``stats[0]`` and ``stats[1]`` of ``COCOeval.summarize()``: area range
``all``, at most 100 detections per image. This module runs exactly that part of
``evaluateImg`` + ``accumulate`` on IoU matrices the caller supplies, so a caller whose
predicted masks are known regions (the open-vocabulary assembly predicts ground-truth
panoptic segments) computes IoUs from pixel counts instead of encoding and intersecting
RLEs; :func:`mask_ious` gives pycocotools' IoUs for arbitrary masks.

Reproduced on purpose (each changes numbers):

* per image and category, detections sorted by score with a stable sort, the top 100 kept;
* ground truth sorted non-crowd first; greedy matching at each IoU threshold keeps the last
  of equally good ground truths, stops at crowds once a real match exists, and lets crowds
  absorb any number of detections (crowd IoU = intersection / detection area);
* a match to a ground truth whose ``id`` is 0 counts as no match (``dtm == 0``);
* detections of all images concatenated in sorted image-id order, then stably sorted by score;
* precision made monotone from the right, sampled at 101 recall points with ``searchsorted``;
* categories without ground truth are left out of the mean (-1 entries).

``area`` ranges other than ``all`` are not computed (AP_S/M/L are not reported).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

from evalkit.metrics.spec import MetricSpec, declare

declare(
    MetricSpec("ap", "AP", True, "segmentation"),
    MetricSpec("ap50", "AP50", True, "segmentation"),
)

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1)


@dataclass
class InstanceImage:
    image_id: Hashable  # images are evaluated in sorted id order, which breaks score ties
    gt_ids: np.ndarray  # (G,) annotation ids
    gt_categories: np.ndarray  # (G,)
    gt_crowd: np.ndarray  # (G,) bool
    det_categories: np.ndarray  # (D,)
    det_scores: np.ndarray  # (D,) in input order (ties keep it)
    ious: np.ndarray  # (D, G); crowd columns hold intersection / detection area


@dataclass
class InstanceResult:
    ap: float  # [0, 1]; NaN without any ground truth
    ap50: float
    precision: np.ndarray = field(repr=False)  # (T, R, K), -1 where undefined
    category_ids: list[int] = field(default_factory=list)


@dataclass
class _Evaluated:
    scores: np.ndarray  # (D,) sorted, truncated
    matched: np.ndarray  # (T, D) bool: matched to a ground truth with nonzero id
    ignored: np.ndarray  # (T, D) bool: matched to a crowd
    n_real_gt: int


def mask_ious(det_rles: list[dict], gt_rles: list[dict], gt_crowd: Sequence[bool]) -> np.ndarray:
    """pycocotools' IoU matrix of RLE masks (for callers without pixel counts)."""
    from pycocotools import mask as mask_utils

    if not det_rles or not gt_rles:
        return np.zeros((len(det_rles), len(gt_rles)))
    return np.asarray(mask_utils.iou(det_rles, gt_rles, [int(c) for c in gt_crowd]), dtype=float)


def _match(ious: np.ndarray, gt_ids: np.ndarray, crowd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy COCO matching for one image and category; rows = detections in score order,
    columns = ground truth sorted non-crowd first. Returns (matched, ignored), both (T, D)."""
    n_det, n_gt = ious.shape
    matched = np.zeros((len(IOU_THRESHOLDS), n_det), dtype=bool)
    ignored = np.zeros((len(IOU_THRESHOLDS), n_det), dtype=bool)
    if n_gt == 0 or n_det == 0:
        return matched, ignored
    ious_list = ious.tolist()
    crowd_list = crowd.tolist()
    ids = gt_ids.tolist()
    for t, threshold in enumerate(IOU_THRESHOLDS.tolist()):
        gt_taken = [False] * n_gt
        for d in range(n_det):
            best = min(threshold, 1 - 1e-10)
            m = -1
            row = ious_list[d]
            for g in range(n_gt):
                if gt_taken[g] and not crowd_list[g]:
                    continue
                if m > -1 and not crowd_list[m] and crowd_list[g]:
                    break
                if row[g] < best:
                    continue
                best = row[g]
                m = g
            if m == -1:
                continue
            ignored[t, d] = crowd_list[m]
            matched[t, d] = ids[m] != 0
            gt_taken[m] = True
    return matched, ignored


def _evaluate_pair(
    scores: np.ndarray, ious: np.ndarray, gt_ids: np.ndarray, crowd: np.ndarray, max_dets: int
) -> _Evaluated:
    order = np.argsort(-scores, kind="mergesort")[:max_dets]
    gt_order = np.argsort(crowd.astype(np.int8), kind="mergesort")
    sub = ious[np.ix_(order, gt_order)]
    matched, ignored = _match(sub, gt_ids[gt_order], crowd[gt_order])
    return _Evaluated(scores[order], matched, ignored, int(np.count_nonzero(~crowd)))


def coco_segm_ap(
    images: Sequence[InstanceImage], category_ids: Sequence[int], max_dets: int = 100
) -> InstanceResult:
    """AP / AP50 over ``category_ids`` (the ground truth's categories, as COCOeval's catIds)."""
    cats = sorted(int(c) for c in category_ids)
    cat_index = {c: k for k, c in enumerate(cats)}
    per_cat: list[list[_Evaluated]] = [[] for _ in cats]
    for image in sorted(images, key=lambda im: im.image_id):  # type: ignore[arg-type,return-value]
        det_cats = np.asarray(image.det_categories, dtype=np.int64)
        gt_cats = np.asarray(image.gt_categories, dtype=np.int64)
        scores = np.asarray(image.det_scores, dtype=float)
        crowd = np.asarray(image.gt_crowd, dtype=bool)
        gt_ids = np.asarray(image.gt_ids, dtype=np.int64)
        ious = np.asarray(image.ious, dtype=float).reshape(len(det_cats), len(gt_cats))
        for cat in np.union1d(det_cats, gt_cats).tolist():
            k = cat_index.get(int(cat))
            if k is None:
                continue  # COCOeval only looks at the ground truth's categories
            d_sel = np.flatnonzero(det_cats == cat)
            g_sel = np.flatnonzero(gt_cats == cat)
            per_cat[k].append(
                _evaluate_pair(
                    scores[d_sel], ious[np.ix_(d_sel, g_sel)], gt_ids[g_sel], crowd[g_sel], max_dets
                )
            )
    n_t, n_r = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS)
    precision = -np.ones((n_t, n_r, len(cats)))
    for k, evaluated in enumerate(per_cat):
        if not evaluated:
            continue
        n_real = sum(e.n_real_gt for e in evaluated)
        if n_real == 0:
            continue
        scores = np.concatenate([e.scores for e in evaluated])
        order = np.argsort(-scores, kind="mergesort")
        matched = np.concatenate([e.matched for e in evaluated], axis=1)[:, order]
        ignored = np.concatenate([e.ignored for e in evaluated], axis=1)[:, order]
        tps = np.cumsum(matched & ~ignored, axis=1).astype(float)
        fps = np.cumsum(~matched & ~ignored, axis=1).astype(float)
        n_det = tps.shape[1]
        for t in range(n_t):
            q = np.zeros(n_r)
            if n_det:
                recall = tps[t] / n_real
                prec = tps[t] / (fps[t] + tps[t] + np.spacing(1))
                prec = np.maximum.accumulate(prec[::-1])[::-1]  # monotone from the right
                idx = np.searchsorted(recall, RECALL_THRESHOLDS, side="left")
                ok = idx < n_det
                q[ok] = prec[idx[ok]]
            precision[t, :, k] = q
    return InstanceResult(_mean_valid(precision), _mean_valid(precision[:1]), precision, cats)


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else float("nan")
