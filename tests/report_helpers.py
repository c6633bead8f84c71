"""Builders of finished-run folders for the report tests (no model, no scoring)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evalkit.results import Provenance, Results


def write_run(
    folder: Path,
    task: str,
    model: str,
    metrics: Mapping[str, float],
    *,
    variant: str = "default",
    card_hash: str = "c" * 64,
    data_files: Mapping[str, str] | None = None,
    adapter: Mapping[str, Any] | None = None,
    created: str = "2024-05-01T10:00:00+00:00",
    git_sha: str | None = "0123456789abcdef",
    samples: Sequence[Mapping[str, Any]] = (),
    n: int = 100,
) -> Path:
    prov = Provenance(
        evalkit_version="0.1.0",
        git_sha=git_sha,
        created=created,
        task_card=f"evalkit/tasks/{task}.yaml",
        task_card_hash=card_hash,
        protocol_variant=variant,
        data_files=dict(data_files or {"/data/ann.json": "d" * 64}),
        adapter=dict(adapter or {"name": "fake", "weights_sha256": model}),
        generation={"max_new_tokens": 16},
        deviations=[],
    )
    results = Results(
        task=task, model=model, metrics=dict(metrics), n=n, n_scored=n, n_failed=0, provenance=prov
    )
    results.write(folder)
    if samples:
        with (folder / "samples.jsonl").open("w") as fh:
            for row in samples:
                fh.write(json.dumps(row) + "\n")
    return folder / "results.json"
