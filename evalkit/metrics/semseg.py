"""Semantic-segmentation mIoU, identical to detectron2's current ``SemSegEvaluator``.

A (C+1) x (C+1) confusion matrix indexed ``[prediction, ground truth]`` whose last row and
column collect ignored pixels (ground truth == ``ignore_label``). A class with no
ground-truth pixel is left out of the mean even when it was predicted (detectron2 before
2022, and cityscapesScripts, count such a class as IoU 0 — a different number on subsets
where a class is absent).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evalkit.metrics.spec import MetricSpec, declare

declare(MetricSpec("miou", "mIoU", True, "segmentation"))


def confusion_matrix(
    pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_label: int = 255
) -> np.ndarray:
    """One image's counts. ``pred`` holds classes in [0, C); ``gt`` classes or ``ignore_label``."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    gt = gt.astype(np.int64)
    valid = (gt >= 0) & (gt < num_classes)
    bad = ~valid & (gt != ignore_label)
    if bad.any():
        raise ValueError(
            f"ground-truth label {int(gt[bad][0])} is neither a class (< {num_classes}) "
            f"nor the ignore label {ignore_label}"
        )
    gt = np.where(valid, gt, num_classes)
    pred = pred.astype(np.int64)
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f"predicted class outside [0, {num_classes})")
    counts = np.bincount((num_classes + 1) * pred.ravel() + gt.ravel(), minlength=(num_classes + 1) ** 2)
    return counts.reshape(num_classes + 1, num_classes + 1)


@dataclass
class SemSegResult:
    miou: float
    fwiou: float
    macc: float
    pacc: float
    iou: np.ndarray  # per class; NaN where the class has no ground-truth pixel
    acc: np.ndarray


def semseg_metrics(conf: np.ndarray) -> SemSegResult:
    """mIoU, fwIoU, mACC, pACC in [0, 1] from a summed confusion matrix."""
    num_classes = conf.shape[0] - 1
    acc = np.full(num_classes, np.nan, dtype=float)
    iou = np.full(num_classes, np.nan, dtype=float)
    tp = conf.diagonal()[:-1].astype(float)
    pos_gt = np.sum(conf[:-1, :-1], axis=0).astype(float)
    pos_pred = np.sum(conf[:-1, :-1], axis=1).astype(float)
    total = np.sum(pos_gt)
    acc_valid = pos_gt > 0
    acc[acc_valid] = tp[acc_valid] / pos_gt[acc_valid]
    union = pos_gt + pos_pred - tp
    iou_valid = np.logical_and(acc_valid, union > 0)
    iou[iou_valid] = tp[iou_valid] / union[iou_valid]
    if not iou_valid.any():
        return SemSegResult(float("nan"), float("nan"), float("nan"), float("nan"), iou, acc)
    class_weights = pos_gt / total
    return SemSegResult(
        miou=float(np.sum(iou[iou_valid]) / np.sum(iou_valid)),
        fwiou=float(np.sum(iou[iou_valid] * class_weights[iou_valid])),
        macc=float(np.sum(acc[acc_valid]) / np.sum(acc_valid)),
        pacc=float(np.sum(tp) / total),
        iou=iou,
        acc=acc,
    )
