"""vg_cap: Visual Genome region descriptions in their real layout, every test-id form."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from evalkit.tasks.caption.vg_regions import read_test_ids

from evalkit.cli import main
from evalkit.errors import DataError
from evalkit.task import get_task


def write_vg(root: Path) -> dict[str, Path]:
    image_data = [
        {
            "width": 800,
            "url": "https://cs.stanford.edu/people/rak248/VG_100K_2/1.jpg",
            "height": 600,
            "image_id": 1,
            "coco_id": None,
            "flickr_id": None,
        },
        {
            "width": 500,
            "url": "https://cs.stanford.edu/people/rak248/VG_100K/2.jpg",
            "height": 333,
            "image_id": 2,
            "coco_id": 9,
            "flickr_id": None,
        },
        {
            "width": 640,
            "url": "https://cs.stanford.edu/people/rak248/VG_100K/3.jpg",
            "height": 480,
            "image_id": 3,
            "coco_id": None,
            "flickr_id": None,
        },
    ]
    regions = [
        {
            "id": 1,
            "regions": [
                {
                    "region_id": 1382,
                    "width": 82,
                    "height": 139,
                    "image_id": 1,
                    "phrase": "the clock is green in colour",
                    "y": 57,
                    "x": 421,
                },
                {
                    "region_id": 1383,
                    "width": 182,
                    "height": 109,
                    "image_id": 1,
                    "phrase": "shade is along the street ",
                    "y": 372,
                    "x": 700,
                },
                {
                    "region_id": 1384,
                    "width": 0,
                    "height": 30,
                    "image_id": 1,
                    "phrase": "an empty box",
                    "y": 10,
                    "x": 10,
                },
            ],
        },
        {
            "id": 2,
            "regions": [
                {
                    "region_id": 2001,
                    "width": 50,
                    "height": 40,
                    "image_id": 2,
                    "phrase": "man wearing a hat",
                    "y": 20,
                    "x": 30,
                },
            ],
        },
        {
            "id": 3,
            "regions": [
                {
                    "region_id": 3001,
                    "width": 10,
                    "height": 10,
                    "image_id": 3,
                    "phrase": "not a test image",
                    "y": 0,
                    "x": 0,
                },
            ],
        },
    ]
    paths = {
        "regions": root / "region_descriptions.json",
        "image_data": root / "image_data.json",
        "test_ids": root / "densecap_splits.json",
    }
    paths["regions"].write_text(json.dumps(regions))
    paths["image_data"].write_text(json.dumps(image_data))
    paths["test_ids"].write_text(json.dumps({"train": [3], "val": [], "test": [1, 2, 4]}))
    return paths


def test_vg_samples(tmp_path: Path) -> None:
    paths = write_vg(tmp_path)
    images = tmp_path / "images"
    (images / "VG_100K").mkdir(parents=True)
    (images / "2.jpg").write_bytes(b"")  # a flat copy of image 2
    task = get_task("vg_cap")
    read = task.load_samples({**paths, "images": images})
    assert [s.id for s in read.samples] == ["1/1382", "1/1383", "2/2001"]
    clock, shade, man = read.samples
    assert clock.target == "the clock is green in colour"
    assert clock.regions[0].kind == "box" and clock.regions[0].box == (421.0, 57.0, 503.0, 196.0)
    assert shade.regions[0].box == (700.0, 372.0, 800.0, 481.0)  # clipped to the 800 px width
    assert clock.image_path == str(images / "VG_100K_2" / "1.jpg")
    assert man.image_path == str(images / "2.jpg")
    assert "1 boxes clipped to the image, 1 empty boxes skipped" in read.notes[0]
    assert "1 test image id(s) have no image record or no regions, e.g. [4]" in read.notes[1]
    assert read.files == [paths["regions"], paths["image_data"], paths["test_ids"]]


def test_test_id_forms(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("[5, 6]")
    (tmp_path / "b.json").write_text(json.dumps({"images": [{"id": 7}, {"id": 8}]}))
    (tmp_path / "c.txt").write_text("9\n\n10\n")
    assert read_test_ids(tmp_path / "a.json") == [5, 6]
    assert read_test_ids(tmp_path / "b.json") == [7, 8]
    assert read_test_ids(tmp_path / "c.txt") == [9, 10]
    (tmp_path / "d.txt").write_text("9\nten\n")
    with pytest.raises(DataError, match=r"d\.txt, record line 2: not an image id"):
        read_test_ids(tmp_path / "d.txt")
    (tmp_path / "e.json").write_text('{"test": ["x"]}')
    with pytest.raises(DataError, match="expected a list of image ids"):
        read_test_ids(tmp_path / "e.json")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="needs Java")
def test_vg_score(tmp_path: Path) -> None:
    paths = write_vg(tmp_path)
    predictions = tmp_path / "p.jsonl"
    predictions.write_text(
        json.dumps({"id": "1/1382", "text": "The clock is green in colour."})
        + "\n"
        + json.dumps({"id": "2/2001", "text": "Answer: man wearing a hat"})
        + "\n"
        + json.dumps({"id": "1/1383", "text": "a cat"})
        + "\n"
    )
    out = tmp_path / "out"
    args = ["score", "--task", "vg_cap", "--predictions", str(predictions), "--output", str(out)]
    for key, path in paths.items():
        args += ["--data", f"{key}={path}"]
    assert main(args) == 0
    rows = {r["id"]: r for r in map(json.loads, (out / "samples.jsonl").read_text().splitlines())}
    assert rows["1/1382"]["rouge_l"] == pytest.approx(100.0)
    assert rows["2/2001"]["caption"] == " man wearing a hat"
    assert rows["2/2001"]["rouge_l"] == pytest.approx(100.0)
    assert rows["1/1383"]["rouge_l"] == 0.0
    results = json.loads((out / "results.json").read_text())
    assert results["metrics"]["rouge_l"] == pytest.approx(200 / 3)
    assert 0 < results["metrics"]["meteor"] < 100
