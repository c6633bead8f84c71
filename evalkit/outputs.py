"""A model's answers as files carry them (``predictions.jsonl``, ``--model replay``,
``evalkit score --predictions``): one JSON object per line,

    {"id": "...", "text": "..."}                                     a generated answer
    {"id": "...", "text": "", "choice_logprobs": [...], "choice_tokens": [...]}   a ranking
    {"id": "...", "text": "<p>a dog</p> [SEG] ...", "masks": [{"rle": {...}, "phrase": "a dog",
     "span": [3, 8]}]}                                               an answer with masks
    (+ "token_logprobs": [...] for generated tokens' log p, when asked, and "token_texts":
     [...] the text of each of those tokens, joining to "text")

parsed into :class:`~evalkit.records.Prediction` with one clear error per bad record.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from evalkit.errors import PredictionsError
from evalkit.records import MaskOutput, Prediction
from evalkit.regions.rle import rle_problem, rle_runs  # noqa: F401 - rle_runs: public here too

# GLaMM's grounded answer: a phrase in <p>...</p> followed by the [SEG] token its mask fills
# (GLaMM e74865f, eval/gcg/infer.py reads the phrases with this pattern).
SEG_PHRASE = re.compile(r"<p>\s*(.*?)\s*</p>\s*\[SEG\]")
SEG_TOKEN = "[SEG]"


def _numbers(path: Path, obj: dict[str, Any], key: str, record: str, kind: type) -> list[Any] | None:
    value = obj.get(key)
    if value is None:
        return None
    accepted = (int, float) if kind is float else (int,)
    ok = isinstance(value, list) and all(
        isinstance(v, accepted) and not isinstance(v, bool) and math.isfinite(v) for v in value
    )
    if not ok:
        what = "integers" if kind is int else "finite numbers"
        raise PredictionsError(path, f'"{key}" of id {obj.get("id")!r} must be a list of {what}', record)
    return [kind(v) for v in value]


def parse_prediction(path: Path, obj: Any, record: str) -> Prediction:
    """One line of a predictions file; ``record`` names it in errors (``line 12``)."""
    if not isinstance(obj, dict) or "id" not in obj or "text" not in obj:
        raise PredictionsError(path, 'expected an object with "id" and "text"', record)
    pid, text = str(obj["id"]), obj["text"]
    if not isinstance(text, str):
        raise PredictionsError(path, f'"text" of id {pid!r} is not a string', record)
    choice_logprobs = _numbers(path, obj, "choice_logprobs", record, float)
    choice_tokens = _numbers(path, obj, "choice_tokens", record, int)
    if (choice_logprobs is None) != (choice_tokens is None) or (
        choice_logprobs is not None
        and choice_tokens is not None
        and len(choice_logprobs) != len(choice_tokens)
    ):
        raise PredictionsError(
            path,
            f'id {pid!r}: "choice_logprobs" and "choice_tokens" go together, one value per choice',
            record,
        )
    token_logprobs = _numbers(path, obj, "token_logprobs", record, float)
    return Prediction(
        pid,
        text,
        token_logprobs=token_logprobs,
        token_texts=_token_texts(path, obj, pid, record, token_logprobs),
        choice_logprobs=choice_logprobs,
        choice_tokens=choice_tokens,
        masks=_masks(path, obj, pid, record),
    )


def _token_texts(
    path: Path, obj: dict[str, Any], pid: str, record: str, token_logprobs: list[float] | None
) -> list[str] | None:
    """``token_texts``: strings, one per log-probability, that join to the answer's text."""
    value = obj.get("token_texts")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PredictionsError(path, f'"token_texts" of id {pid!r} must be a list of strings', record)
    if token_logprobs is None or len(token_logprobs) != len(value):
        raise PredictionsError(
            path, f'id {pid!r}: "token_texts" needs "token_logprobs", one value per token', record
        )
    if "".join(value) != obj["text"]:
        raise PredictionsError(path, f'id {pid!r}: "token_texts" do not join to its "text"', record)
    return list(value)


def seg_phrases(text: str) -> list[tuple[str, int, int]]:
    """The ``<p>phrase</p> [SEG]`` phrases of a grounded answer: (phrase, start, end) with
    ``text[start:end] == phrase``, in order (one mask each)."""
    return [(m.group(1), m.start(1), m.end(1)) for m in SEG_PHRASE.finditer(text)]


def _masks(path: Path, obj: dict[str, Any], pid: str, record: str) -> list[MaskOutput] | None:
    raw = obj.get("masks")
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise PredictionsError(path, f'"masks" of id {pid!r} must be a list', record)
    out = []
    for k, m in enumerate(raw):
        where = f"id {pid!r} mask {k}"
        if not isinstance(m, dict) or not isinstance(m.get("rle"), dict):
            raise PredictionsError(
                path, f'{where}: expected {{"rle": {{"size", "counts"}}, "phrase", "span"}}', record
            )
        rle = m["rle"]
        size, counts = rle.get("size"), rle.get("counts")
        if not (
            isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)
        ):
            raise PredictionsError(path, f'{where}: RLE "size" must be [height, width]', record)
        if not isinstance(counts, str):
            raise PredictionsError(path, f'{where}: RLE "counts" must be a compressed COCO string', record)
        problem = rle_problem(counts, size[0] * size[1])
        if problem is not None:
            raise PredictionsError(path, f"{where}: not a valid COCO RLE ({problem})", record)
        phrase, span, score = m.get("phrase"), m.get("span"), m.get("score")
        if phrase is not None and not isinstance(phrase, str):
            raise PredictionsError(path, f'{where}: "phrase" must be a string', record)
        if span is not None and not (
            isinstance(span, list)
            and len(span) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in span)
        ):
            raise PredictionsError(path, f'{where}: "span" must be [start, end] character offsets', record)
        if score is not None and not (isinstance(score, (int, float)) and not isinstance(score, bool)):
            raise PredictionsError(path, f'{where}: "score" must be a number', record)
        out.append(
            MaskOutput(
                {"size": list(size), "counts": counts},
                phrase,
                (span[0], span[1]) if span is not None else None,
                float(score) if score is not None else None,
            )
        )
    return out


def check_masks(
    prediction: Prediction, height: int | None, width: int | None, path: Path, record: str
) -> None:
    """The masks fit the image (``height`` x ``width``, when known) and each grounds a phrase
    that is in the text: its ``span`` inside the text (and equal to its ``phrase``), its
    ``phrase`` found, or — with neither — a ``[SEG]`` of its own (the k-th mask the k-th
    ``[SEG]``, after a ``<p>…</p>`` phrase or bare as in ``It is [SEG].``)."""
    if not prediction.masks:
        return
    pid, text = prediction.request_id, prediction.text
    segs = seg_phrases(text)
    n_seg = text.count(SEG_TOKEN)
    for k, m in enumerate(prediction.masks):
        where = f"id {pid!r} mask {k}"
        if height is not None and width is not None and list(m.rle["size"]) != [height, width]:
            raise PredictionsError(
                path,
                f"{where}: mask is {m.rle['size'][0]}x{m.rle['size'][1]}, the image is {height}x{width}",
                record,
            )
        if m.span is not None:
            start, end = m.span
            if not 0 <= start < end <= len(text):
                raise PredictionsError(
                    path, f"{where}: span {list(m.span)} is not in the {len(text)}-character text", record
                )
            if m.phrase is not None and text[start:end] != m.phrase:
                raise PredictionsError(
                    path,
                    f"{where}: span {list(m.span)} reads {text[start:end]!r}, not the phrase {m.phrase!r}",
                    record,
                )
        elif m.phrase is not None:
            if m.phrase not in text:
                raise PredictionsError(path, f"{where}: phrase {m.phrase!r} is not in the text", record)
        elif k >= n_seg:
            # The k-th mask is the k-th [SEG], phrased (<p>...</p> [SEG]) or bare: GLaMM's
            # referring-segmentation answers are "It is [SEG]." (dataset/utils/utils.py).
            raise PredictionsError(
                path,
                f"{where}: grounds no phrase (the text has {len(segs)} <p>...</p> [SEG] span(s)) "
                f"and no [SEG] of its own (the text has {n_seg})",
                record,
            )
