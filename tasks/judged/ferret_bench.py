"""``ferret_bench``: Ferret-Bench referring description / reasoning (GPT-4-judged).

Ferret's ``question.jsonl`` / ``answer.jsonl`` / ``context.jsonl``. The questions carry
normalised ``[x1, y1, x2, y2]`` boxes inline; with ``regions: inline`` each becomes a
``<region>`` with a pixel box, with ``regions: osprey`` the prompt and region come from
Osprey's conversion (``ferret_box_refer_*.json``: ``<region>`` + a rectangle polygon, a mask
for the model). The judge always sees Ferret's question text.

Ferret's files give no image size, so pixel regions need the image header: with no
``images`` folder (e.g. when scoring) samples have no regions, which scoring never needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalkit.errors import DataError
from evalkit.images import image_size
from evalkit.readers import ReadResult, register_reader, segmentation_region, typed_field
from evalkit.records import REGION_PLACEHOLDER, Sample
from evalkit.regions import Region, RegionError

from .bench_files import INLINE_BOX, Bench, bench_sample, by_question_id, questions_of


@register_reader("ferret_bench")
def read_ferret_bench(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    mode = options.get("regions", "inline")
    if mode not in ("inline", "osprey"):
        raise DataError("<reader_args>", f"regions must be 'inline' or 'osprey', got {mode!r}")
    bench = Bench.load(data, "text")
    sized = bench.images if bench.images is not None and bench.images.is_dir() else None
    osprey_path = data.get("osprey_questions") if mode == "osprey" else None
    osprey = by_question_id(osprey_path) if osprey_path is not None else {}
    samples: list[Sample] = []
    for q in questions_of(bench):
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
        samples.append(
            bench_sample(bench, q, regions, prompt_question, boxes_normalized=[list(b) for b in boxes])
        )
    files = bench.files() + ([osprey_path] if osprey_path is not None else [])
    notes = [f"{bench.questions.name}: {len(samples)} questions, regions from {mode}"]
    if sized is None:
        notes.append("no images folder: samples carry no pixel regions (scoring needs none)")
    return ReadResult(samples, files, notes)
