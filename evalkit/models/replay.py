"""``replay``: serves the answers of a predictions JSONL file as if a model produced them.

Use it to re-score, or to run a model evaluated elsewhere through the full engine
(store, provenance, reports): ``--model replay --model-args path=preds.jsonl``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from evalkit.errors import ConfigError, PredictionsError
from evalkit.hashing import sha256_file
from evalkit.images import request_image_size
from evalkit.models import Adapter, register_model
from evalkit.outputs import check_masks, parse_prediction
from evalkit.readers import load_jsonl
from evalkit.records import Prediction, Request


class ReplayAdapter(Adapter):
    name = "replay"
    # It replays whatever the file holds: texts, rankings, token log-probabilities.
    serves = frozenset({"generate", "rank", "token_logprobs", "masks"})

    def __init__(self, path: str):
        self.path = Path(path)
        self.answers: dict[str, Prediction] = {}
        self.lines: dict[str, int] = {}
        for lineno, obj in load_jsonl(self.path):
            answer = parse_prediction(self.path, obj, f"line {lineno}")
            if answer.request_id in self.answers:
                raise PredictionsError(self.path, f"id {obj['id']!r} appears twice", f"line {lineno}")
            self.answers[answer.request_id] = answer
            self.lines[answer.request_id] = lineno

    def fingerprint(self) -> dict[str, Any]:
        return {"predictions_sha256": sha256_file(self.path)}

    def generate(self, requests: Sequence[Request]) -> Iterator[Prediction]:
        for request in requests:
            if request.id not in self.answers:
                raise PredictionsError(self.path, f"no prediction for request id {request.id!r}")
            answer = self.answers[request.id]
            if answer.masks:
                size = request_image_size(request)
                height, width = size if size is not None else (None, None)
                check_masks(answer, height, width, self.path, f"line {self.lines[request.id]}")
            yield answer


@register_model("replay")
def replay(path: str | None = None, **unknown: str) -> Adapter:
    if unknown:
        raise ConfigError(f"replay takes only path=FILE, got {sorted(unknown)}")
    if path is None:
        raise ConfigError("replay needs --model-args path=PREDICTIONS.jsonl")
    return ReplayAdapter(path)
