"""Referring-segmentation metrics: cIoU and gIoU as GLaMM / MGLMM compute them, and
gRefCOCO's no-target accuracies (N-acc, T-acc) as its official evaluator defines them.

* GLaMM ``eval/referring_seg/infer_and_evaluate.py`` (e74865f; MGLMM d2abee8 the same):
  per mask, ``intersectionAndUnionGPU`` gives class 1's I = |P ∧ G| and U = |P ∨ G|;
  **cIoU** = ΣI / (ΣU + 1e-10); **gIoU** = Σ (I / (U + 1e-5), +1 when U = 0) over masks,
  divided by ``count + 1e-5`` (``AverageMeter.all_reduce``). The reference sums in float32
  tensors; here counts are exact integers and the divisions float64.
* gRefCOCO (henghuiding/ReLA ``gres_model/evaluation/refer_evaluation.py``, 884ef17 "fix
  eval metrics"): a no-target sample predicted no-target is a TP (gIoU +1, nothing to cIoU),
  predicted with a target an FN (gIoU +0, U added to cIoU); a targeted sample predicted
  no-target is an FP (I = 0), else a TN (I / U, 0 when U = 0). **N-acc** = TP / (TP + FN),
  **T-acc** = TN / (TN + FP), both 0 when the split has no no-target sample; ReLA's own
  gIoU = Σ / N and cIoU = ΣI / ΣU (no epsilons).

Everything is returned on [0, 1]; protocols multiply by 100 for the papers' scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from evalkit.metrics.spec import MetricSpec, declare

declare(
    MetricSpec("ciou", "cIoU", True, "segmentation"),  # cumulative: ΣI / ΣU over the split
    MetricSpec("giou", "gIoU", True, "segmentation"),  # mean per-sample IoU (empty-empty = 1)
    MetricSpec("n_acc", "N-acc", True, "classification"),  # no-target samples called no-target
    MetricSpec("t_acc", "T-acc", True, "classification"),  # targeted samples not called no-target
)


@dataclass(frozen=True)
class IoUCount:
    """One sample's class-1 pixel counts: |P ∧ G| and |P ∨ G|."""

    intersection: int
    union: int


def ciou(counts: Sequence[IoUCount]) -> float:
    """ΣI / (ΣU + 1e-10).

    Example (PROTOCOLS_WAVE2 §P vector 8):
        >>> round(ciou([IoUCount(50, 100), IoUCount(0, 0)]), 12)
        0.5
    """
    return sum(c.intersection for c in counts) / (sum(c.union for c in counts) + 1e-10)


def giou(counts: Sequence[IoUCount]) -> float:
    """Σ (I / (U + 1e-5) + [U = 0]) / (N + 1e-5): a mask empty in both scores 1.

    Example (PROTOCOLS_WAVE2 §P vector 8):
        >>> round(giou([IoUCount(50, 100), IoUCount(0, 0)]), 6)
        0.749996
    """
    total = sum(c.intersection / (c.union + 1e-5) + (1.0 if c.union == 0 else 0.0) for c in counts)
    return total / (len(counts) + 1e-5)


@dataclass(frozen=True)
class NoTargetSample:
    """One gRefCOCO sample: its counts, whether it has no target, whether the model said so."""

    count: IoUCount
    gt_no_target: bool
    pred_no_target: bool


@dataclass
class GRefScores:
    ciou: float
    giou: float
    n_acc: float
    t_acc: float
    tp: int  # no-target, predicted no-target
    fn: int  # no-target, predicted a target
    fp: int  # targeted, predicted no-target
    tn: int  # targeted, predicted a target


def grefcoco_scores(samples: Sequence[NoTargetSample]) -> GRefScores:
    """ReLA's ``ReferEvaluator.evaluate`` for one source (cIoU 0 when ΣU = 0, T-acc 0 when
    the split has no targeted sample, where ReLA would divide by zero).

    Example:
        >>> s = [NoTargetSample(IoUCount(0, 0), True, True), NoTargetSample(IoUCount(3, 4), False, False)]
        >>> r = grefcoco_scores(s)
        >>> (r.n_acc, r.t_acc, r.giou, r.ciou)
        (1.0, 1.0, 0.875, 0.75)
    """
    tp = fn = fp = tn = 0
    acc_iou = 0.0
    acc_i = acc_u = 0
    for s in samples:
        inter, union = s.count.intersection, s.count.union
        if s.gt_no_target:
            if s.pred_no_target:
                tp += 1
                acc_iou += 1.0
            else:
                fn += 1
                acc_u += union
            continue
        if s.pred_no_target:
            fp += 1
            inter = 0
        else:
            tn += 1
        acc_iou += 0.0 if union == 0 else inter / union
        acc_i += inter
        acc_u += union
    n = len(samples)
    empty = tp + fn
    return GRefScores(
        ciou=acc_i / acc_u if acc_u else 0.0,
        giou=acc_iou / n if n else 0.0,
        n_acc=tp / empty if empty else 0.0,
        t_acc=(tn / (tn + fp) if tn + fp else 0.0) if empty else 0.0,
        tp=tp,
        fn=fn,
        fp=fp,
        tn=tn,
    )
