"""COCO-panoptic reader: samples, vocabulary files, clear errors; the shapes panoptic view."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from evalkit.tasks.ovseg.coco_panoptic import read_vocabulary
from PIL import Image

from evalkit.cli import main
from evalkit.errors import DataError
from evalkit.task import get_task
from tests.helpers import run_replay
from tests.ovseg_support import fake_encoder, make_dataset

ADE_KEYS = ("panoptic_json", "panoptic_root", "semantic_root", "instances_json", "vocabulary")


def _overrides(paths: dict[str, Path], images: Path | None = None) -> dict[str, str]:
    out = {k: str(paths[k]) for k in ADE_KEYS}
    if images is not None:
        out["images"] = str(images)
    return out


def test_samples_one_per_segment_in_id_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = make_dataset(tmp_path, n_images=2, seed=1)
    args = ["samples", "--task", "ade20k_ovseg", "--data", f"images={tmp_path}/img"]
    for key in ADE_KEYS:
        args += ["--data", f"{key}={paths[key]}"]
    assert main(args) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    pan = json.loads(paths["panoptic_json"].read_text())
    expected = [
        f"{a['image_id']}#{sid}"
        for a in pan["annotations"]
        for sid in sorted(s["id"] for s in a["segments_info"])
    ]
    assert [r["id"] for r in rows] == expected
    first = rows[0]
    assert first["image"] == "img_00000.jpg" and first["segment_id"] == int(first["id"].split("#")[1])
    assert first["prompt"] == (
        "<image>\n.\nThis provides an overview of the picture.\nWhat is in <region>? Using a short phrase."
    )
    # the region is exactly the segment's pixels
    seg = np.asarray(Image.open(paths["panoptic_root"] / "img_00000.png"), dtype=np.uint32)
    ids = seg[..., 0] + 256 * seg[..., 1] + 65536 * seg[..., 2]
    from evalkit.regions import Region

    mask = Region.from_json(first["regions"][0]).to_mask()
    assert np.array_equal(mask.astype(bool), ids == first["segment_id"])
    target = {s["id"]: s["category_id"] for s in pan["annotations"][0]["segments_info"]}[first["segment_id"]]
    assert first["target"] == f"cls{target}"


def _read(task: str, overrides: dict[str, str]) -> None:
    t = get_task(task)
    t.load_samples(t.resolve_data(overrides))


def test_png_id_missing_from_json(tmp_path: Path) -> None:
    paths = make_dataset(tmp_path, n_images=1, seed=2)
    pan = json.loads(paths["panoptic_json"].read_text())
    dropped = pan["annotations"][0]["segments_info"].pop(3)
    paths["panoptic_json"].write_text(json.dumps(pan))
    with pytest.raises(
        DataError, match=rf"segment ids \[{dropped['id']}\] are in the PNG but not in panoptic.json"
    ):
        _read("ade20k_ovseg", _overrides(paths, tmp_path))


def test_json_segment_absent_from_png(tmp_path: Path) -> None:
    """Issue 20 A4: the reference's queries are the PNG's ids, so a JSON segment without
    pixels is never asked about (it was a DataError here); it is listed, and PQ counts it."""
    paths = make_dataset(tmp_path, n_images=1, seed=3)
    task = get_task("ade20k_ovseg")
    before = task.load_samples(task.resolve_data(_overrides(paths, tmp_path)))
    pan = json.loads(paths["panoptic_json"].read_text())
    pan["annotations"][0]["segments_info"].append({"id": 77, "category_id": 0, "area": 5, "iscrowd": 0})
    paths["panoptic_json"].write_text(json.dumps(pan))
    read = task.load_samples(task.resolve_data(_overrides(paths, tmp_path)))
    assert [s.id for s in read.samples] == [s.id for s in before.samples]
    assert "img_00000#77" not in {s.id for s in read.samples}
    assert any(
        "1 JSON segment(s) have no pixel in their PNG" in n and "img_00000#77" in n for n in read.notes
    )
    # Scoring (no images: the PNG is read for its ids) agrees on the samples.
    scored = task.load_samples(task.resolve_data(_overrides(paths), "score"))
    assert [s.id for s in scored.samples] == [s.id for s in before.samples]


def test_size_mismatches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = make_dataset(tmp_path, n_images=1, seed=4)
    pan = json.loads(paths["panoptic_json"].read_text())
    pan["images"][0]["width"] = 65
    paths["panoptic_json"].write_text(json.dumps(pan))
    with pytest.raises(DataError, match=r"PNG is 64x48 but panoptic\.json says 65x48"):
        _read("ade20k_ovseg", _overrides(paths, tmp_path))
    pan["images"][0]["width"] = 64
    paths["panoptic_json"].write_text(json.dumps(pan))
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(paths["semantic_root"] / "img_00000.png")
    monkeypatch.setattr("evalkit.tasks.ovseg.ovseg.minilm", lambda: fake_encoder)
    preds = tmp_path / "p.jsonl"
    task = get_task("ade20k_ovseg")
    samples = task.load_samples(task.resolve_data(_overrides(paths), "score")).samples
    preds.write_text("".join(json.dumps({"id": s.id, "text": "cls1"}) + "\n" for s in samples))
    args = [
        "score",
        "--task",
        "ade20k_ovseg",
        "--predictions",
        str(preds),
        "--output",
        str(tmp_path / "o"),
    ]
    for key, value in _overrides(paths).items():
        args += ["--data", f"{key}={value}"]
    assert main(args) == 2  # a DataError, printed as one line


def test_semantic_size_mismatch_message(tmp_path: Path) -> None:
    from evalkit.tasks.ovseg.coco_panoptic import read_semantic

    path = tmp_path / "s.png"
    Image.fromarray(np.zeros((10, 12), dtype=np.uint8)).save(path)
    with pytest.raises(DataError, match=r"s\.png, record image x: semantic PNG is 12x10, panoptic PNG 64x48"):
        read_semantic(path, (48, 64), "image x")


def test_osprey_vocabulary_files(shared_dir: Path) -> None:
    ade = read_vocabulary(shared_dir / "fixtures/osprey/ade20k_150_with_prompt_eng.txt", 150)
    assert ade.synonyms[0] == ["wall", "walls", "brick wall", "stone wall", "interior wall"]
    assert ade.synonyms[149] == ["flag", "flags"]
    city = read_vocabulary(shared_dir / "fixtures/osprey/cityscapes_with_prompt_eng.txt", 19)
    assert city.synonyms[0] == ["road", "railroad"] and city.synonyms[18][-1] == "bikes"
    with pytest.raises(DataError, match="19 classes but the panoptic JSON has 150 categories"):
        read_vocabulary(shared_dir / "fixtures/osprey/cityscapes_with_prompt_eng.txt", 150)


def test_vocabulary_format_errors(tmp_path: Path) -> None:
    path = tmp_path / "v.txt"
    path.write_text("0:a\n2:b\n")
    with pytest.raises(DataError, match="line 2: index 2 out of order"):
        read_vocabulary(path, 2)
    path.write_text("0:a,b\nnot a line\n")
    with pytest.raises(DataError, match=r"line 2: expected 'index:name1,name2,\.\.\.'"):
        read_vocabulary(path, 2)


@pytest.mark.slow
def test_shapes_ovseg_perfect_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shapes panoptic view, run through the engine with replayed answers."""
    monkeypatch.setattr("evalkit.tasks.ovseg.ovseg.minilm", lambda: fake_encoder)
    assert main(["samples", "--task", "shapes_ovseg", "--limit", "40"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["target"] for r in rows} >= {"background"}
    assert all(r["id"] == f"{r['image_id']}#{r['segment_id']}" for r in rows)
    task = get_task("shapes_ovseg")
    samples = task.load_samples(task.resolve_data({}, "score")).samples
    cats = {c for s in samples for c in [s.target]}
    assert "background" in cats and any(c.startswith("house ") for c in cats)
    preds = tmp_path / "perfect.jsonl"
    preds.write_text("".join(json.dumps({"id": s.id, "text": s.target}) + "\n" for s in samples))
    metrics = run_replay("shapes_ovseg", preds, tmp_path / "run")["metrics"]
    assert metrics["pq"] == pytest.approx(100.0)
    assert metrics["ap"] == pytest.approx(100.0)
    assert metrics["miou"] == pytest.approx(100.0)
    # background is the only stuff class; nearly hidden regions are VOID (not samples)
    assert metrics["pq_st"] == pytest.approx(100.0)


def test_semantic_label_outside_the_classes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = make_dataset(tmp_path, n_images=1, seed=6)
    sem_path = paths["semantic_root"] / "img_00000.png"
    sem = np.array(Image.open(sem_path))
    sem[0, 0] = 200  # 12 classes: neither a class nor 255
    Image.fromarray(sem).save(sem_path)
    monkeypatch.setattr("evalkit.tasks.ovseg.ovseg.minilm", lambda: fake_encoder)
    task = get_task("ade20k_ovseg")
    data = task.resolve_data(_overrides(paths), "score")
    samples = task.load_samples(data).samples
    with pytest.raises(DataError, match=r"img_00000\.png, record image img_00000: label 200 is neither"):
        task.score(samples, {s.id: "cls1" for s in samples}, data)
