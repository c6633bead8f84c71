"""The files of the GPT-4-judged region benchmarks, read once for both readers.

Each sample holds what the model is asked (a prompt question with ``<region>``
placeholders and its regions) and what the judge is shown (the original question, the
reference answer as ``target`` — "Assistant 1" — the text context and the category that picks
the judge's rule), all in ``meta``. Sample id: the benchmark's ``question_id``. The readers
are :mod:`.osprey_description` and :mod:`.ferret_bench`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.errors import DataError
from evalkit.readers import (
    image_path,
    load_json,
    load_jsonl,
    require_path,
    typed_field,
)
from evalkit.records import Sample, SampleInfo
from evalkit.regions import Region

_NUM = r"\s*(-?\d+(?:\.\d+)?)\s*"
INLINE_BOX = re.compile(r"\[" + ",".join([_NUM] * 4) + r"\]")


class JudgedInfo(SampleInfo):
    """What every judged protocol reads: the question as the judge sees it, and as the model
    is asked it (with ``<region>`` placeholders)."""

    question: str
    prompt_question: str


class JudgedQuestion(JudgedInfo):
    category: str  # picks the judge's rule (Osprey-Bench: detailed; Ferret: refer_desc / refer_reason)
    context: Any  # the judge's text context of the image
    boxes_normalized: list[list[float]] | None = None  # Ferret's inline boxes


def records_of(path: Path) -> list[tuple[str, dict[str, Any]]]:
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


def by_question_id(path: Path) -> dict[int, tuple[str, dict[str, Any]]]:
    out: dict[int, tuple[str, dict[str, Any]]] = {}
    for where, rec in records_of(path):
        qid = typed_field(path, rec, "question_id", int, where)
        if qid in out:
            raise DataError(path, f"question_id {qid} appears twice", where)
        out[qid] = (where, rec)
    return out


def context_by_image(path: Path, text_key: str) -> dict[str, dict[str, Any]]:
    # The released scripts look the context up by image name (last record wins).
    out: dict[str, dict[str, Any]] = {}
    for where, rec in records_of(path):
        typed_field(path, rec, text_key, str, where)
        out[typed_field(path, rec, "image", str, where)] = rec
    return out


def answer_of(answers: dict[int, tuple[str, dict[str, Any]]], path: Path, qid: int) -> str:
    if qid not in answers:
        raise DataError(path, f"no reference answer for question_id {qid}")
    where, rec = answers[qid]
    return str(typed_field(path, rec, "text", str, where))


@dataclass
class Bench:
    """The three files both benchmarks have, loaded, and the images folder."""

    questions: Path
    answers_path: Path
    context_path: Path
    answers: dict[int, tuple[str, dict[str, Any]]]
    contexts: dict[str, dict[str, Any]]  # image -> context record
    context_key: str  # the context record's text field
    images: Path | None

    @classmethod
    def load(cls, data: Mapping[str, Path | None], context_key: str) -> Bench:
        q_path = require_path(data, "questions")
        a_path = require_path(data, "answers")
        c_path = require_path(data, "context")
        answers = by_question_id(a_path)
        contexts = context_by_image(c_path, context_key)
        return cls(q_path, a_path, c_path, answers, contexts, context_key, data.get("images"))

    def files(self) -> list[Path]:
        return [self.questions, self.answers_path, self.context_path]


@dataclass
class Question:
    qid: int
    where: str  # the record's position and question_id, for errors
    image: str
    text: str
    record: dict[str, Any]


def questions_of(bench: Bench) -> Iterator[Question]:
    """The question records, each checked to have an id, image, text and a context."""
    for where, rec in records_of(bench.questions):
        qid = typed_field(bench.questions, rec, "question_id", int, where)
        where = f"{where} (question_id {qid})"
        image = typed_field(bench.questions, rec, "image", str, where)
        text = typed_field(bench.questions, rec, "text", str, where)
        if image not in bench.contexts:
            raise DataError(bench.context_path, f"no context for image {image} (question_id {qid})")
        yield Question(qid, where, image, text, rec)


def bench_sample(
    bench: Bench,
    q: Question,
    regions: list[Region],
    prompt_question: str,
    boxes_normalized: list[list[float]] | None = None,
) -> Sample:
    return Sample(
        id=str(q.qid),
        image=q.image,
        regions=regions,
        target=answer_of(bench.answers, bench.answers_path, q.qid),
        image_path=image_path(bench.images, q.image),
        meta=JudgedQuestion(
            question=q.text,
            prompt_question=prompt_question,
            category=typed_field(bench.questions, q.record, "category", str, q.where),
            context=bench.contexts[q.image][bench.context_key],
            boxes_normalized=boxes_normalized,
        ),
    )
