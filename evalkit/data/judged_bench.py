"""GPT-4-judged region benchmarks: Osprey-Bench detailed description and Ferret-Bench.

Each sample holds what the model is asked (a prompt question with ``<region>``
placeholders and its regions) and what the judge is shown (the original question, the
reference answer as ``target`` — "Assistant 1" — the text context and the category that picks
the judge's rule), all in ``meta``. Sample id: the benchmark's ``question_id``.

* ``osprey_description`` — ``description_questions.json`` (``text`` with ``<region>`` and a
  polygon), ``description_answers.json`` (matched by ``question_id``), and
  ``description_prompt.json`` (the judge's context, matched by image as the released script
  does; it also gives each image's height and width for the polygon).
* ``ferret_bench`` — Ferret's ``question.jsonl`` / ``answer.jsonl`` / ``context.jsonl``. The
  questions carry normalised ``[x1, y1, x2, y2]`` boxes inline; with ``regions: inline`` each
  becomes a ``<region>`` with a pixel box, with ``regions: osprey`` the prompt and region come
  from Osprey's conversion (``ferret_box_refer_*.json``: ``<region>`` + a rectangle polygon,
  a mask for the model). The judge always sees Ferret's question text.

Ferret's files give no image size, so pixel regions need the image header: with no
``images`` folder (e.g. when scoring) samples have no regions, which scoring never needs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalkit.data import (
    ReadResult,
    image_path,
    load_json,
    load_jsonl,
    register_reader,
    require_path,
    typed_field,
)
from evalkit.errors import DataError
from evalkit.records import REGION_PLACEHOLDER, Sample
from evalkit.regions import Region, RegionError
from evalkit.render import image_size

_NUM = r"\s*(-?\d+(?:\.\d+)?)\s*"
INLINE_BOX = re.compile(r"\[" + ",".join([_NUM] * 4) + r"\]")


def _records(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(where, record) from a JSON list or a JSON-lines file."""
    if path.suffix == ".jsonl":
        rows = [(f"line {n}", obj) for n, obj in load_jsonl(path)]
    else:
        raw = load_json(path)
        if not isinstance(raw, list):
            raise DataError(path, "expected a JSON list of records")
        rows = [(f"#{k}", obj) for k, obj in enumerate(raw)]
    for where, obj in rows:
        if not isinstance(obj, dict):
            raise DataError(path, "a record must be an object", where)
    return rows


def _by_question_id(path: Path) -> dict[int, tuple[str, dict[str, Any]]]:
    out: dict[int, tuple[str, dict[str, Any]]] = {}
    for where, rec in _records(path):
        qid = typed_field(path, rec, "question_id", int, where)
        if qid in out:
            raise DataError(path, f"question_id {qid} appears twice", where)
        out[qid] = (where, rec)
    return out


def _context_by_image(path: Path, text_key: str) -> dict[str, dict[str, Any]]:
    # The released scripts look the context up by image name (last record wins).
    out: dict[str, dict[str, Any]] = {}
    for where, rec in _records(path):
        typed_field(path, rec, text_key, str, where)
        out[typed_field(path, rec, "image", str, where)] = rec
    return out


def _answer(answers: dict[int, tuple[str, dict[str, Any]]], path: Path, qid: int) -> str:
    if qid not in answers:
        raise DataError(path, f"no reference answer for question_id {qid}")
    where, rec = answers[qid]
    return str(typed_field(path, rec, "text", str, where))


def _polygon_region(path: Path, ann: Any, height: int, width: int, where: str) -> Region:
    if not isinstance(ann, dict) or "segmentation" not in ann:
        raise DataError(path, "annotation has no 'segmentation'", where)
    try:
        return Region.from_segmentation(ann["segmentation"], height, width)
    except RegionError as exc:
        raise DataError(path, f"invalid segmentation: {exc}", where) from exc


@register_reader("osprey_description")
def read_osprey_description(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    q_path = require_path(data, "questions")
    a_path = require_path(data, "answers")
    c_path = require_path(data, "context")
    answers = _by_question_id(a_path)
    contexts = _context_by_image(c_path, "prompt")
    images = data.get("images")
    samples: list[Sample] = []
    for where, rec in _records(q_path):
        qid = typed_field(q_path, rec, "question_id", int, where)
        where = f"{where} (question_id {qid})"
        image = typed_field(q_path, rec, "image", str, where)
        text = typed_field(q_path, rec, "text", str, where)
        if image not in contexts:
            raise DataError(c_path, f"no context for image {image} (question_id {qid})")
        ctx = contexts[image]
        height = typed_field(c_path, ctx, "height", int, image)
        width = typed_field(c_path, ctx, "width", int, image)
        region = _polygon_region(q_path, rec.get("annotation"), height, width, where)
        if text.count(REGION_PLACEHOLDER) != 1:
            raise DataError(q_path, f"expected one {REGION_PLACEHOLDER} in the question", where)
        samples.append(
            Sample(
                id=str(qid),
                image=image,
                regions=[region],
                target=_answer(answers, a_path, qid),
                image_path=image_path(images, image),
                meta={
                    "question": text,
                    "prompt_question": text,
                    "category": typed_field(q_path, rec, "category", str, where),
                    "context": ctx["prompt"],
                },
            )
        )
    files = [q_path, a_path, c_path]
    return ReadResult(samples, files, [f"{q_path.name}: {len(samples)} questions"])


def _sizes_available(images: Path | None) -> bool:
    return images is not None and images.is_dir()


@register_reader("ferret_bench")
def read_ferret_bench(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    mode = options.get("regions", "inline")
    if mode not in ("inline", "osprey"):
        raise DataError("<reader_args>", f"regions must be 'inline' or 'osprey', got {mode!r}")
    q_path = require_path(data, "questions")
    a_path = require_path(data, "answers")
    c_path = require_path(data, "context")
    answers = _by_question_id(a_path)
    contexts = _context_by_image(c_path, "text")
    images = data.get("images")
    with_regions = _sizes_available(images)
    osprey_path = data.get("osprey_questions") if mode == "osprey" else None
    osprey = _by_question_id(osprey_path) if osprey_path is not None else {}
    samples: list[Sample] = []
    for where, rec in _records(q_path):
        qid = typed_field(q_path, rec, "question_id", int, where)
        where = f"{where} (question_id {qid})"
        image = typed_field(q_path, rec, "image", str, where)
        text = typed_field(q_path, rec, "text", str, where)
        if image not in contexts:
            raise DataError(c_path, f"no context for image {image} (question_id {qid})")
        boxes = [tuple(float(v) for v in m.groups()) for m in INLINE_BOX.finditer(text)]
        if not boxes:
            raise DataError(q_path, "question has no [x1, y1, x2, y2] box", where)
        size = image_size(images / image, where) if with_regions and images is not None else None
        regions: list[Region] = []
        if mode == "inline":
            prompt_question = INLINE_BOX.sub(REGION_PLACEHOLDER, text)
            if size is not None:
                w, h = size
                try:
                    regions = [Region.from_box((b[0] * w, b[1] * h, b[2] * w, b[3] * h), h, w) for b in boxes]
                except RegionError as exc:
                    raise DataError(q_path, f"box outside the image: {exc}", where) from exc
        else:
            prompt_question = INLINE_BOX.sub(REGION_PLACEHOLDER, text)
            if osprey_path is not None:
                if qid not in osprey:
                    raise DataError(osprey_path, f"no converted question for question_id {qid}")
                o_where, o_rec = osprey[qid]
                prompt_question = typed_field(osprey_path, o_rec, "text", str, o_where)
                if size is not None:
                    w, h = size
                    regions = [_polygon_region(osprey_path, o_rec.get("annotation"), h, w, o_where)]
        samples.append(
            Sample(
                id=str(qid),
                image=image,
                regions=regions,
                target=_answer(answers, a_path, qid),
                image_path=image_path(images, image),
                meta={
                    "question": text,
                    "prompt_question": prompt_question,
                    "category": typed_field(q_path, rec, "category", str, where),
                    "context": contexts[image]["text"],
                    "boxes_normalized": [list(b) for b in boxes],
                },
            )
        )
    files = [p for p in (q_path, a_path, c_path, osprey_path) if p is not None]
    notes = [f"{q_path.name}: {len(samples)} questions, regions from {mode}"]
    if not with_regions:
        notes.append("no images folder: samples carry no pixel regions (scoring needs none)")
    return ReadResult(samples, files, notes)
