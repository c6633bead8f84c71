"""SPHINX-V's eval files (Draw-and-Understand ``accessory/eval``, PROTOCOLS_WAVE2.md §A).

A JSON list, one record per image with all its regions in one question::

    {"image_name": "000000490182.jpg", "question": "Please identify the labels of each marked
     region in the image.", "question_id": 490182, "dataset_name": "LVIS_box",
     "gt_answers": "Region 1: baseball_base\\nRegion 2: baseball_glove...",
     "bbox": [[x, y, w, h], ...]}                 # point files: "points": [[x, y], ...]

Sample id: ``<dataset_name>/<question_id>``; target: ``gt_answers`` as written; ``meta``: the
question, the prompt kind and every visual prompt as the file gives it (COCO ``xywh`` pixel
boxes or ``[x, y]`` pixel points — never resampled). The files carry no image size, so
regions need the image header: with no ``images`` folder (scoring) samples carry no regions,
which scoring never needs; a rebuilt file's ``height``/``width`` serve as well.

With ``reader_args: {rebuild: true}`` the ``annotations`` file may instead be Osprey's
``*_val_1k_category.json`` or raw LVIS v1 / PACO-LVIS val: the records are then rebuilt
(:mod:`.rebuild`) and every sample says so (``meta.rebuilt``, and the reader's note).

reader_args: ``dataset_name`` (the file's, checked: an ``LVIS_point`` file given to a box task
is an error), ``prompt_kind`` (``box`` | ``point``), ``question`` (the question of rebuilt
records); for rebuilding ``sample_images``, ``seed``, ``parts_only``, ``point_seed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from evalkit.errors import DataError
from evalkit.images import image_size
from evalkit.readers import (
    ReadResult,
    RecordErrors,
    image_path,
    load_json,
    register_reader,
    require_path,
    typed_field,
)
from evalkit.records import Sample, SampleInfo
from evalkit.regions import Region, RegionError

from .rebuild import QUESTIONS, rebuild_from, rule_note

FIELDS = {"box": "bbox", "point": "points"}


class SphinxVQuestion(SampleInfo):
    """One SPHINX-V eval record: the question and every visual prompt as the file gives it."""

    dataset_name: str
    question_id: int | str
    question: str
    prompt_kind: Literal["box", "point"]
    vp: list[list[float]]  # COCO xywh boxes or [x, y] points, all of them (also those not shown)
    rebuilt: bool = False  # the record was rebuilt from Osprey / raw LVIS-PACO data (rebuild.py)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_sphinx_v_file(raw: Any) -> bool:
    return isinstance(raw, list) and (not raw or (isinstance(raw[0], dict) and "gt_answers" in raw[0]))


@register_reader("sphinx_v_json")
def read_sphinx_v(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    path = require_path(data, "annotations")
    expected = options.get("dataset_name")
    kind = str(options.get("prompt_kind", "box"))
    if kind not in FIELDS:
        raise DataError("<reader_args>", f"prompt_kind must be 'box' or 'point', got {kind!r}")
    images = data.get("images")
    sized = images if images is not None and images.is_dir() else None
    errors = RecordErrors(options)
    raw = load_json(path)
    notes: list[str] = []
    files = [path]
    rebuilt = not _is_sphinx_v_file(raw)
    if rebuilt:
        if not options.get("rebuild", False):
            raise DataError(
                path,
                "expected SPHINX-V's eval file (a JSON list of records with 'gt_answers'); for "
                "Osprey's 1K subsets or raw LVIS / PACO the task's card must allow rebuilding",
            )
        question = str(options.get("question", QUESTIONS[kind]))
        raw, source = rebuild_from(data, options, str(expected), kind, question)
        seed = int(options.get("point_seed", 0))
        notes += source.notes
        notes.append(
            f"{path.name}: SPHINX-V records REBUILT (not the authors' file): {len(raw)} images; "
            f"{rule_note(kind, seed)}; question {question!r}"
        )
    samples: list[Sample] = []
    seen: set[str] = set()
    for k, rec in enumerate(raw):
        with errors.guard():
            sample = record_sample(path, k, rec, kind, expected, images, sized, rebuilt)
            if sample.id in seen:
                raise DataError(path, f"question_id appears twice ({sample.id})", f"#{k}")
            seen.add(sample.id)
            samples.append(sample)
    n_regions = sum(len(s.info(SphinxVQuestion).vp) for s in samples)
    if not rebuilt:
        notes.append(f"{path.name}: SPHINX-V eval file, {len(samples)} images, {n_regions} regions")
    if sized is None and not rebuilt:
        notes.append("no images folder: samples carry no pixel regions (scoring needs none)")
    return ReadResult(samples, files, notes, errors.skipped)


def record_sample(
    path: Path,
    k: int,
    rec: Any,
    kind: str,
    expected: Any,
    images: Path | None,
    sized: Path | None,
    rebuilt: bool,
) -> Sample:
    """Record ``k`` of a SPHINX-V file as a sample (regions when the image size is known)."""
    where = f"#{k}"
    if not isinstance(rec, dict):
        raise DataError(path, "a record must be an object", where)
    qid = typed_field(path, rec, "question_id", (int, str), where)
    where = f"#{k} (question_id {qid})"
    name = str(rec.get("dataset_name", expected))
    if expected is not None and name != expected:
        raise DataError(path, f"a {name} record, but this task reads {expected} files", where)
    image = typed_field(path, rec, "image_name", str, where)
    question = typed_field(path, rec, "question", str, where)
    answers = typed_field(path, rec, "gt_answers", str, where)
    field = FIELDS[kind]
    other = FIELDS["point" if kind == "box" else "box"]
    if field not in rec and other in rec:
        raise DataError(
            path, f"the record has {other!r}, not {field!r}: a {kind} task reads {kind} files", where
        )
    vp = typed_field(path, rec, field, list, where)
    size = 4 if kind == "box" else 2
    if not vp or not all(
        isinstance(v, list)
        and len(v) == size
        and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in v)
        for v in vp
    ):
        raise DataError(path, f"{field!r} must be a non-empty list of {size}-number lists", where)
    regions: list[Region] = []
    dims: tuple[int, int] | None = None
    if sized is not None:
        dims = image_size(sized / image, where)
    elif isinstance(rec.get("width"), int) and isinstance(rec.get("height"), int):
        dims = (rec["width"], rec["height"])
    if dims is not None:
        w, h = dims
        try:
            if kind == "box":
                regions = [Region.from_box(b, h, w, fmt="xywh") for b in vp]
            else:
                regions = [Region.from_points([p], h, w) for p in vp]
        except RegionError as exc:
            raise DataError(path, f"invalid {field}: {exc}", where) from exc
    return Sample(
        id=f"{name}/{qid}",
        image=image,
        regions=regions,
        target=answers,
        image_path=image_path(images, image),
        meta=SphinxVQuestion(
            dataset_name=name,
            question_id=qid,
            question=question,
            prompt_kind=kind,  # type: ignore[arg-type]
            vp=[[float(c) for c in v] for v in vp],
            rebuilt=rebuilt,
        ),
    )
