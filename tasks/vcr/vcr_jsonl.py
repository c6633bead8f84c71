"""VCR 1.0 annotations (rowanz/r2c ``77813d9`` ``dataloaders/vcr.py``): ``val.jsonl``, one
question per line::

    {"movie", "objects": [names], "img_fn", "metadata_fn", "question": [tokens],
     "answer_choices": [4 x [tokens]], "answer_label": 0..3,
     "rationale_choices": [4 x [tokens]], "rationale_label": 0..3, "annot_id": "val-N", ...}

A token that is a list of ints (``[2]``, ``[0, 3]``) refers to detections by 0-based index into
``objects``. Each image's ``metadata_fn`` JSON (under the images folder ``vcr1images/``) gives
``boxes`` (``[x1, y1, x2, y2, score]``), ``segms`` (polygons per object), ``width`` and
``height``: the objects' regions — boxes by default, ``reader_args: {objects: mask}`` for the
polygons as masks. Without the images folder (scoring) samples carry no regions.

Sample id: ``annot_id``. ``meta``: the tokens, labels and object names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalkit.errors import DataError
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

Token = str | list[int]


class VcrQuestion(SampleInfo):
    objects: list[str]
    question: list[Token]
    answer_choices: list[list[Token]]
    answer_label: int
    rationale_choices: list[list[Token]]
    rationale_label: int


def _tokens(path: Path, value: Any, n_objects: int, where: str, what: str) -> list[Token]:
    if not isinstance(value, list) or not value:
        raise DataError(path, f"{what} must be a non-empty token list", where)
    for token in value:
        if isinstance(token, list):
            if not token or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_objects for i in token
            ):
                raise DataError(
                    path, f"{what}: object reference {token} is not an index into 'objects'", where
                )
        elif not isinstance(token, str):
            raise DataError(path, f"{what}: a token must be a string or a list of object indices", where)
    return value


def _choices(path: Path, rec: dict[str, Any], key: str, n_objects: int, where: str) -> list[list[Token]]:
    value = typed_field(path, rec, key, list, where)
    if len(value) != 4:
        raise DataError(path, f"{key!r} must hold 4 choices, has {len(value)}", where)
    return [_tokens(path, c, n_objects, where, f"{key}[{k}]") for k, c in enumerate(value)]


def _label(path: Path, rec: dict[str, Any], key: str, where: str) -> int:
    value = typed_field(path, rec, key, int, where)
    if not 0 <= value <= 3:
        raise DataError(path, f"{key!r} must be 0..3, got {value}", where)
    return int(value)


def object_regions(meta_path: Path, n_objects: int, kind: str, where: str) -> list[Region]:
    meta = load_json(meta_path)
    if not isinstance(meta, dict):
        raise DataError(meta_path, "expected VCR metadata {boxes, segms, width, height}")
    w = typed_field(meta_path, meta, "width", int, where)
    h = typed_field(meta_path, meta, "height", int, where)
    field = "boxes" if kind == "box" else "segms"
    items = typed_field(meta_path, meta, field, list, where)
    if len(items) < n_objects:
        raise DataError(meta_path, f"{len(items)} {field} for {n_objects} objects", where)
    regions = []
    for k, item in enumerate(items[:n_objects]):
        try:
            if kind == "box":
                regions.append(Region.from_box(item[:4], h, w))
            else:  # a list of polygons, each [[x, y], ...]
                polygons = [[float(c) for point in poly for c in point] for poly in item if len(poly) >= 3]
                regions.append(Region.from_polygons(polygons, h, w))
        except (RegionError, TypeError, IndexError) as exc:
            raise DataError(meta_path, f"object {k}: invalid {field[:-1]}: {exc}", where) from exc
    return regions


@register_reader("vcr_jsonl")
def read_vcr(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    path = require_path(data, "annotations")
    images = data.get("images")
    sized = images if images is not None and images.is_dir() else None
    kind = str(options.get("objects", "box"))
    if kind not in ("box", "mask"):
        raise DataError("<reader_args>", f"objects must be 'box' or 'mask', got {kind!r}")
    errors = RecordErrors(options)
    samples: list[Sample] = []
    for lineno, rec in load_jsonl(path):
        where = f"line {lineno}"
        with errors.guard():
            if not isinstance(rec, dict):
                raise DataError(path, "a record must be an object", where)
            annot_id = typed_field(path, rec, "annot_id", str, where)
            where = f"line {lineno} ({annot_id})"
            objects = typed_field(path, rec, "objects", list, where)
            if not all(isinstance(o, str) for o in objects):
                raise DataError(path, "'objects' must be names", where)
            img_fn = typed_field(path, rec, "img_fn", str, where)
            meta_fn = typed_field(path, rec, "metadata_fn", str, where)
            info = VcrQuestion(
                objects=objects,
                question=_tokens(path, rec.get("question"), len(objects), where, "question"),
                answer_choices=_choices(path, rec, "answer_choices", len(objects), where),
                answer_label=_label(path, rec, "answer_label", where),
                rationale_choices=_choices(path, rec, "rationale_choices", len(objects), where),
                rationale_label=_label(path, rec, "rationale_label", where),
            )
            regions = object_regions(sized / meta_fn, len(objects), kind, where) if sized is not None else []
            samples.append(
                Sample(annot_id, img_fn, regions, info.answer_label, image_path(images, img_fn), info)
            )
    note = f"{path.name}: {len(samples)} questions" + (
        f", objects as {kind} regions" if sized is not None else ""
    )
    return ReadResult(samples, [path], [note], errors.skipped)
