"""Region proposals for referring comprehension over candidates (RegionGPT Table 5), and the
rule that turns an image's proposals into one expression's candidate boxes.

**The proposals file** (data key ``proposals``) is one JSON object: per COCO image id (as a
string), that image's proposal boxes, each ``[x1, y1, x2, y2, score]`` in pixels of the
original image::

    {"581857": [[103.9, 300.1, 258.4, 411.0, 0.91], [12.0, 40.5, 90.2, 200.0, 0.42]], ...}

An image without proposals may be left out. RegionGPT used Co-DETR's boxes and released
neither them nor the model's settings; make a file from any detector's COCO-format results
(a list of ``{image_id, category_id, bbox: [x, y, w, h], score}``, what mmdetection /
detectron2 write for ``--eval bbox``)::

    python -m evalkit.tasks.closed_set.proposals codetr_val.bbox.json proposals.json \
        [--min-score 0.3] [--top-k 100] [--nms 0.7]

**Candidates** (:func:`build_candidates`, PROTOCOLS_WAVE2.md §I): the proposals scoring at
least ``min_score`` (default 0.3), the ``max_candidates`` best (default 10; ties keep file
order); when none of them has IoU ≥ 0.5 with the ground-truth box (or none is kept), the
ground-truth box is added ("If the Intersection Over Union between the ground truth box and
any of the candidate boxes is less than 0.5, we include the ground truth box"); then all are
sorted by ``(x1, y1, x2, y2)``, so the ground truth's position tells nothing (RegionGPT's
order is unknown).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.errors import DataError
from evalkit.metrics.rec import REC_IOU, Box, box_iou
from evalkit.readers import load_json

DEFAULT_MIN_SCORE = 0.3
DEFAULT_MAX_CANDIDATES = 10


@dataclass(frozen=True)
class Proposal:
    box: Box  # x1, y1, x2, y2
    score: float


@dataclass(frozen=True)
class Candidates:
    boxes: list[Box]  # sorted by (x1, y1, x2, y2)
    gt_injected: bool  # the ground-truth box was added (no proposal had IoU >= 0.5)


def build_candidates(
    proposals: Sequence[Proposal],
    gt: Box,
    min_score: float = DEFAULT_MIN_SCORE,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
) -> Candidates:
    """One expression's candidate boxes from its image's proposals (module docstring).

    Example:
        >>> props = [Proposal((50, 0, 60, 10), 0.9), Proposal((0, 0, 9, 10), 0.8)]
        >>> props.append(Proposal((0, 0, 10, 10), 0.1))  # below min_score: never a candidate
        >>> build_candidates(props, (0, 0, 10, 10))  # IoU 0.9 with the 2nd: nothing added
        Candidates(boxes=[(0, 0, 9, 10), (50, 0, 60, 10)], gt_injected=False)
        >>> build_candidates(props, (20, 20, 30, 30))  # no overlap: the ground truth joins
        Candidates(boxes=[(0, 0, 9, 10), (20, 20, 30, 30), (50, 0, 60, 10)], gt_injected=True)
    """
    kept = [p for p in proposals if p.score >= min_score]
    kept = sorted(kept, key=lambda p: -p.score)[:max_candidates]  # stable: ties keep file order
    boxes = [p.box for p in kept]
    injected = not any(box_iou(b, gt) >= REC_IOU for b in boxes)
    if injected:
        boxes.append(gt)
    return Candidates(sorted(boxes), injected)


def load_proposals(path: Path) -> dict[int, list[Proposal]]:
    """The proposals file at ``path``, checked: one DataError naming the image and box."""
    raw = load_json(path)
    if not isinstance(raw, dict):
        raise DataError(path, "expected an object {image id: [[x1, y1, x2, y2, score], ...]} (see the card)")
    out: dict[int, list[Proposal]] = {}
    for key, boxes in raw.items():
        try:
            image_id = int(key)
        except ValueError:
            raise DataError(path, f"key {key!r} is not an image id", f"image {key!r}") from None
        if not isinstance(boxes, list):
            raise DataError(path, "an image's proposals must be a list of boxes", f"image {key}")
        props = []
        for k, entry in enumerate(boxes):
            where = f"image {key}, proposal {k}"
            ok = (
                isinstance(entry, list)
                and len(entry) == 5
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in entry)
                and all(math.isfinite(v) for v in entry)
            )
            if not ok:
                raise DataError(path, f"expected [x1, y1, x2, y2, score] (5 numbers), got {entry!r}", where)
            x1, y1, x2, y2, score = (float(v) for v in entry)
            if not (x2 > x1 and y2 > y1):
                raise DataError(path, f"box {entry[:4]!r} is empty (xyxy needs x2 > x1, y2 > y1)", where)
            props.append(Proposal((x1, y1, x2, y2), score))
        out[image_id] = props
    return out


def from_detections(
    detections: Sequence[Any],
    min_score: float = 0.0,
    top_k: int | None = None,
    nms: float | None = None,
    source: str = "<detections>",
) -> dict[str, list[list[float]]]:
    """COCO-format detection results -> the proposals object: boxes as xyxy, every category
    merged, best score first; optionally only ``score >= min_score``, greedy class-agnostic
    NMS at IoU ``nms`` (a box is dropped when it overlaps a better kept one by more), and
    the ``top_k`` best per image.

    Example:
        >>> dets = [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "score": 0.5},
        ...         {"image_id": 1, "category_id": 8, "bbox": [1, 0, 10, 10], "score": 0.9}]
        >>> from_detections(dets)
        {'1': [[1.0, 0.0, 11.0, 10.0, 0.9], [0.0, 0.0, 10.0, 10.0, 0.5]]}
        >>> from_detections(dets, nms=0.7)  # IoU 90/110 = 0.82: the weaker box goes
        {'1': [[1.0, 0.0, 11.0, 10.0, 0.9]]}
    """
    by_image: dict[int, list[Proposal]] = {}
    for k, det in enumerate(detections):
        if not isinstance(det, dict) or not {"image_id", "bbox", "score"} <= det.keys():
            raise DataError(source, "a detection needs image_id, bbox [x, y, w, h] and score", f"#{k}")
        x, y, w, h = (float(v) for v in det["bbox"])
        score = float(det["score"])
        if w <= 0 or h <= 0 or score < min_score:
            continue
        by_image.setdefault(int(det["image_id"]), []).append(Proposal((x, y, x + w, y + h), score))
    out: dict[str, list[list[float]]] = {}
    for image_id in sorted(by_image):
        ranked = sorted(by_image[image_id], key=lambda p: -p.score)
        kept: list[Proposal] = []
        for p in ranked:
            if nms is not None and any(box_iou(p.box, q.box) > nms for q in kept):
                continue
            kept.append(p)
            if top_k is not None and len(kept) >= top_k:
                break
        out[str(image_id)] = [[*p.box, p.score] for p in kept]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evalkit.tasks.closed_set.proposals",
        description="Make a proposals file (refcocog_rec_candidates' data key 'proposals') from "
        "COCO-format detection results.",
    )
    parser.add_argument("detections", type=Path, help="COCO results: [{image_id, bbox: [x,y,w,h], score}]")
    parser.add_argument("out", type=Path, help="proposals JSON to write")
    parser.add_argument("--min-score", type=float, default=0.0, help="drop detections scoring less")
    parser.add_argument("--top-k", type=int, default=None, help="keep at most K boxes per image")
    parser.add_argument("--nms", type=float, default=None, help="class-agnostic NMS IoU threshold")
    args = parser.parse_args(argv)
    try:
        raw = load_json(args.detections)
        if not isinstance(raw, list):
            raise DataError(args.detections, "expected a list of detections (COCO results format)")
        proposals = from_detections(raw, args.min_score, args.top_k, args.nms, str(args.detections))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.write_text(json.dumps(proposals))
    n = sum(len(v) for v in proposals.values())
    print(f"{args.out}: {n} proposals on {len(proposals)} images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
