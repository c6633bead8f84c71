"""Open-vocabulary segmentation (Osprey Table 2: Cityscapes, ADE20K-150): PQ, AP, mIoU.

One request per ground-truth panoptic segment; the answers of an image are turned into
semantic / panoptic / instance predictions (:mod:`evalkit.metrics.ovseg_assembly`) and scored
exactly as the reference evaluators (panopticapi ``pq_compute``, pycocotools ``COCOeval``
segm, detectron2 ``SemSegEvaluator``) — see :mod:`evalkit.metrics.panoptic`,
:mod:`evalkit.metrics.instance`, :mod:`evalkit.metrics.semseg`.

Instance ground truth: the ``instances_json`` data key when the card has it (ADE's
``ade20k_instance_val.json``), else the panoptic thing segments (crowds as iscrowd). Images
whose queries are not all answered (``--limit``) are left out and counted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.answers import clean_decoded
from evalkit.errors import DataError
from evalkit.metrics.embeddings import minilm
from evalkit.metrics.instance import InstanceImage, coco_segm_ap
from evalkit.metrics.ovseg_assembly import AssembledImage, assemble, class_cosines
from evalkit.metrics.panoptic import PanopticImage, Segment, panoptic_quality
from evalkit.metrics.semseg import semseg_metrics
from evalkit.protocol import Data, ProtocolArgs, ScoreResult, ScoringContext, TaskProtocol, register_protocol
from evalkit.readers import load_json, require_path
from evalkit.records import Sample

from .coco_panoptic import (
    PanopticAnnotation,
    PanopticSet,
    SegmentInfo,
    SegmentMap,
    complete_data,
    load_panoptic_set,
    read_segment_map,
    read_semantic,
    read_vocabulary,
    semantic_file,
)

IGNORE_LABEL = 255


@dataclass
class InstanceTruth:
    """COCO instance annotations grouped by image (``instances_json``)."""

    path: Path
    category_ids: list[int]
    by_image: dict[Any, list[dict[str, Any]]] = field(default_factory=dict)


def load_instance_truth(path: Path) -> InstanceTruth:
    raw = load_json(path)
    if not isinstance(raw, dict) or not {"annotations", "categories"} <= raw.keys():
        raise DataError(path, "expected a COCO instance object with 'annotations' and 'categories'")
    by_image: dict[Any, list[dict[str, Any]]] = {}
    for k, ann in enumerate(raw["annotations"]):
        if not isinstance(ann, dict) or not {"id", "image_id", "category_id", "segmentation"} <= ann.keys():
            raise DataError(
                path,
                "an annotation needs id, image_id, category_id, segmentation",
                f"annotations[{k}]",
            )
        by_image.setdefault(ann["image_id"], []).append(ann)
    return InstanceTruth(path, [int(c["id"]) for c in raw["categories"]], by_image)


def _decode(ann: dict[str, Any], height: int, width: int, path: Path) -> dict[str, Any]:
    """The annotation as a compressed RLE of the panoptic PNG's size."""
    from pycocotools import mask as mask_utils

    seg = ann["segmentation"]
    where = f"annotation {ann['id']} (image {ann['image_id']})"
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if list(seg["size"]) != [height, width]:
            raise DataError(
                path,
                f"mask is {seg['size'][1]}x{seg['size'][0]}, the panoptic PNG {width}x{height}",
                where,
            )
        rle = mask_utils.frPyObjects(seg, height, width) if isinstance(seg["counts"], list) else seg
    else:
        raise DataError(path, "segmentation must be polygons or RLE", where)
    return rle


def instance_image(
    ann: PanopticAnnotation,
    segmap: SegmentMap,
    assembled: AssembledImage,
    pset: PanopticSet,
    truth: InstanceTruth | None,
) -> InstanceImage:
    n_q = segmap.n_queries
    det_cats = np.array([pset.categories[c].id for c in assembled.det_class.tolist()], dtype=np.int64)
    real = assembled.det_query < n_q
    if truth is None:  # ground truth = the panoptic thing segments: IoU 1 with itself, else 0
        things = [s for s in ann.segments if pset.by_id[s.category_id].isthing]
        gt_ids = np.array([s.id for s in things], dtype=np.int64)
        det_ids = np.where(real, segmap.ids[np.minimum(assembled.det_query, len(segmap.ids) - 1)], -1)
        ious = (det_ids[:, None] == gt_ids[None, :]).astype(float)
        return InstanceImage(
            ann.image_id,
            gt_ids,
            np.array([s.category_id for s in things], dtype=np.int64),
            np.array([s.iscrowd for s in things], dtype=bool),
            det_cats,
            assembled.det_score,
            ious,
        )
    gts = truth.by_image.get(ann.image_id, [])
    height, width = segmap.index.shape
    n_seg = len(segmap.ids)
    det_area = np.zeros(len(real))
    det_area[real] = segmap.counts[assembled.det_query[real]]
    ious = np.zeros((len(real), len(gts)))
    crowd = np.array([ann_.get("iscrowd", 0) == 1 for ann_ in gts], dtype=bool)
    from pycocotools import mask as mask_utils

    for j, gt in enumerate(gts):
        rle = _decode(gt, height, width, truth.path)
        # count segment pixels inside the instance within its box only
        x, y, w, h = (int(v) for v in mask_utils.toBbox(rle))
        mask = np.asarray(mask_utils.decode(rle)[y : y + h, x : x + w], dtype=bool)
        inter_by_seg = np.bincount(segmap.index[y : y + h, x : x + w][mask], minlength=n_seg + 1)[:n_seg]
        inter = np.zeros(len(real))
        inter[real] = inter_by_seg[assembled.det_query[real]]
        union = det_area if crowd[j] else det_area + int(mask_utils.area(rle)) - inter
        ious[:, j] = np.where(inter > 0, inter / np.maximum(union, 1), 0.0)
    return InstanceImage(
        ann.image_id,
        np.array([g["id"] for g in gts], dtype=np.int64),
        np.array([g["category_id"] for g in gts], dtype=np.int64),
        crowd,
        det_cats,
        assembled.det_score,
        ious,
    )


def panoptic_image(
    ann: PanopticAnnotation, segmap: SegmentMap, assembled: AssembledImage, pset: PanopticSet
) -> PanopticImage:
    preds: list[Segment] = []
    intersections: dict[tuple[int, int], int] = {}
    for seg in assembled.panoptic:
        area = 0
        for q in seg.queries:
            count = int(segmap.counts[q])
            intersections[(int(segmap.ids[q]), seg.id)] = count
            area += count
        preds.append(Segment(seg.id, pset.categories[seg.class_index].id, area))
    return PanopticImage(ann.segments, preds, intersections, ann.image_id)


def semantic_confusion(
    segmap: SegmentMap,
    assembled: AssembledImage,
    sem: np.ndarray,
    n_classes: int,
    path: Path,
    record: str,
) -> np.ndarray:
    # class per label value through a table: ignore -> n_classes, anything else invalid -> -1
    if sem.dtype == np.uint8:
        table = np.full(256, -1, dtype=np.int32)
        table[: min(n_classes, 256)] = np.arange(min(n_classes, 256))
        table[IGNORE_LABEL] = n_classes
        gt = table[sem]
    else:
        sem64 = sem.astype(np.int64)
        gt = np.where(sem64 == IGNORE_LABEL, n_classes, sem64)
        gt[(sem64 < 0) | ((sem64 >= n_classes) & (sem64 != IGNORE_LABEL))] = -1
    if gt.min(initial=0) < 0:
        bad = sem[gt < 0]
        raise DataError(
            path,
            f"label {int(bad[0])} is neither a class (< {n_classes}) nor {IGNORE_LABEL}",
            record,
        )
    n_seg = len(segmap.ids)
    joint = np.bincount(
        segmap.index.ravel().astype(np.int32) * (n_classes + 1) + gt.ravel(),
        minlength=(n_seg + 1) * (n_classes + 1),
    ).reshape(n_seg + 1, n_classes + 1)
    lut = np.zeros(n_seg + 1, dtype=np.int64)  # uncovered pixels: class 0
    lut[: segmap.n_queries] = assembled.semantic_class
    conf = np.zeros((n_classes + 1, n_classes + 1), dtype=np.int64)
    np.add.at(conf, lut, joint)
    return conf


class OvsegArgs(ProtocolArgs):
    notes: tuple[str, ...] = ()  # the card's departures from the reference, recorded as deviations


@register_protocol("ovseg")
class OpenVocabSegmentation(TaskProtocol[OvsegArgs]):
    def score(
        self, samples: Sequence[Sample], texts: Mapping[str, str], data: Data, context: ScoringContext
    ) -> ScoreResult:
        data = complete_data(self.card.reader, data, self.card.reader_args)
        layout = str(self.card.reader_args.get("layout", "flat"))
        pset = load_panoptic_set(
            require_path(data, "panoptic_json"), require_path(data, "panoptic_root"), layout
        )
        n_classes = len(pset.categories)
        vocab = read_vocabulary(require_path(data, "vocabulary"), n_classes)
        semantic_root = require_path(data, "semantic_root")
        instances_json = data.get("instances_json")
        truth = load_instance_truth(instances_json) if instances_json is not None else None
        answers = [clean_decoded(texts[s.id]) for s in samples]
        cosines = class_cosines(answers, vocab.synonyms, minilm())
        row_of = {s.id: k for k, s in enumerate(samples)}
        isthing = np.array([c.isthing for c in pset.categories], dtype=bool)
        conf = np.zeros((n_classes + 1, n_classes + 1), dtype=np.int64)
        pan_images: list[PanopticImage] = []
        inst_images: list[InstanceImage] = []
        counts = {"images": 0, "images_skipped": 0, "segments_beyond_query_limit": 0}
        predicted_class = np.zeros(len(samples), dtype=np.int64)
        absent: list[str] = []
        for ann in pset.annotations:
            segmap = read_segment_map(pset, ann)
            # the reference's queries: the PNG's segments (a JSON segment without pixels is
            # never asked about; PQ counts it as a miss through the JSON)
            keys = [f"{ann.image_id}#{sid}" for sid in segmap.ids[:300].tolist()]
            if not keys or any(k not in row_of for k in keys):
                counts["images_skipped"] += 1
                continue
            absent += [f"{ann.image_id}#{sid}" for sid in segmap.absent]
            rows = np.array([row_of[k] for k in keys[: segmap.n_queries]], dtype=np.int64)
            counts["segments_beyond_query_limit"] += len(keys) - segmap.n_queries
            uncovered = int(segmap.index.size - segmap.counts[: segmap.n_queries].sum())
            assembled = assemble(cosines[rows], segmap.counts[: segmap.n_queries], isthing, uncovered)
            predicted_class[rows] = assembled.semantic_class
            record = f"image {ann.image_id}"
            sem_path = semantic_file(layout, semantic_root, ann)
            sem = read_semantic(sem_path, segmap.index.shape, record)
            conf += semantic_confusion(segmap, assembled, sem, n_classes, sem_path, record)
            pan_images.append(panoptic_image(ann, segmap, assembled, pset))
            inst_images.append(instance_image(ann, segmap, assembled, pset, truth))
            counts["images"] += 1
        pq = panoptic_quality(pan_images, pset.isthing)
        thing_ids = truth.category_ids if truth else [c.id for c in pset.categories if c.isthing]
        ap = coco_segm_ap(inst_images, thing_ids)
        sem_res = semseg_metrics(conf)
        metrics = {
            "pq": 100 * pq.splits["all"]["pq"],
            "sq": 100 * pq.splits["all"]["sq"],
            "rq": 100 * pq.splits["all"]["rq"],
            "pq_th": 100 * pq.splits["things"]["pq"],
            "pq_st": 100 * pq.splits["stuff"]["pq"],
            "ap": 100 * ap.ap,
            "ap50": 100 * ap.ap50,
            "miou": 100 * sem_res.miou,
        }
        per_sample = [
            {
                "id": s.id,
                "image": s.image,
                "segment_id": s.info(SegmentInfo).segment_id,
                "prediction": texts[s.id],
                "target": s.target,
                "predicted_class": vocab.synonyms[int(predicted_class[k])][0].strip(),
                "cosine": round(float(cosines[k, predicted_class[k]]), 6),
            }
            for k, s in enumerate(samples)
        ]
        deviations = list(self.args.notes)
        deviations.append(
            "instance detections in a stable top-k order (equal scores: query order); the "
            "reference's topk(sorted=False) order on CUDA is unspecified"
        )
        deviations.append(
            "instance AP ground truth: "
            + (f"{truth.path.name}" if truth else "panoptic thing segments (crowds as iscrowd)")
        )
        if absent:
            counts["segments_without_pixels"] = len(absent)
            deviations.append(
                f"{len(absent)} JSON segment(s) have no pixel in their PNG: not asked about, as in "
                "the reference (its queries are the PNG's ids); PQ counts each as a miss"
            )
        if counts["images_skipped"]:
            deviations.append(
                f"{counts['images_skipped']} images without answers for all their "
                "segments are left out of every metric"
            )
        extra: dict[str, Any] = {
            "metrics_detail": {
                "sq_th": 100 * pq.splits["things"]["sq"],
                "rq_th": 100 * pq.splits["things"]["rq"],
                "sq_st": 100 * pq.splits["stuff"]["sq"],
                "rq_st": 100 * pq.splits["stuff"]["rq"],
                "fwiou": 100 * sem_res.fwiou,
                "macc": 100 * sem_res.macc,
                "pacc": 100 * sem_res.pacc,
            }
        }
        if absent:
            extra["segments_without_pixels"] = absent  # listed in results.json
        return ScoreResult(metrics, per_sample, deviations, {**counts, "regions": len(samples)}, extra)
