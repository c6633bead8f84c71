"""MDVP-Bench (SPHINX-V / Draw-and-Understand): 15 task folders x {box, point} prompts.

``vp_annotation_config.json`` names each phase (``android_QA_box``...) with its record file
(``eval/MDVP-Bench/<task>/<task>_<box|point>.json``, read relative to the ``root`` data key)
and its ``max_new_tokens``. A record is ``{image_name, question, question_id, gt_answers,
bbox: [[x, y, w, h], ...] | points: [[x, y], ...]}``;
its image is ``<images>/<task>/<image_name>`` (the released judge script's layout).

Sample id: ``<phase>/<question_id>``. ``meta`` carries the phase, task, domain (natural, ocr,
screenshot, multipanel — the four columns of the paper), the question and the phase's
``max_new_tokens``. Regions need the image size, read from the image header.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalkit.errors import DataError
from evalkit.images import find_image, image_size
from evalkit.readers import ReadResult, load_json, register_reader, require_path, typed_field
from evalkit.records import Sample
from evalkit.regions import Region, RegionError

from ..judged.bench_files import JudgedInfo

MARKER = "MDVP-Bench/"
KINDS = {"box": "bbox", "point": "points"}


# The judge's context sentence per domain (MDVP ``eval_gpt.py``).
class MdvpQuestion(JudgedInfo):
    phase: str  # the config's phase (android_box, natural_point, ...)
    task: str
    domain: str  # natural, ocr, multipanel or screenshot: picks the judge's context sentence
    max_new_tokens: int  # the phase's generation budget from the config
    vp: Any  # the visual prompt as the file gives it


DOMAIN_CONTEXT = {
    "natural": "The image is a natural image.",
    "ocr": "The image contains text, and the user wishes to know the content of the text.",
    "screenshot": "The image is a screenshot from a mobile phone or webpage.",
    "multipanel": "The image is a multi-panel figure.",
}


def mdvp_domain(task: str) -> str:
    """Task folder -> domain. The released script tests ``natural``/``ocr``/``screen``/``panel``
    in the phase name, which no android_*/web_* phase contains (it crashes there); those are
    the screenshot domain."""
    if "natural" in task:
        return "natural"
    if "ocr" in task:
        return "ocr"
    if "panel" in task:
        return "multipanel"
    if task.startswith(("android", "web")) or "screen" in task:
        return "screenshot"
    raise DataError("<vp_annotation_config>", f"cannot tell the domain of MDVP task {task!r}")


def mdvp_phases(config_path: Path, kind: str) -> list[tuple[str, str, str, int]]:
    """(phase, task, path relative to the MDVP-Bench folder, max_new_tokens) for one kind."""
    raw = load_json(config_path)
    if not isinstance(raw, dict):
        raise DataError(config_path, "expected an object {phase: {test, max_new_tokens}}")
    out = []
    for phase, entry in raw.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("test"), str):
            raise DataError(config_path, "entry needs a 'test' path", phase)
        test = entry["test"]
        if MARKER not in test or not phase.endswith(f"_{kind}"):
            continue
        tokens = entry.get("max_new_tokens")
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens <= 0:
            raise DataError(config_path, "max_new_tokens must be a positive integer", phase)
        out.append((phase, phase[: -len(kind) - 1], test.split(MARKER, 1)[1], tokens))
    return out


def _answer_text(path: Path, value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    raise DataError(path, "gt_answers must be a string or a list of strings", where)


def _regions(path: Path, rec: dict[str, Any], field: str, w: int, h: int, where: str) -> list[Region]:
    vps = rec.get(field)
    if not isinstance(vps, list) or not vps:
        raise DataError(path, f"field {field!r} must be a non-empty list", where)
    try:
        if field == "bbox":
            return [Region.from_box(b, h, w, fmt="xywh") for b in vps]
        return [Region.from_points([p], h, w) for p in vps]
    except (RegionError, TypeError) as exc:
        raise DataError(path, f"invalid {field}: {exc}", where) from exc


@register_reader("mdvp")
def read_mdvp(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    kind = options.get("prompt_kind", "box")
    if kind not in KINDS:
        raise DataError("<reader_args>", f"prompt_kind must be 'box' or 'point', got {kind!r}")
    field = KINDS[kind]
    wanted = options.get("tasks")
    root = require_path(data, "root")
    config = require_path(data, "config")
    images = data.get("images") or root
    phases = mdvp_phases(config, kind)
    if wanted:
        phases = [p for p in phases if p[1] in set(wanted)]
    samples: list[Sample] = []
    files = [config]
    for phase, task, rel, tokens in phases:
        path = root / rel
        records = load_json(path)
        files.append(path)
        if not isinstance(records, list):
            raise DataError(path, "expected a JSON list of MDVP records")
        domain = mdvp_domain(task)
        seen: set[str] = set()
        for k, rec in enumerate(records):
            where = f"#{k}"
            if not isinstance(rec, dict):
                raise DataError(path, "a record must be an object", where)
            qid = str(typed_field(path, rec, "question_id", (int, str), where))
            where = f"#{k} (question_id {qid})"
            if qid in seen:
                raise DataError(path, f"question_id {qid} appears twice", where)
            seen.add(qid)
            image_name = typed_field(path, rec, "image_name", str, where)
            question = typed_field(path, rec, "question", str, where)
            answer = _answer_text(path, typed_field(path, rec, "gt_answers", (str, list), where), where)
            img = find_image(images, [f"{task}/{image_name}"], where)
            w, h = image_size(img, where)
            samples.append(
                Sample(
                    id=f"{phase}/{qid}",
                    image=f"{task}/{image_name}",
                    regions=_regions(path, rec, field, w, h, where),
                    target=answer,
                    image_path=str(img),
                    meta=MdvpQuestion(
                        question=question,
                        prompt_question=question,
                        phase=phase,
                        task=task,
                        domain=domain,
                        max_new_tokens=tokens,
                        vp=rec[field],
                    ),
                )
            )
    note = f"MDVP-Bench {kind}: {len(phases)} phases, {len(samples)} questions"
    return ReadResult(samples, files, [note])
