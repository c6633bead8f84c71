"""COCO box AP of closed-set region classification (RegionGPT's COCO "mAP"), by pycocotools.

RegionGPT (Tables 3, 6, 7, 11, 12, 15, 16) reports COCO-2017 val AP with AP_s/m/l for a
model that names ground-truth regions; it released no code. evalkit's definition
(PROTOCOLS_WAVE2.md §H): every named region becomes one detection — the region's own
ground-truth box, the named class, a score — and ``pycocotools.COCOeval(gt, dt, "bbox")``
scores them as any detector: ``stats[0]`` AP@[.50:.95], ``stats[1]`` AP50, ``stats[3..5]``
AP_s/m/l. A correct-class detection has IoU 1 with its own box, so AP ≈ AP50; areas are the
ground truth's ``area`` (mask area), a detection's ``w*h`` (``loadRes``).

This module runs COCOeval itself (not a re-implementation), so the numbers are pycocotools'
by construction; what it adds is building the in-memory COCO objects and keeping
COCOeval's progress prints off stdout.

Example:
    >>> gt = {
    ...     "images": [{"id": 1, "height": 10, "width": 10}],
    ...     "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    ...     "annotations": [
    ...         {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "area": 16, "iscrowd": 0},
    ...         {"id": 2, "image_id": 1, "category_id": 2, "bbox": [5, 5, 4, 4], "area": 16, "iscrowd": 0},
    ...     ],
    ... }
    >>> dets = [BoxDetection(1, 1, (0, 0, 4, 4), 0.9), BoxDetection(1, 1, (5, 5, 4, 4), 0.8)]
    >>> ap = coco_box_ap(gt, dets)
    >>> round(ap["ap"], 2), round(ap["ap50"], 2)  # cat: AP 100; dog: never detected, AP 0
    (50.0, 50.0)
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evalkit.metrics.spec import MetricSpec, declare

declare(
    MetricSpec("ap75", "AP75", True, "segmentation"),
    # COCOeval's small / medium / large AP (areas < 32², < 96², above), RegionGPT Tables 6, 7.
    MetricSpec("ap_s", "AP_s", True, "segmentation"),
    MetricSpec("ap_m", "AP_m", True, "segmentation"),
    MetricSpec("ap_l", "AP_l", True, "segmentation"),
)

# results key -> index into COCOeval.stats (summarize()'s order)
STATS = {"ap": 0, "ap50": 1, "ap75": 2, "ap_s": 3, "ap_m": 4, "ap_l": 5}


@dataclass(frozen=True)
class BoxDetection:
    """One detection as ``loadRes`` takes it (``bbox`` is COCO ``[x, y, w, h]``)."""

    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]
    score: float

    def to_json(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "category_id": self.category_id,
            "bbox": [float(v) for v in self.bbox],
            "score": float(self.score),
        }


def coco_box_ap(ground_truth: Mapping[str, Any], detections: Sequence[BoxDetection]) -> dict[str, float]:
    """``COCOeval(gt, dt, "bbox")`` on in-memory data, on the papers' scale (×100).

    Args:
        ground_truth: a COCO instances dataset (``images``, ``annotations`` with ``bbox``,
            ``area``, ``iscrowd``, ``categories``); crowds are ignore regions, as always.
        detections: the detections; image ids must be images of ``ground_truth``.

    Returns:
        ``ap``, ``ap50``, ``ap75``, ``ap_s``, ``ap_m``, ``ap_l`` ×100. A value COCOeval leaves
        undefined (-1: no ground truth of that size) is left out. No detections at all: every
        defined value is 0 (``loadRes`` cannot take an empty list, so COCOeval is not run).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dataset = {
        "images": list(ground_truth["images"]),
        "annotations": list(ground_truth["annotations"]),
        "categories": list(ground_truth["categories"]),
    }
    if not detections:
        return _empty(dataset)
    with contextlib.redirect_stdout(io.StringIO()):  # COCO() and COCOeval print progress
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        dt = gt.loadRes([d.to_json() for d in detections])
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    out: dict[str, float] = {}
    for key, k in STATS.items():
        value = float(evaluator.stats[k])
        if value >= 0 and math.isfinite(value):
            out[key] = 100.0 * value
    return out


def _empty(dataset: Mapping[str, Any]) -> dict[str, float]:
    """The values with no detection: 0 where COCOeval would define them (some ground truth
    of that area range that is not crowd), absent otherwise."""
    areas = [float(a["area"]) for a in dataset["annotations"] if not a.get("iscrowd", 0)]
    ranges = {"ap_s": (0, 32**2), "ap_m": (32**2, 96**2), "ap_l": (96**2, 1e5**2)}
    out: dict[str, float] = {}
    if areas:
        out.update({"ap": 0.0, "ap50": 0.0, "ap75": 0.0})
    for key, (lo, hi) in ranges.items():
        if any(lo <= a <= hi for a in areas):
            out[key] = 0.0
    return out
