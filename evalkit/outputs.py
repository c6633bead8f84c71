"""A model's answers as files carry them (``predictions.jsonl``, ``--model replay``,
``evalkit score --predictions``): one JSON object per line,

    {"id": "...", "text": "..."}                                     a generated answer
    {"id": "...", "text": "", "choice_logprobs": [...], "choice_tokens": [...]}   a ranking
    (+ "token_logprobs": [...] for generated tokens' log p, when asked)

parsed into :class:`~evalkit.records.Prediction` with one clear error per bad record.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from evalkit.errors import PredictionsError
from evalkit.records import Prediction


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
    return Prediction(
        pid,
        text,
        token_logprobs=_numbers(path, obj, "token_logprobs", record, float),
        choice_logprobs=choice_logprobs,
        choice_tokens=choice_tokens,
    )
