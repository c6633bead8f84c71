"""POPE question files (RUCAIBox/POPE ``output/coco/coco_pope_{random,popular,adversarial}.json``).

JSON lines ``{"question_id", "image", "text", "label"}``; one sample per line, id = the
``question_id`` as a string, target = the label (``yes`` / ``no``), no region. The question
file was revised several times upstream, and papers used different revisions (LLaVA-1.5's
random split has 2,910 questions): the reader names the revision by sha256 and warns when
the file is none of the known ones.

Images (COCO val2014) are tried as ``images/<image>`` and then, like Osprey's
``pope_eval.py``, as ``images/<last _ field of image>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalkit.errors import DataError
from evalkit.hashing import sha256_path
from evalkit.readers import (
    ReadResult,
    coco_image_path,
    load_jsonl,
    register_reader,
    require_path,
    typed_field,
)
from evalkit.records import Sample, SampleInfo

# Every revision of the COCO question files in RUCAIBox/POPE's git history:
# (split, revision, questions, sha256 of the file).
_ORIGINAL = "original revision (2023-05-31, restored 2023-08-10"
_REVISIONS: tuple[tuple[str, str, int, str], ...] = (
    (
        "random",
        "current official revision (2023-10-09",
        3000,
        "ac25245170b975a5bdf9080b23fd431dfe6be458bc038259c1f4f09a6bef7994",
    ),
    (
        "random",
        "revision of 2023-08-04 (",
        3000,
        "cb8dec967727fbee4b9cfadf9ba1ea9968515b12063efd313d0cf8b2b4230c86",
    ),
    (
        "random",
        f"{_ORIGINAL}; the one LLaVA-1.5 used",
        2910,
        "c16b65d2df6d70bb0814c8a4375833d39cdb09928fd936d3fc546491efa37f35",
    ),
    (
        "popular",
        "current official revision (2023-10-09",
        3000,
        "72c1a8ad45d0c13514f5f22598261df41d3b533854d29682e924db50ed8aa753",
    ),
    (
        "popular",
        "revision of 2023-08-04 (",
        3000,
        "eafca6ceff32c7bbb5b2845a00c6828ec8cbaf5e04f890d6902dc46b92f96076",
    ),
    (
        "popular",
        _ORIGINAL,
        3000,
        "5b16653023bf4f64d57eb0d168259de6627f5cde7538b85ebed3cc33034aa6cc",
    ),
    (
        "adversarial",
        "current official revision (2023-11-16",
        3000,
        "420b3407db1fa9f1187a805dca41cb7b97fd91504e6c2179706188c107fb8ef8",
    ),
    (
        "adversarial",
        "revision of 2023-10-09 (",
        3000,
        "207273ac3b7fdd04df206c6809b77a4e7f60360a730ade6b7e32804e8dd5602f",
    ),
    (
        "adversarial",
        "revision of 2023-08-04 (",
        3000,
        "412efc6fe25eb2604f2386d536bcf713dc88327cb20c36489b1f689f89617d04",
    ),
    (
        "adversarial",
        _ORIGINAL,
        3000,
        "1d8f0906a9b50c05640f6f23abfac97523be2a1bed28f7eadc63b811699b2d26",
    ),
)
KNOWN_REVISIONS: dict[str, str] = {
    digest: f"{split}, {revision}{'' if revision.endswith('(') else ', '}{n:,} questions)"
    for split, revision, n, digest in _REVISIONS
}
LABELS = ("yes", "no")


def revision_note(path: Path, digest: str, n_questions: int, split: str | None = None) -> str:
    known = KNOWN_REVISIONS.get(digest)
    if known is not None:
        note = f"{path.name}: sha256 {digest[:12]}…, POPE COCO {known}"
        file_split = known.split(",")[0]
        if split is not None and file_split != split:
            note = f"WARNING: this task is POPE {split} but {note}"
        return note
    hint = ""
    if n_questions == 2910:
        hint = (
            " Its 2,910 questions suggest the older random split LLaVA used, but the bytes "
            "differ from that revision (re-serialised or edited?)."
        )
    return (
        f"WARNING: {path.name} (sha256 {digest}) is none of the known POPE COCO question-file "
        f"revisions; numbers may not be comparable with published ones.{hint}"
    )


def read_questions(path: Path, images: Path | None) -> list[Sample]:
    samples: list[Sample] = []
    seen: set[str] = set()
    for lineno, obj in load_jsonl(path):
        where = f"line {lineno}"
        if not isinstance(obj, dict) or not {"question_id", "image", "text", "label"} <= obj.keys():
            raise DataError(path, "expected an object with question_id, image, text, label", where)
        qid = str(obj["question_id"])
        if qid in seen:
            raise DataError(path, f"question_id {qid} appears twice", where)
        seen.add(qid)
        if obj["label"] not in LABELS:
            raise DataError(path, f"label must be 'yes' or 'no', got {obj['label']!r}", where)
        text = typed_field(path, obj, "text", str, where)
        image = typed_field(path, obj, "image", str, where)
        samples.append(
            Sample(
                id=qid,
                image=image,
                regions=[],
                target=obj["label"],
                image_path=coco_image_path(images, image, where),
                meta=PopeQuestion(text=text),
            )
        )
    return samples


class PopeQuestion(SampleInfo):
    text: str  # the question asked ("Is there a X in the image?")


@register_reader("pope_questions")
def read_pope(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    path = require_path(data, "questions")
    samples = read_questions(path, data.get("images"))
    digest = sha256_path(path)
    split = options.get("split")
    note = revision_note(path, digest, len(samples), str(split) if split is not None else None)
    return ReadResult(samples, [path], [note])
