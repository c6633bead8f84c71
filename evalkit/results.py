"""The typed ``results.json`` schema and the provenance every result carries.

Low level (below the engine and the report): the engine writes these files, the report
commands read them, and neither layer owns the schema.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

import evalkit
from evalkit.errors import DataError
from evalkit.files import atomic_write_text

RESULTS_FILE = "results.json"
SAMPLES_FILE = "samples.jsonl"
PREDICTIONS_FILE = "predictions.jsonl"


SAMPLE_KEY = "sample"  # the engine's block in each samples.jsonl row (see SampleRecord)


class SampleRecord(BaseModel):
    """What the engine adds to a protocol's samples.jsonl row, under ``"sample"``: the sample
    as the model was asked about it, so that a report reads the run instead of re-reading
    (and perhaps no longer finding) its data. Rows keep every key their protocol wrote."""

    model_config = ConfigDict(extra="allow")
    image_path: str | None = None  # where the run read the image
    prompt: str | None = None  # the task's prompt, with its <region> placeholders
    regions: list[dict[str, Any]] = []  # Region.to_json(): kind, size, RLE / box / points
    # The region kinds the model was given, after the engine's conversions (a box region
    # given as "mask" was converted); None when the predictions came from a file.
    input: list[str] | None = None
    # Written only where the protocol's row does not already say them.
    image: str | None = None  # file name relative to the images folder
    target: Any = None
    meta: dict[str, Any] | None = None  # the sample's typed payload (SampleInfo)


class Timings(BaseModel):
    wall_s: float = 0.0
    generate_s: float = 0.0
    score_s: float = 0.0
    samples_per_s: float = 0.0


class Provenance(BaseModel):
    model_config = ConfigDict(extra="allow")
    evalkit_version: str
    git_sha: str | None
    created: str
    task_card: str
    task_card_hash: str
    protocol_variant: str
    data_files: dict[str, str]  # path -> sha256
    adapter: dict[str, Any]  # name + fingerprint (checkpoint hashes)
    generation: dict[str, Any]
    deviations: list[str]  # every departure from the reference protocol
    notes: list[str] = []
    timings: Timings = Timings()
    # How this run got its predictions: generated now vs found in the store (resume).
    requests: dict[str, int] = {}
    command: list[str] = []


class Results(BaseModel):
    model_config = ConfigDict(extra="allow")
    task: str
    model: str
    metrics: dict[str, float]
    n: int  # samples in the task
    n_scored: int
    n_failed: int
    counts: dict[str, int] = {}
    skipped: list[str] = []  # what --on-error skip left out, with the reason for each
    provenance: Provenance

    def write(self, out_dir: Path) -> Path:
        # Atomic: a reader (a leaderboard, a CI gate) never sees half a results file.
        text = json.dumps(self.model_dump(), indent=2, ensure_ascii=False) + "\n"
        return atomic_write_text(out_dir / RESULTS_FILE, text)

    @staticmethod
    def read(path: Path) -> Results:
        if path.is_dir():
            path = path / RESULTS_FILE
        if not path.exists():
            raise DataError(path, "results file not found")
        try:
            return Results.model_validate_json(path.read_text("utf-8"))
        except ValueError as exc:
            raise DataError(path, f"not an evalkit results file: {exc}") from exc


def git_sha() -> str | None:
    """The evalkit checkout's commit, when evalkit runs from a git checkout."""
    root = Path(evalkit.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
