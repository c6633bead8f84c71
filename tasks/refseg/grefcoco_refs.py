"""gRefCOCO ground truth in its released format: ``grefs(unc).json`` (or ``grefs(unc).p``) +
``instances.json``, read as MGLMM's ``GReferCOCOValDataset`` reads it (d2abee8).

One sample per ref of ``split`` (file order), with only its **first** sentence
(``sampled_sents = [sents[0]]``): id = the ``ref_id``. A ref's ``ann_id`` is a list (an int is
one element, as ``G_REFER._toList``); ``[-1]`` marks a no-target expression, whose mask is
empty. Otherwise the target is the union of the referred objects (each object's polygons
summed, the objects OR-ed, then ``> 0`` by the protocol's merge: ``enable_merge``). Refs
without a sentence are left out and counted (the reference would draw another sample at
random).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.errors import DataError
from evalkit.readers import (
    ReadResult,
    RecordErrors,
    coco_image_path,
    load_json,
    register_reader,
    require_path,
)
from evalkit.records import Sample

from ..caption.refcocog_cap import load_refs
from .refer_seg import RefSegInfo, coverage, encode, image_of, instances_index

NO_TARGET = -1


def load_grefs(path: Path) -> list[dict[str, Any]]:
    """``grefs(unc).json`` (JSON) or ``grefs(unc).p`` (a pickle of plain data): G_REFER
    reads the pickle when there is one, else the JSON."""
    if path.suffix != ".json":
        return load_refs(path)
    raw = load_json(path)
    if not isinstance(raw, list):
        raise DataError(path, f"expected a list of refs, found {type(raw).__name__}")
    return raw


@register_reader("grefcoco_refs")
def read_grefcoco(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    grefs_path = require_path(data, "grefs")
    instances_path = require_path(data, "instances")
    images = data.get("images")
    split = str(options.get("split", "val"))
    errors = RecordErrors(options)
    refs = load_grefs(grefs_path)
    anns, image_records = instances_index(instances_path)
    samples: list[Sample] = []
    without_sentence = 0
    for k, ref in enumerate(refs):
        where = f"ref #{k}"
        if not isinstance(ref, dict) or not {"split", "ann_id", "sentences", "image_id"} <= ref.keys():
            raise DataError(grefs_path, "ref needs split, ann_id, image_id, sentences", where)
        if ref["split"] != split:
            continue
        where = f"{where} (ref_id {ref.get('ref_id')})"
        with errors.guard():
            sentences = ref["sentences"]
            if not sentences:
                without_sentence += 1
                continue
            first = sentences[0]
            if not isinstance(first, dict) or not isinstance(first.get("sent"), str):
                raise DataError(grefs_path, "first sentence has no string 'sent'", where)
            ann_ids = ref["ann_id"] if isinstance(ref["ann_id"], list) else [ref["ann_id"]]
            if not all(isinstance(a, int) and not isinstance(a, bool) for a in ann_ids) or not ann_ids:
                raise DataError(grefs_path, "'ann_id' must be an integer or a list of integers", where)
            file_name, h, w = image_of(instances_path, image_records, ref["image_id"], where)
            no_target = NO_TARGET in ann_ids
            if no_target and len(ann_ids) != 1:
                raise DataError(grefs_path, "a no-target ref (ann_id -1) names other objects too", where)
            merged = np.zeros((h, w), dtype=np.int64)
            if not no_target:
                for ann_id in ann_ids:
                    ann = anns.get(ann_id)
                    if ann is None:
                        raise DataError(
                            instances_path, f"annotation {ann_id} of a {split} ref is missing", where
                        )
                    merged |= coverage(instances_path, ann.get("segmentation"), h, w, f"annotation {ann_id}")
            samples.append(
                Sample(
                    id=str(ref.get("ref_id", k)),
                    image=file_name,
                    regions=[],
                    target=encode(merged > 0),
                    image_path=coco_image_path(images, file_name),
                    meta=RefSegInfo(
                        ref_id=ref.get("ref_id", k),
                        sent_id=first.get("sent_id"),
                        sentence=first["sent"],
                        image_id=ref["image_id"],
                        ann_ids=[int(a) for a in ann_ids],
                        height=h,
                        width=w,
                        no_target=no_target,
                    ),
                )
            )
    if not samples and not errors.skipped:
        raise DataError(grefs_path, f"no ref of split {split!r}")
    n_empty = sum(1 for s in samples if s.info(RefSegInfo).no_target)
    note = (
        f"{grefs_path.name} + {instances_path.name}: split {split}, {len(samples)} refs (first "
        f"sentence each), {n_empty} without target"
        + (f"; {without_sentence} refs without a sentence left out" if without_sentence else "")
    )
    return ReadResult(samples, [grefs_path, instances_path], [note], errors.skipped)
