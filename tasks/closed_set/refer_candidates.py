"""RefCOCOg (umd) expressions with candidate boxes: RegionGPT's comprehension (Table 5).

Files: the refer toolkit's ``refs(umd).p`` (plain-data pickle: ``ref_id``, ``ann_id``,
``image_id``, ``split``, ``sentences: [{sent_id, sent, raw}]``) and ``instances.json`` (COCO
train2014 images and annotations), and a proposals file (:mod:`.proposals`). One sample per
sentence of the refs of ``split`` (``val``: 4,896; ``test``: 9,602), id
``"{ref_id}/{sent_id}"``; the expression is the sentence's ``sentence_field`` (``sent``, the
toolkit's text, by default). Ground truth: the ref's annotation ``bbox`` as ``xyxy``. The
candidates (:func:`.proposals.build_candidates`: ``min_score``, ``max_candidates``, the
ground truth injected when no proposal overlaps it, sorted by coordinates) are the
sample's regions, as boxes; the parameters go into the run's notes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalkit.errors import DataError
from evalkit.readers import (
    ReadResult,
    RecordErrors,
    coco_image_path,
    load_json,
    register_reader,
    require_path,
    typed_field,
)
from evalkit.records import Sample, SampleInfo
from evalkit.regions import Region, RegionError

from ..caption.refcocog_cap import load_refs
from .proposals import DEFAULT_MAX_CANDIDATES, DEFAULT_MIN_SCORE, build_candidates, load_proposals


class RecCandidates(SampleInfo):
    """One expression and the boxes offered for it (the sample's regions, in order)."""

    expression: str
    gt_box: tuple[float, float, float, float]  # xyxy
    candidates: list[tuple[float, float, float, float]]  # xyxy, the regions' order
    gt_injected: bool
    image_id: int
    ann_id: int


@register_reader("refer_candidates")
def read_refer_candidates(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    refs_path = require_path(data, "refs")
    instances_path = require_path(data, "instances")
    proposals_path = require_path(data, "proposals")
    split = str(options.get("split", "val"))
    field = str(options.get("sentence_field", "sent"))
    min_score = float(options.get("min_score", DEFAULT_MIN_SCORE))
    max_candidates = int(options.get("max_candidates", DEFAULT_MAX_CANDIDATES))
    refs = load_refs(refs_path)
    instances = load_json(instances_path)
    if not isinstance(instances, dict) or not {"images", "annotations"} <= instances.keys():
        raise DataError(instances_path, "expected COCO-style instances with 'images' and 'annotations'")
    images = {img["id"]: img for img in instances["images"] if isinstance(img, dict) and "id" in img}
    anns = {ann["id"]: ann for ann in instances["annotations"] if isinstance(ann, dict) and "id" in ann}
    proposals = load_proposals(proposals_path)
    errors = RecordErrors(options)
    samples: list[Sample] = []
    n_refs = injected = without_proposals = 0
    for k, ref in enumerate(refs):
        with errors.guard():
            where = f"ref #{k}"
            if not isinstance(ref, dict) or not {"ref_id", "ann_id", "split", "sentences"} <= ref.keys():
                raise DataError(refs_path, "ref needs ref_id, ann_id, split, sentences", where)
            if ref["split"] != split:
                continue
            where = f"ref #{k} (ref_id {ref['ref_id']})"
            ann = anns.get(ref["ann_id"])
            if ann is None:
                raise DataError(instances_path, f"no annotation {ref['ann_id']} ({refs_path.name} {where})")
            ann_where = f"annotation {ann['id']}"
            image_id = typed_field(instances_path, ann, "image_id", int, ann_where)
            img = images.get(image_id)
            if img is None:
                raise DataError(instances_path, f"unknown image_id {image_id}", ann_where)
            height = typed_field(instances_path, img, "height", int, f"image {image_id}")
            width = typed_field(instances_path, img, "width", int, f"image {image_id}")
            bbox = typed_field(instances_path, ann, "bbox", list, ann_where)
            if len(bbox) != 4:
                raise DataError(instances_path, f"bbox must be [x, y, w, h], got {bbox!r}", ann_where)
            x, y, w, h = (float(v) for v in bbox)
            gt = (x, y, x + w, y + h)
            if image_id not in proposals:
                without_proposals += 1
            candidates = build_candidates(proposals.get(image_id, []), gt, min_score, max_candidates)
            try:
                regions = [Region.from_box(b, height, width) for b in candidates.boxes]
            except RegionError as exc:
                raise DataError(proposals_path, str(exc), f"image {image_id}") from exc
            sentences = typed_field(refs_path, ref, "sentences", list, where)
            if not sentences:
                raise DataError(refs_path, "ref has no sentences", where)
            n_refs += 1
            injected += candidates.gt_injected
            for sentence in sentences:
                if not isinstance(sentence, dict) or not isinstance(sentence.get(field), str):
                    raise DataError(refs_path, f"sentence without a string {field!r}", where)
                samples.append(
                    Sample(
                        id=f"{ref['ref_id']}/{sentence.get('sent_id')}",
                        image=str(img["file_name"]),
                        regions=regions,
                        target=list(gt),
                        image_path=coco_image_path(data.get("images"), str(img["file_name"])),
                        meta=RecCandidates(
                            expression=sentence[field],
                            gt_box=gt,
                            candidates=candidates.boxes,
                            gt_injected=candidates.gt_injected,
                            image_id=image_id,
                            ann_id=int(ref["ann_id"]),
                        ),
                    )
                )
    if not samples and not errors.skipped:
        raise DataError(refs_path, f"no ref of split {split!r}")
    mean = sum(len(s.regions) for s in samples) / len(samples) if samples else 0.0
    notes = [
        f"{refs_path.name} split {split}: {len(samples)} expressions of {n_refs} refs",
        f"candidates: proposals of {proposals_path.name} scoring >= {min_score}, at most "
        f"{max_candidates} by score, the ground-truth box added when none has IoU >= 0.5 "
        f"({injected} of {n_refs} refs; {without_proposals} on images without proposals), "
        f"sorted by (x1, y1, x2, y2); {mean:.2f} candidates per expression",
    ]
    return ReadResult(samples, [refs_path, instances_path, proposals_path], notes, errors.skipped)
