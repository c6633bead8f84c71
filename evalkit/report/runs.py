"""Finding and reading finished runs: ``results.json`` plus the per-sample rows beside it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.errors import DataError
from evalkit.hashing import sha256_text
from evalkit.readers import load_jsonl
from evalkit.results import PREDICTIONS_FILE, RESULTS_FILE, SAMPLE_KEY, SAMPLES_FILE, Results, SampleRecord


@dataclass
class Run:
    """One finished run: its results and the folder they were written to."""

    results: Results
    path: Path  # the results.json file

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def variant(self) -> str:
        return self.results.provenance.protocol_variant

    def fingerprint(self) -> str:
        """Short stable hash of what determines the model's answers (adapter fingerprint)."""
        text = json.dumps(self.results.provenance.adapter, sort_keys=True, default=str)
        return sha256_text(text)[:12]

    def sample_rows(self) -> list[dict[str, Any]]:
        return _read_rows(self.folder / SAMPLES_FILE)

    def prediction_rows(self) -> list[dict[str, Any]]:
        return _read_rows(self.folder / PREDICTIONS_FILE)

    def first_prediction(self) -> dict[str, Any] | None:
        return _first_row(self.folder / PREDICTIONS_FILE)

    def first_sample(self) -> SampleRecord | None:
        """The engine's ``sample`` block of the first samples.jsonl row (None: no rows, or a
        run written before the engine recorded them)."""
        row = _first_row(self.folder / SAMPLES_FILE)
        block = (row or {}).get(SAMPLE_KEY)
        if not isinstance(block, dict):
            return None
        try:
            return SampleRecord.model_validate(block)
        except ValueError:
            return None

    def converted_input(self) -> str | None:
        """The region kind the engine converted the task's regions to for the model, read
        from what the run recorded (its first sample); None when it gave them as they were,
        or the run does not say (predictions from a file, a run from before the record)."""
        record = self.first_sample()
        if record is None or record.input is None:
            return None
        for region, given in zip(record.regions, record.input, strict=False):
            if region.get("kind") != given:
                return given
        return None


def _first_row(path: Path) -> dict[str, Any] | None:
    """The first JSON line of a file, without reading the rest (leaderboards open many runs)."""
    if not path.exists():
        return None
    with path.open("r", encoding="utf-8") as fh:
        line = fh.readline().strip()
    try:
        row = json.loads(line) if line else None
    except json.JSONDecodeError:
        return None
    return row if isinstance(row, dict) else None


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for lineno, obj in load_jsonl(path):
        if not isinstance(obj, dict):
            raise DataError(path, "expected a JSON object", f"line {lineno}")
        rows.append(obj)
    return rows


def find_results(paths: Sequence[Path]) -> list[Path]:
    """results.json files named directly, in run folders, or anywhere below given folders."""
    found: list[Path] = []
    for path in paths:
        if path.is_file():
            found.append(path)
        elif (path / RESULTS_FILE).is_file():
            found.append(path / RESULTS_FILE)
        elif path.is_dir():
            below = sorted(path.rglob(RESULTS_FILE))
            if not below:
                raise DataError(path, f"no {RESULTS_FILE} in this folder or below it")
            found.extend(below)
        else:
            raise DataError(path, "no such results file or run folder")
    unique: dict[Path, None] = {}
    for p in found:
        unique.setdefault(p.resolve(), None)
    return list(unique)


def load_runs(paths: Sequence[Path]) -> list[Run]:
    return [Run(Results.read(p), p) for p in find_results(paths)]


def load_run(path: Path) -> Run:
    """Exactly one run: a results.json file or a run folder holding one."""
    if path.is_dir() and not (path / RESULTS_FILE).is_file():
        raise DataError(path, f"not a run folder (no {RESULTS_FILE})")
    file = path if path.is_file() else path / RESULTS_FILE
    return Run(Results.read(file), file)
