"""``llava_bench``: LLaVA-Bench (COCO), 90 questions on 30 COCO val2014 images (SPHINX-V Table 7;
PROTOCOLS_WAVE2.md §E).

LLaVA's ``playground/data/coco2014_val_qa_eval/qa90_questions.jsonl`` (``question_id``,
``image``, ``text``, ``category`` conv / detail / complex), ``qa90_gpt4_answer.jsonl`` (the
reference answers, matched by ``question_id``) and ``llava/eval/table/caps_boxes_coco2014_val_80.jsonl``
(per image: five ``captions`` and ``instances`` with normalised boxes). The judge's context is
built as ``eval_gpt_review_visual.py`` builds it: ``'\\n'.join(captions)``, a blank line, then
one ``f'{category}: {bbox}'`` line per instance (the box as Python prints the list).

The benchmark has no region. SPHINX-V "employ[s] bounding boxes of nearly full-image size as
visual prompts" (exact box unknown): the protocol adds the whole image ``[0, 0, W, H]`` by
default (:mod:`.llava_review`), for which the reader takes the image size from its header
(no images folder: no size, as scoring needs none). Sample id: ``question_id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalkit.errors import DataError
from evalkit.images import image_size
from evalkit.readers import ReadResult, image_path, register_reader, require_path, typed_field
from evalkit.records import Sample

from .bench_files import JudgedQuestion, answer_of, by_question_id, records_of

CATEGORIES = ("conv", "detail", "complex")


class LlavaQuestion(JudgedQuestion):
    width: int | None = None  # the image's size (from its header), for the full-image box
    height: int | None = None


def judge_context(path: Path, record: dict[str, Any], where: str) -> str:
    """``cap_str + '\\n\\n' + box_str`` of ``eval_gpt_review_visual.py``."""
    captions = typed_field(path, record, "captions", list, where)
    instances = typed_field(path, record, "instances", list, where)
    if not all(isinstance(c, str) for c in captions):
        raise DataError(path, "'captions' must be strings", where)
    lines = []
    for k, inst in enumerate(instances):
        if not isinstance(inst, dict) or not isinstance(inst.get("category"), str) or "bbox" not in inst:
            raise DataError(path, "an instance needs 'category' and 'bbox'", f"{where} instance {k}")
        lines.append(f"{inst['category']}: {inst['bbox']}")
    return "\n".join(captions) + "\n\n" + "\n".join(lines)


@register_reader("llava_bench")
def read_llava_bench(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    q_path = require_path(data, "questions")
    a_path = require_path(data, "answers")
    c_path = require_path(data, "context")
    images = data.get("images")
    sized = images if images is not None and images.is_dir() else None
    answers = by_question_id(a_path)
    contexts: dict[str, str] = {}
    for where, rec in records_of(c_path):
        image = typed_field(c_path, rec, "image", str, where)
        contexts[image] = judge_context(c_path, rec, where)  # the script: last record wins
    samples: list[Sample] = []
    question_order: list[int] = []
    for where, rec in records_of(q_path):
        qid = typed_field(q_path, rec, "question_id", int, where)
        where = f"{where} (question_id {qid})"
        image = typed_field(q_path, rec, "image", str, where)
        text = typed_field(q_path, rec, "text", str, where)
        category = typed_field(q_path, rec, "category", str, where)
        if category not in CATEGORIES:
            raise DataError(q_path, f"category {category!r} is none of {', '.join(CATEGORIES)}", where)
        if image not in contexts:
            raise DataError(c_path, f"no context for image {image} (question_id {qid})")
        size = image_size(sized / image, where) if sized is not None else None
        question_order.append(qid)
        samples.append(
            Sample(
                id=str(qid),
                image=image,
                regions=[],
                target=answer_of(answers, a_path, qid),
                image_path=image_path(images, image),
                meta=LlavaQuestion(
                    question=text,
                    prompt_question=text,
                    category=category,
                    context=contexts[image],
                    width=size[0] if size else None,
                    height=size[1] if size else None,
                ),
            )
        )
    answer_order = [qid for qid in answers]
    aligned = answer_order[: len(question_order)] == question_order
    notes = [
        f"{q_path.name}: {len(samples)} questions; answers matched by question_id "
        + (
            "(the files' line orders agree: the released zip pairs them alike)"
            if aligned
            else "(their line orders DIFFER: the released zip would pair other answers)"
        )
    ]
    return ReadResult(samples, [q_path, a_path, c_path], notes)
