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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.data import (
    ReadResult,
    image_path,
    load_json,
    load_jsonl,
    register_reader,
    require_path,
    segmentation_region,
    typed_field,
)
from evalkit.errors import DataError
from evalkit.images import image_size
from evalkit.records import REGION_PLACEHOLDER, Sample
from evalkit.regions import Region, RegionError

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


@dataclass
class _Bench:
    """The three files both benchmarks have, loaded, and the images folder."""

    questions: Path
    answers_path: Path
    context_path: Path
    answers: dict[int, tuple[str, dict[str, Any]]]
    contexts: dict[str, dict[str, Any]]  # image -> context record
    context_key: str  # the context record's text field
    images: Path | None

    @classmethod
    def load(cls, data: Mapping[str, Path | None], context_key: str) -> _Bench:
        q_path = require_path(data, "questions")
        a_path = require_path(data, "answers")
        c_path = require_path(data, "context")
        answers = _by_question_id(a_path)
        contexts = _context_by_image(c_path, context_key)
        return cls(q_path, a_path, c_path, answers, contexts, context_key, data.get("images"))

    def files(self) -> list[Path]:
        return [self.questions, self.answers_path, self.context_path]


@dataclass
class _Question:
    qid: int
    where: str  # the record's position and question_id, for errors
    image: str
    text: str
    record: dict[str, Any]


def _questions(bench: _Bench) -> Iterator[_Question]:
    """The question records, each checked to have an id, image, text and a context."""
    for where, rec in _records(bench.questions):
        qid = typed_field(bench.questions, rec, "question_id", int, where)
        where = f"{where} (question_id {qid})"
        image = typed_field(bench.questions, rec, "image", str, where)
        text = typed_field(bench.questions, rec, "text", str, where)
        if image not in bench.contexts:
            raise DataError(bench.context_path, f"no context for image {image} (question_id {qid})")
        yield _Question(qid, where, image, text, rec)


def _sample(bench: _Bench, q: _Question, regions: list[Region], prompt_question: str, **meta: Any) -> Sample:
    return Sample(
        id=str(q.qid),
        image=q.image,
        regions=regions,
        target=_answer(bench.answers, bench.answers_path, q.qid),
        image_path=image_path(bench.images, q.image),
        meta={
            "question": q.text,
            "prompt_question": prompt_question,
            "category": typed_field(bench.questions, q.record, "category", str, q.where),
            "context": bench.contexts[q.image][bench.context_key],
            **meta,
        },
    )


@register_reader("osprey_description")
def read_osprey_description(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    bench = _Bench.load(data, "prompt")
    samples: list[Sample] = []
    for q in _questions(bench):
        ctx = bench.contexts[q.image]
        height = typed_field(bench.context_path, ctx, "height", int, q.image)
        width = typed_field(bench.context_path, ctx, "width", int, q.image)
        region = segmentation_region(bench.questions, q.record.get("annotation"), height, width, q.where)
        if q.text.count(REGION_PLACEHOLDER) != 1:
            raise DataError(bench.questions, f"expected one {REGION_PLACEHOLDER} in the question", q.where)
        samples.append(_sample(bench, q, [region], q.text))
    return ReadResult(samples, bench.files(), [f"{bench.questions.name}: {len(samples)} questions"])


@register_reader("ferret_bench")
def read_ferret_bench(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    mode = options.get("regions", "inline")
    if mode not in ("inline", "osprey"):
        raise DataError("<reader_args>", f"regions must be 'inline' or 'osprey', got {mode!r}")
    bench = _Bench.load(data, "text")
    sized = bench.images if bench.images is not None and bench.images.is_dir() else None
    osprey_path = data.get("osprey_questions") if mode == "osprey" else None
    osprey = _by_question_id(osprey_path) if osprey_path is not None else {}
    samples: list[Sample] = []
    for q in _questions(bench):
        boxes = [tuple(float(v) for v in m.groups()) for m in INLINE_BOX.finditer(q.text)]
        if not boxes:
            raise DataError(bench.questions, "question has no [x1, y1, x2, y2] box", q.where)
        size = image_size(sized / q.image, q.where) if sized is not None else None
        regions: list[Region] = []
        prompt_question = INLINE_BOX.sub(REGION_PLACEHOLDER, q.text)
        if mode == "inline":
            if size is not None:
                w, h = size
                try:
                    regions = [Region.from_box((b[0] * w, b[1] * h, b[2] * w, b[3] * h), h, w) for b in boxes]
                except RegionError as exc:
                    raise DataError(bench.questions, f"box outside the image: {exc}", q.where) from exc
        elif osprey_path is not None:
            if q.qid not in osprey:
                raise DataError(osprey_path, f"no converted question for question_id {q.qid}")
            o_where, o_rec = osprey[q.qid]
            prompt_question = typed_field(osprey_path, o_rec, "text", str, o_where)
            if size is not None:
                w, h = size
                regions = [segmentation_region(osprey_path, o_rec.get("annotation"), h, w, o_where)]
        samples.append(_sample(bench, q, regions, prompt_question, boxes_normalized=[list(b) for b in boxes]))
    files = bench.files() + ([osprey_path] if osprey_path is not None else [])
    notes = [f"{bench.questions.name}: {len(samples)} questions, regions from {mode}"]
    if sized is None:
        notes.append("no images folder: samples carry no pixel regions (scoring needs none)")
    return ReadResult(samples, files, notes)
