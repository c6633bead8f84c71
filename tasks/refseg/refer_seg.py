"""Referring expression segmentation ground truth from the refer toolkit's files (RefCOCO,
RefCOCO+ split by ``unc``, RefCOCOg by ``umd``): ``refs(<splitBy>).p`` + ``instances.json``.

One sample per sentence of every ref of ``split`` (refs in file order, sentences in ref
order): id ``"<ref_id>/<sent_id>"``, the expression = the sentence's ``sent`` field (the
toolkit's lower-cased tokenised text, which GLaMM's ``ReferSegmDataset`` reads), target = the
referred object's mask as COCO RLE. GLaMM / MGLMM score ≤ 3 sentences drawn at random per
image instead (PROTOCOLS_WAVE2 §M): the protocol records that departure.

The mask is built as GLaMM's dataset builds it: each polygon of the object's segmentation
decoded on its own (``frPyObjects``) and the decoded masks **summed**, an empty segmentation
giving an empty mask. The target is the union (sum > 0); where polygons overlap the sum is 2,
a value the reference's ``intersectionAndUnionGPU`` (``histc`` over [0, 1]) never counts as
the object, so the reader also keeps the pixels covered exactly once (``meta.once``, only
when it differs) for the ``reference`` variant.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from evalkit.errors import DataError
from evalkit.readers import (
    ReadResult,
    RecordErrors,
    coco_image_path,
    load_json,
    register_reader,
    require_path,
)
from evalkit.records import Sample, SampleInfo

from ..caption.refcocog_cap import load_refs


class RefSegInfo(SampleInfo):
    ref_id: int | str
    sent_id: int | str | None = None
    sentence: str
    image_id: int | str
    ann_ids: list[int]
    height: int
    width: int
    # The pixels covered exactly once by the object's polygons, when some overlap (what the
    # reference's histogram counts as the object); None: the same as the target.
    once: dict[str, Any] | None = None
    no_target: bool = False  # gRefCOCO: the expression refers to nothing in the image


def encode(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def coverage(path: Path, segmentation: Any, height: int, width: int, where: str) -> np.ndarray:
    """How many of the object's polygons (or RLEs) cover each pixel (``np.sum(decode(rle),
    axis=2)`` in GLaMM's dataset); zeros for an empty segmentation."""
    if isinstance(segmentation, list) and len(segmentation) == 0:
        return np.zeros((height, width), dtype=np.int64)
    try:
        if isinstance(segmentation, list) and all(isinstance(p, list) for p in segmentation):
            rles = mask_utils.frPyObjects([[float(v) for v in p] for p in segmentation], height, width)
        elif isinstance(segmentation, dict):
            seg = dict(segmentation)
            if isinstance(seg.get("counts"), list):
                rles = [mask_utils.frPyObjects(seg, height, width)]
            else:
                counts = seg.get("counts")
                seg["counts"] = counts.encode() if isinstance(counts, str) else counts
                rles = [seg]
        else:
            raise DataError(path, "segmentation is neither polygons nor an RLE", where)
        decoded = mask_utils.decode(rles)
    except (TypeError, ValueError, IndexError) as exc:
        raise DataError(path, f"invalid segmentation: {exc}", where) from exc
    if decoded.shape[:2] != (height, width):
        raise DataError(
            path, f"segmentation is {decoded.shape[0]}x{decoded.shape[1]}, the image {height}x{width}", where
        )
    out: np.ndarray = decoded.reshape(height, width, -1).astype(np.int64).sum(axis=2)
    return out


def instances_index(path: Path) -> tuple[dict[Any, dict[str, Any]], dict[Any, dict[str, Any]]]:
    """(annotations by id, images by id) of a refer toolkit ``instances.json``."""
    raw = load_json(path)
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("images"), list)
        or not isinstance(raw.get("annotations"), list)
    ):
        raise DataError(path, "expected COCO-style instances with 'images' and 'annotations'")
    anns = {a["id"]: a for a in raw["annotations"] if isinstance(a, dict) and "id" in a}
    images = {i["id"]: i for i in raw["images"] if isinstance(i, dict) and "id" in i}
    return anns, images


def image_of(
    path: Path, images: dict[Any, dict[str, Any]], image_id: Any, where: str
) -> tuple[str, int, int]:
    img = images.get(image_id)
    if img is None or not {"file_name", "height", "width"} <= img.keys():
        raise DataError(path, f"image {image_id!r} is missing (or lacks file_name, height, width)", where)
    return str(img["file_name"]), int(img["height"]), int(img["width"])


@register_reader("refer_seg")
def read_refer_seg(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    refs_path = require_path(data, "refs")
    instances_path = require_path(data, "instances")
    return read_refer_files(refs_path, instances_path, data.get("images"), options)


def read_refer_files(
    refs_path: Path, instances_path: Path, images: Path | None, options: Mapping[str, Any]
) -> ReadResult:
    split = str(options.get("split", "val"))
    errors = RecordErrors(options)
    refs = load_refs(refs_path)
    anns, image_records = instances_index(instances_path)
    masks: dict[Any, tuple[dict[str, Any], dict[str, Any] | None]] = {}
    samples: list[Sample] = []
    n_refs = overlapping = 0
    for k, ref in enumerate(refs):
        where = f"ref #{k}"
        if not isinstance(ref, dict) or not {"split", "ann_id", "sentences", "image_id"} <= ref.keys():
            raise DataError(refs_path, "ref needs split, ann_id, image_id, sentences", where)
        if ref["split"] != split:
            continue
        where = f"{where} (ref_id {ref.get('ref_id')})"
        with errors.guard():
            ann = anns.get(ref["ann_id"])
            if ann is None:
                raise DataError(
                    instances_path, f"annotation {ref['ann_id']} of a {split} ref is missing", where
                )
            file_name, h, w = image_of(instances_path, image_records, ann["image_id"], where)
            if ref["ann_id"] not in masks:
                cover = coverage(instances_path, ann.get("segmentation"), h, w, f"annotation {ref['ann_id']}")
                union, once = cover > 0, cover == 1
                masks[ref["ann_id"]] = (encode(union), None if np.array_equal(union, once) else encode(once))
            target, once_rle = masks[ref["ann_id"]]
            overlapping += once_rle is not None
            n_refs += 1
            for j, sent in enumerate(ref["sentences"]):
                if not isinstance(sent, dict) or not isinstance(sent.get("sent"), str):
                    raise DataError(refs_path, f"sentence {j} has no string 'sent'", where)
                sent_id = sent.get("sent_id", j)
                samples.append(
                    Sample(
                        id=f"{ref.get('ref_id', k)}/{sent_id}",
                        image=file_name,
                        regions=[],
                        target=target,
                        image_path=coco_image_path(images, file_name),
                        meta=RefSegInfo(
                            ref_id=ref.get("ref_id", k),
                            sent_id=sent_id,
                            sentence=sent["sent"],
                            image_id=ann["image_id"],
                            ann_ids=[int(ref["ann_id"])],
                            height=h,
                            width=w,
                            once=once_rle,
                        ),
                    )
                )
    if not samples and not errors.skipped:
        raise DataError(refs_path, f"no ref of split {split!r}")
    note = (
        f"{refs_path.name} + {instances_path.name}: split {split}, {n_refs} refs, {len(samples)} "
        f"sentences (every sentence a sample); {overlapping} refs' polygons overlap"
    )
    return ReadResult(samples, [refs_path, instances_path], [note], errors.skipped)
