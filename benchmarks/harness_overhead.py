"""Benchmark: evalkit's own overhead per sample, with a model that costs nothing.

A null adapter (answers instantly) runs ``lvis_cls``'s full engine path over 100,000
regions (25,000 images x 4): reading and validating the annotations, building requests,
hashing store keys, streaming every prediction into the SQLite store (one commit per row),
reading them back, writing predictions.jsonl and results.json. Scoring time (sentence
embeddings) is reported separately: it is metric cost, not harness overhead.

Goal (issue 6): < 1 ms per sample. Last line: ``overhead_ms_per_sample=<x>``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evalkit.models import Adapter
from evalkit.records import Prediction, Request


class NullAdapter(Adapter):
    name = "null"

    def fingerprint(self) -> dict[str, Any]:
        return {"null": 1}

    def generate(self, requests: Sequence[Request]) -> Iterator[Prediction]:
        for request in requests:
            yield Prediction(request.id, "dog")


def build(path: Path, n_images: int) -> int:
    records = []
    for i in range(n_images):
        anns = [{"segmentation": [[10 + j, 10, 60 + j, 10, 60 + j, 50, 10 + j, 50]]} for j in range(4)]
        records.append(
            {
                "file_name": f"{i:012d}.jpg",
                "height": 480,
                "width": 640,
                "categories": ["dog", "cat", "teddy_bear", "bow_(weapon)"],
                "annotations": anns,
            }
        )
    path.write_text(json.dumps(records))
    return n_images * 4


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=100_000)
    args = parser.parse_args()
    from evalkit.engine.runner import run_task
    from evalkit.task import get_task

    with tempfile.TemporaryDirectory() as tmp:
        ann = Path(tmp) / "ann.json"
        n = build(ann, args.samples // 4)
        task = get_task("lvis_cls")
        results = run_task(
            task, NullAdapter(), "null", {"annotations": ann, "images": None}, Path(tmp) / "out"
        )
        assert results is not None and results.n == n
        t = results.provenance.timings
        overhead = t.wall_s - t.score_s
        print(
            f"{n} samples: wall {t.wall_s:.2f} s, of which scoring {t.score_s:.2f} s, "
            f"generation loop {t.generate_s:.2f} s"
        )
        print(f"harness overhead {overhead:.2f} s = {overhead / n * 1000:.3f} ms/sample")
        print(f"overhead_ms_per_sample={overhead / n * 1000:.3f}")


if __name__ == "__main__":
    main()
