"""SPHINX-V's RefCOCOg brief-caption benchmark (PROTOCOLS_WAVE2.md §G).

* ``annotations`` — the ground truth, a COCO-caption dict as the released
  ``transfer_to_cococap_format.py`` writes it (``coco-caption/annotations/RefCOCOg_annotation.json``,
  shipped with the code; ``shared/fixtures/sphinx_v/RefCOCOg_brief_caption_gt.json`` is that
  file): ``{"1": [{"image_id": 1, "id": 1, "caption": ["a bush of plant behind middle woman"]}],
  ...}``, 4,896 entries = the RefCOCOg-umd val sentences, keyed by position (``index + 1``) in
  the eval file. Enough to score.
* ``questions`` — the eval file ``eval_dataset/Region_Level_Captioning/RefCOCOg_brief_caption.json``
  (SPHINX-V records, :mod:`.sphinx_v_json`: question, COCO ``xywh`` box, ``gt_answers``
  ``Region 1: caption\\n``), needed to run: its record ``k`` is the GT entry ``k + 1``; the
  reader checks that the caption its ``gt_answers`` gives is that entry's.

Sample id: the GT key (``"1"`` ... ``"4896"``); target: its captions.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalkit.errors import DataError
from evalkit.readers import ReadResult, load_json, register_reader, require_path
from evalkit.records import Sample

from .rebuild import QUESTIONS
from .region_lines import caption_lines
from .sphinx_v_json import SphinxVQuestion, record_sample

DATASET = "RefCOCOg_brief_caption"


def caption_dict(path: Path) -> dict[str, list[str]]:
    """key -> captions of a COCO-caption dict ``{key: [{"caption": str | [str]}, ...]}``."""
    raw = load_json(path)
    if not isinstance(raw, dict) or not raw:
        raise DataError(path, 'expected a COCO-caption dict {"1": [{"image_id", "id", "caption"}], ...}')
    out: dict[str, list[str]] = {}
    for key, entries in raw.items():
        captions: list[str] = []
        if not isinstance(entries, list):
            raise DataError(path, "an entry must be a list of caption records", repr(key))
        for k, entry in enumerate(entries):
            value = entry.get("caption") if isinstance(entry, dict) else None
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise DataError(path, "'caption' must be a string or a list of strings", f"{key!r}[{k}]")
            captions.extend(values)
        if not captions:
            raise DataError(path, "no caption", repr(key))
        out[str(key)] = captions
    return out


@register_reader("sphinx_v_captions")
def read_brief_captions(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    gt_path = require_path(data, "annotations")
    references = caption_dict(gt_path)
    questions = data.get("questions")
    if questions is None:
        question = QUESTIONS["brief_caption"]
        samples = [
            Sample(
                key,
                None,
                [],
                refs,
                meta=SphinxVQuestion(
                    dataset_name=DATASET, question_id=key, question=question, prompt_kind="box", vp=[]
                ),
            )
            for key, refs in references.items()
        ]
        note = f"{gt_path.name}: {len(samples)} references (no eval file: score, not run)"
        return ReadResult(samples, [gt_path], [note])
    records = load_json(questions)
    if not isinstance(records, list):
        raise DataError(questions, "expected SPHINX-V's JSON list of records")
    if len(records) != len(references):
        raise DataError(
            questions, f"{len(records)} records for {len(references)} ground-truth entries in {gt_path.name}"
        )
    images = data.get("images")
    sized = images if images is not None and images.is_dir() else None
    samples = []
    for k, rec in enumerate(records):
        key = str(k + 1)  # transfer_to_cococap_format.py: ann_dict[index + 1]
        if key not in references:
            raise DataError(gt_path, f"no ground-truth entry {key!r} for record #{k} of {questions.name}")
        sample = record_sample(questions, k, rec, "box", DATASET, images, sized, False)
        given = caption_lines(str(sample.target))
        if given != references[key]:
            raise DataError(
                questions,
                f"gt_answers gives {given!r}, {gt_path.name} entry {key!r} {references[key]!r}: "
                "not the eval file that ground truth was made from",
                f"#{k}",
            )
        sample.id, sample.target = key, references[key]
        samples.append(sample)
    note = f"{questions.name} + {gt_path.name}: {len(samples)} regions, one reference each"
    return ReadResult(samples, [gt_path, questions], [note])
