"""Ferret's LVIS binary-choice data (apple/ml-ferret ``3c9e5c9`` ``ferret/eval/model_lvis.py``
``LVISData_V1``; PROTOCOLS_WAVE2.md §C): one JSON line per object::

    {"id", "image_path" (its basename is looked up under the images folder), "width", "height",
     "name", "synonyms", "neg_class", "sample_point": [x, y] (pixels), "bbox",
     "bbox_norm": [x1, y1, x2, y2] in [0, 1], "free_shape_bbox_raw": [x1, y1, x2, y2] (pixels),
     "free_shape_segment_mask": W x H 0/1 array indexed [x][y] (optional)}

Sample id: the record's ``id``. The sample's region is the GT box (``bbox_norm`` x image
size); its ``meta`` keeps every visual prompt the line gives (point, box, free-form box and
mask) and the line's 0-based position, which decides the order the two names are offered in
(even: the GT first). The task's protocol picks the prompt kind (:mod:`.binary_choice`).

The ``questions`` key may instead be raw LVIS v1 val JSON: the records are then rebuilt with
:mod:`.ferret_lvis_build`'s seeded defaults (reader_args ``sample_objects``, ``seed``,
``free_form_seed``) and marked as rebuilt.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from evalkit.errors import DataError
from evalkit.metrics.binary_choice import ferret_synonyms
from evalkit.readers import (
    ReadResult,
    RecordErrors,
    image_path,
    load_json,
    load_jsonl,
    register_reader,
    require_path,
    typed_field,
)
from evalkit.records import Sample, SampleInfo
from evalkit.regions import Region, RegionError

from .ferret_lvis_build import build_ferret_records, build_note


class FerretChoice(SampleInfo):
    """One object of Ferret's LVIS file: the two names offered and every visual prompt given."""

    index: int  # 0-based position in the file: even -> the GT is <obj1>
    name: str
    synonyms: list[str]
    neg_class: str
    width: int
    height: int
    sample_point: list[float]
    bbox_norm: list[float]
    free_shape_bbox_raw: list[float] | None = None
    free_shape_rle: dict[str, Any] | None = None  # free_shape_segment_mask as COCO RLE (H x W)
    rebuilt: bool = False


def _numbers(path: Path, rec: dict[str, Any], key: str, n: int, where: str) -> list[float]:
    value = typed_field(path, rec, key, list, where)
    if len(value) != n or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise DataError(path, f"field {key!r} must be {n} numbers", where)
    return [float(v) for v in value]


@register_reader("ferret_lvis")
def read_ferret_lvis(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    path = require_path(data, "questions")
    images = data.get("images")
    errors = RecordErrors(options)
    notes: list[str] = []
    rebuilt = path.suffix != ".jsonl"
    if rebuilt:
        raw = load_json(path)
        if not isinstance(raw, dict) or not {"images", "annotations", "categories"} <= raw.keys():
            raise DataError(path, "expected Ferret's lvis_eval.jsonl (JSON lines) or raw LVIS v1 val JSON")
        n_objects = int(options.get("sample_objects", 1000))
        seed = int(options.get("seed", 42))
        free_seed = int(options.get("free_form_seed", 0))
        built, n_eligible = build_ferret_records(raw, path, n_objects, seed, free_seed)
        rows = [(f"object {r['id']}", r) for r in built]
        notes.append(f"{path.name}: " + build_note(len(built), n_eligible, n_objects, seed, free_seed))
    else:
        rows = [(f"line {n}", obj) for n, obj in load_jsonl(path)]
    samples = read_ferret_records(path, rows, images, rebuilt, errors)
    if not rebuilt:
        notes.append(f"{path.name}: Ferret LVIS binary choice, {len(samples)} objects")
    return ReadResult(samples, [path], notes, errors.skipped)


def read_ferret_records(
    path: Path, rows: list[tuple[str, Any]], images: Path | None, rebuilt: bool, errors: RecordErrors
) -> list[Sample]:
    """Ferret-schema records (``(where, record)`` in file order) as samples."""
    samples: list[Sample] = []
    for index, (where, rec) in enumerate(rows):
        with errors.guard():
            samples.append(_sample(path, index, where, rec, images, rebuilt))
    return samples


def _sample(path: Path, index: int, where: str, rec: Any, images: Path | None, rebuilt: bool) -> Sample:
    if not isinstance(rec, dict):
        raise DataError(path, "a record must be an object", where)
    rid = typed_field(path, rec, "id", (int, str), where)
    where = f"{where} (id {rid})"
    file_name = PurePosixPath(typed_field(path, rec, "image_path", str, where)).name
    w = typed_field(path, rec, "width", int, where)
    h = typed_field(path, rec, "height", int, where)
    name = typed_field(path, rec, "name", str, where)
    negative = typed_field(path, rec, "neg_class", str, where)
    synonyms = typed_field(path, rec, "synonyms", list, where)
    if not all(isinstance(s, str) for s in synonyms):
        raise DataError(path, "field 'synonyms' must be a list of strings", where)
    try:
        ferret_synonyms(synonyms)
    except ValueError as exc:
        raise DataError(path, str(exc), where) from exc
    point = _numbers(path, rec, "sample_point", 2, where)
    norm = _numbers(path, rec, "bbox_norm", 4, where)
    free = (
        _numbers(path, rec, "free_shape_bbox_raw", 4, where)
        if rec.get("free_shape_bbox_raw") is not None
        else None
    )
    rle = None
    if rec.get("free_shape_segment_mask") is not None:
        mask = np.asarray(rec["free_shape_segment_mask"])
        if mask.shape != (w, h):  # model_lvis.py asserts mask.shape == (raw_w, raw_h)
            raise DataError(
                path, f"free_shape_segment_mask has shape {mask.shape}, expected (W, H) = {(w, h)}", where
            )
        rle = Region.from_mask((mask.T != 0).astype(np.uint8)).rle
    try:
        box = Region.from_box((norm[0] * w, norm[1] * h, norm[2] * w, norm[3] * h), h, w)
    except RegionError as exc:
        raise DataError(path, f"invalid bbox_norm: {exc}", where) from exc
    return Sample(
        id=str(rid),
        image=file_name,
        regions=[box],
        target=name,
        image_path=image_path(images, file_name),
        meta=FerretChoice(
            index=index,
            name=name,
            synonyms=synonyms,
            neg_class=negative,
            width=w,
            height=h,
            sample_point=point,
            bbox_norm=norm,
            free_shape_bbox_raw=free,
            free_shape_rle=rle,
            rebuilt=rebuilt,
        ),
    )
