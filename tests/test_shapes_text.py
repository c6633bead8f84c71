"""shapes_cap and shapes_pope: the text views of the shapes scenes, run end to end with replay."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from evalkit.tasks.shapes.scenes import all_object_names, region_captions, visible_object_names
from evalkit.tasks.shapes.shapes_pope import pope_questions

from evalkit.task import get_task
from tests.helpers import run_replay


def test_shapes_pope_questions_are_balanced_seeded_and_stable() -> None:
    task = get_task("shapes_pope")
    first = task.load_samples({"scenes": None, "images": None})
    again = task.load_samples({"scenes": None, "images": None})
    assert [s.id for s in first.samples] == [s.id for s in again.samples]
    assert [s.target for s in first.samples] == [s.target for s in again.samples]
    labels = Counter(s.target for s in first.samples)
    assert labels["yes"] == labels["no"] > 300
    per_scene: dict[str, Counter[str]] = {}
    for s in first.samples:
        per_scene.setdefault(s.image or "", Counter())[s.target] += 1
    assert all(c["yes"] == c["no"] and c["yes"] <= 3 for c in per_scene.values())
    sample = first.samples[0]
    assert sample.id.startswith("val_00000/") and sample.regions == []
    name = sample.id.split("/", 1)[1].replace("_", " ")
    assert name in all_object_names()
    (request,) = task.build_requests([sample])
    assert request.prompt == f"<image>\nIs there a {name} in the image?"
    assert request.image_path is not None and Path(request.image_path).is_file()


def test_hidden_objects_are_asked_neither_way() -> None:
    scene = {
        "file_name": "t.png",
        "objects": [
            {"id": 1, "shape": "circle", "colour": "red"},
            {"id": 2, "shape": "star", "colour": "blue"},  # hidden behind the house
            {
                "shape": "house",
                "colour": None,
                "parts": [{"id": 3, "part": "wall"}, {"id": 4, "part": "roof"}],
            },
        ],
        "visible": {"1": 500, "2": 10, "3": 30, "4": 30},
    }
    shown, drawn = visible_object_names(scene)
    assert shown == ["red circle", "house"]  # the house counts its parts together: 60 px
    assert drawn == {"red circle", "blue star", "house"}
    pairs = pope_questions(scene, seed=0)
    assert sorted(pairs) == sorted(pope_questions(scene, seed=0))
    assert {n for n, y in pairs if y == "yes"} == {"red circle", "house"}
    negatives = [n for n, y in pairs if y == "no"]
    assert len(negatives) == 2 and "blue star" not in negatives and "red circle" not in negatives
    assert pope_questions(scene, seed=1) != pairs or pope_questions(scene, seed=2) != pairs


def test_shapes_pope_run_with_replay(tmp_path: Path) -> None:
    samples = get_task("shapes_pope").load_samples({"scenes": None, "images": None}).samples
    answers = tmp_path / "answers.jsonl"
    with answers.open("w") as fh:
        for k, s in enumerate(samples):
            truth = "Yes, there is." if s.target == "yes" else "No, there is not."
            fh.write(json.dumps({"id": s.id, "text": truth if k % 10 else "Yes"}) + "\n")
    out = tmp_path / "run"
    results = run_replay("shapes_pope", answers, out)
    n = len(samples)
    wrong = sum(1 for k, s in enumerate(samples) if k % 10 == 0 and s.target == "no")
    assert results["n"] == n
    assert results["metrics"]["accuracy"] == pytest.approx(100 * (n - wrong) / n)
    assert results["metrics"]["recall"] == pytest.approx(100.0)
    assert results["counts"]["fp"] == wrong


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="needs Java")
def test_shapes_cap_run_with_replay(tmp_path: Path) -> None:
    task = get_task("shapes_cap")
    samples = task.load_samples({"annotations": None, "images": None}).samples
    assert len(samples) > 300
    first = samples[0]
    assert first.id == "val_00000#0"
    assert first.target == region_captions(first.meta.to_json()["category"])
    (request,) = task.build_requests([first])
    assert request.prompt == (
        "<image>\nThis provides an overview of the picture.\nPlease give me a short description of <region>."
    )
    assert first.regions[0].kind == "mask"

    answers = tmp_path / "answers.jsonl"
    with answers.open("w") as fh:
        for k, s in enumerate(samples):
            text = s.target[0] if k % 4 else "a green house"  # the canonical caption, mostly
            fh.write(json.dumps({"id": s.id, "text": text}) + "\n")
    out = tmp_path / "run"
    results = run_replay("shapes_cap", answers, out)
    assert results["n"] == len(samples)
    assert results["counts"]["references"] == 3 * len(samples)
    assert 50 < results["metrics"]["meteor"] < 100
    assert results["metrics"]["cider"] > 100
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    right = [r for k, r in enumerate(rows) if k % 4]
    assert all(
        r["rouge_l"] == pytest.approx(100.0) and r["bleu4"] > 99
        for r in right
        if len(r["tokens"].split()) >= 4
    )
    assert all(r["meteor"] > 50 for r in right)
    assert max(r["meteor"] for k, r in enumerate(rows) if k % 4 == 0) < min(r["meteor"] for r in right)
