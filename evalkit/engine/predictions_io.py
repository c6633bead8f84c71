"""Predictions and per-sample files: reading a user's predictions JSONL, writing ours."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evalkit.errors import PredictionsError
from evalkit.files import atomic_writer
from evalkit.images import request_image_size
from evalkit.outputs import check_masks, parse_prediction
from evalkit.readers import load_jsonl
from evalkit.records import Prediction, Request


def read_predictions(path: Path, requests: Mapping[str, Request]) -> dict[str, Prediction]:
    """A predictions JSONL (:mod:`evalkit.outputs`) -> {id: prediction}; unknown or
    repeated ids are errors, and so are masks that do not fit their request's image or
    ground no phrase of the text."""
    found: dict[str, Prediction] = {}
    for lineno, obj in load_jsonl(path):
        record = f"line {lineno}"
        prediction = parse_prediction(path, obj, record)
        pid = prediction.request_id
        if pid not in requests:
            raise PredictionsError(path, f"id {pid!r} is not a sample of this task", record)
        if pid in found:
            raise PredictionsError(path, f"id {pid!r} appears twice", record)
        if prediction.masks:
            size = request_image_size(requests[pid])
            height, width = size if size is not None else (None, None)
            check_masks(prediction, height, width, path, record)
        found[pid] = prediction
    return found


def write_predictions(path: Path, requests: Sequence[Request], predictions: Sequence[Prediction]) -> None:
    """One line per request: id, raw text, rendered prompt, generation settings, token ids."""
    rows = []
    for request, pred in zip(requests, predictions, strict=True):
        row = pred.to_json()
        row.setdefault("prompt", request.prompt)
        row["generation"] = request.generation
        rows.append(row)
    write_jsonl(path, rows)


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Written whole to a temporary file, then moved into place: never half a file."""
    with atomic_writer(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
