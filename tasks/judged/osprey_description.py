"""``osprey_description``: Osprey-Bench detailed region description (GPT-4-judged).

``description_questions.json`` (``text`` with ``<region>`` and a polygon),
``description_answers.json`` (matched by ``question_id``), and ``description_prompt.json``
(the judge's context, matched by image as the released script does; it also gives each
image's height and width for the polygon).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalkit.errors import DataError
from evalkit.readers import ReadResult, register_reader, segmentation_region, typed_field
from evalkit.records import REGION_PLACEHOLDER, Sample

from .bench_files import Bench, bench_sample, questions_of


@register_reader("osprey_description")
def read_osprey_description(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    bench = Bench.load(data, "prompt")
    samples: list[Sample] = []
    for q in questions_of(bench):
        ctx = bench.contexts[q.image]
        height = typed_field(bench.context_path, ctx, "height", int, q.image)
        width = typed_field(bench.context_path, ctx, "width", int, q.image)
        region = segmentation_region(bench.questions, q.record.get("annotation"), height, width, q.where)
        if q.text.count(REGION_PLACEHOLDER) != 1:
            raise DataError(bench.questions, f"expected one {REGION_PLACEHOLDER} in the question", q.where)
        samples.append(bench_sample(bench, q, [region], q.text))
    return ReadResult(samples, bench.files(), [f"{bench.questions.name}: {len(samples)} questions"])
