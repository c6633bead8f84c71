"""What a run records per sample (samples.jsonl's ``sample`` block) and the report reading it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from PIL import Image

from evalkit.cli import main
from evalkit.engine.runner import run_task, score_file
from evalkit.models import Adapter
from evalkit.records import Prediction, Request
from evalkit.regions import Region
from evalkit.report.leaderboard import run_input
from evalkit.report.runs import load_run
from evalkit.results import SAMPLE_KEY, SampleRecord
from evalkit.task import get_task
from tests.report_helpers import write_run

N = 6
PROTOCOL_KEYS = {"id", "image", "prediction", "answer", "target", "ss", "s_iou"}  # referring_cls's row


class Answers(Adapter):
    """Answers every request with the same word; takes the region kinds it is built with."""

    name = "answers"
    region_kinds: ClassVar[frozenset[str]] = frozenset({"mask"})

    def __init__(self, kinds: frozenset[str]):
        self.region_kinds = kinds  # type: ignore[misc]

    def fingerprint(self) -> dict[str, Any]:
        return {"kinds": sorted(self.region_kinds)}

    def generate(self, requests: Sequence[Request]) -> Iterator[Prediction]:
        for r in requests:
            yield Prediction(r.id, "circle", prompt=r.prompt)


def _rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    ("kinds", "given"), [(frozenset({"box"}), "box"), (frozenset({"mask", "box"}), None)]
)
def test_run_records_what_the_model_was_shown(
    tmp_path: Path, kinds: frozenset[str], given: str | None
) -> None:
    task = get_task("shapes_cls")
    out = tmp_path / "run"
    results = run_task(task, Answers(kinds), "answers", task.resolve_data({}), out, limit=N)
    assert results is not None and results.provenance.requests == {
        "total": N,
        "generated": N,
        "reused": 0,
        "skipped": 0,
    }
    rows = _rows(out)
    assert len(rows) == N
    for row in rows:
        assert set(row) == PROTOCOL_KEYS | {SAMPLE_KEY}  # the protocol's keys kept, one added
        record = SampleRecord.model_validate(row[SAMPLE_KEY])
        assert [r["kind"] for r in record.regions] == ["mask"]
        assert Region.from_json(record.regions[0]).area() > 0
        assert record.input == [given or "mask"]
        assert record.image_path is not None and Path(record.image_path).name == row["image"]
        assert Path(record.image_path).is_file()
        assert record.prompt is not None and "<region>" in record.prompt
        assert record.target is None and "target" not in row[SAMPLE_KEY]  # the row says it already
    run = load_run(out)
    assert run.converted_input() == given
    # Today's leaderboard reads the conversion note on the first prediction: the same answer.
    assert run_input(run) == (given or "—")


def test_scored_file_records_samples_but_no_model_input(tmp_path: Path) -> None:
    task = get_task("shapes_cls")
    data = task.resolve_data({}, command="score")
    samples = task.load_samples(data).samples[:N]
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": s.id, "text": "circle"}) + "\n" for s in samples))
    out = tmp_path / "scored"
    results = score_file(task, preds, data, out, on_error="skip")
    assert results.provenance.requests == {}
    rows = {r["id"]: r for r in _rows(out)}
    assert set(rows) == {s.id for s in samples}
    block = rows[samples[0].id][SAMPLE_KEY]
    assert "input" not in block and block["regions"] == [r.to_json() for r in samples[0].regions]
    assert load_run(out).converted_input() is None


def _recorded_run(tmp_path: Path, image: Path, name: str) -> Path:
    region = Region.from_box([10, 8, 40, 30], 48, 64)
    rows = [
        {
            "id": f"s{k}",
            "prediction": "a box",
            "score": float(k),
            SAMPLE_KEY: {
                "image_path": str(image),
                "image": name,
                "prompt": "What is <region>?",
                "regions": [region.to_json()],
                "input": ["mask"],
                "target": f"thing {k}",
                "meta": {"category": "boxes"},
            },
        }
        for k in range(3)
    ]
    return write_run(tmp_path / "run", "not_a_task", "m", {"score": 1.0}, samples=rows, n=3).parent


def test_report_reads_the_recorded_samples(tmp_path: Path) -> None:
    image = tmp_path / "data" / "img.png"
    image.parent.mkdir()
    Image.fromarray(np.full((48, 64, 3), 120, dtype=np.uint8)).save(image)
    run_dir = _recorded_run(tmp_path, image, "img.png")
    out = tmp_path / "r.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    page = out.read_text()
    # The task is unknown here and its data never read: everything comes from samples.jsonl.
    assert "not available here" not in page and "image not available" not in page
    assert page.count('src="data:image/png;base64,') == 3 + 1  # thumbnails + plot
    assert '<span class="region r0">&lt;region&gt;</span>' in page
    assert "thing 0" in page and set(re.findall(r'data-category="([^"]+)"', page)) == {"boxes"}
    # Moved images: --images says where the recorded file names now are.
    moved = tmp_path / "moved"
    image.parent.rename(moved)
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    assert out.read_text().count("image not available") == 3
    assert main(["report", str(run_dir), "--out", str(out), "--images", str(moved)]) == 0
    assert "image not available" not in out.read_text()
