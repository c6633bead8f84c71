"""evalkit's ovseg scoring equals the reference tools to 1e-6 on generated data.

Reference = dense Mask2Former inference in torch (as Osprey's script) + panopticapi
``pq_compute_single_core`` + pycocotools ``COCOeval`` + detectron2's mIoU formula
(tests/ovseg_reference.py). Data: VOID, crowds, tiny segments, JSON stuff areas larger than
their pixels, classes absent from the ground truth, and a 12-class vocabulary so that the
top-100 instance cut keeps only part of the (query, class) pairs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("panopticapi")

from evalkit.answers import clean_decoded
from evalkit.cli import main
from evalkit.metrics.ovseg_assembly import class_cosines
from tests.ovseg_reference import dense_inference, derived_instances, reference_metrics, rgb2id_file
from tests.ovseg_support import fake_encoder, make_dataset, make_predictions


@pytest.fixture()
def fake_minilm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("evalkit.tasks.ovseg.ovseg.minilm", lambda: fake_encoder)


def reference_for(paths: dict[str, Path], preds: Path, instances_gt: dict) -> dict[str, float]:
    pan = json.loads(paths["panoptic_json"].read_text())
    ranked = sorted(pan["categories"], key=lambda c: c["id"])
    thing = {k for k, c in enumerate(ranked) if c.get("isthing") == 1}
    lines = paths["vocabulary"].read_text().splitlines()
    vocab = [
        line.split(":")[1].replace(", ", ",").split(",")
        for line in lines
        if line.split(":")[1] != "invalid_class_id"
    ]
    texts = {}
    for line in preds.read_text().splitlines():
        row = json.loads(line)
        texts[row["id"]] = row["text"]
    outputs = []
    for ann in pan["annotations"]:
        pan_gt = rgb2id_file(paths["panoptic_root"] / ann["file_name"])
        # The reference asks about query j = the j-th id of the PNG; it asks min(300, JSON
        # segments) questions, so a JSON segment without pixels is a question about an empty
        # mask beyond the PNG's ids (void: its answer changes nothing).
        in_png = set(np.unique(pan_gt).tolist())
        json_ids = sorted(s["id"] for s in ann["segments_info"])
        ids = [i for i in json_ids if i in in_png] + [i for i in json_ids if i not in in_png]
        answers = [clean_decoded(texts.get(f"{ann['image_id']}#{sid}", "unasked")) for sid in ids]
        cos = class_cosines(answers, vocab, fake_encoder)
        out = dense_inference(pan_gt, cos, len(ids), thing)
        out.image_id = ann["image_id"]
        outputs.append(out)
    sem_paths = {a["image_id"]: paths["semantic_root"] / a["file_name"] for a in pan["annotations"]}
    if "gtFine" in pan["annotations"][0]["file_name"]:  # Cityscapes layout
        sem_paths = {
            i: paths["semantic_root"] / i.split("_")[0] / f"{i}_gtFine_labelTrainIds.png" for i in sem_paths
        }
    return reference_metrics(outputs, paths["panoptic_json"], paths["panoptic_root"], sem_paths, instances_gt)


def evalkit_score(task: str, paths: dict[str, Path], preds: Path, out: Path, keys: list[str]) -> dict:
    args = ["score", "--task", task, "--predictions", str(preds), "--output", str(out)]
    for key in keys:
        args += ["--data", f"{key}={paths[key]}"]
    assert main(args) == 0
    return json.loads((out / "results.json").read_text())


ADE_KEYS = ["panoptic_json", "panoptic_root", "semantic_root", "instances_json", "vocabulary"]


@pytest.mark.parametrize(
    ("seed", "n_classes", "n_things", "segments"),
    [
        (0, 12, 7, 15),  # a dozen classes: 15 x 12 pairs, the top-100 cut matters
        (1, 12, 5, 9),  # fewer real pairs than 100: padding pairs fill the top 100
        (2, 40, 25, 20),
    ],
)
def test_ade20k_ovseg_matches_reference_tools(
    tmp_path: Path, fake_minilm: None, seed: int, n_classes: int, n_things: int, segments: int
) -> None:
    paths = make_dataset(
        tmp_path / "data",
        n_images=5,
        n_classes=n_classes,
        n_things=n_things,
        segments=segments,
        seed=seed,
    )
    preds = make_predictions(paths, tmp_path / "preds.jsonl", seed=seed)
    ours = evalkit_score("ade20k_ovseg", paths, preds, tmp_path / "out", ADE_KEYS)
    instances_gt = json.loads(paths["instances_json"].read_text())
    ref = reference_for(paths, preds, instances_gt)
    assert set(ours["metrics"]) == {"pq", "sq", "rq", "pq_th", "pq_st", "ap", "ap50", "miou"}
    for name, value in ref.items():
        assert ours["metrics"][name] == pytest.approx(value, abs=1e-6), name
    assert 0 < ours["metrics"]["pq"] < 100 and 0 < ours["metrics"]["ap"] < 100


@pytest.mark.parametrize("seed", [5, 6])
def test_cityscapes_ovseg_matches_reference_tools(tmp_path: Path, fake_minilm: None, seed: int) -> None:
    """Cityscapes layout: label ids ranked into trainIds, city folders, AP on instances
    derived from the panoptic thing segments (crowds as iscrowd)."""
    paths = make_dataset(
        tmp_path / "data", n_images=4, n_classes=19, n_things=8, seed=seed, layout="cityscapes"
    )
    preds = make_predictions(paths, tmp_path / "preds.jsonl", seed=seed, p_correct=0.7)
    keys = [k for k in ADE_KEYS if k != "instances_json"]
    ours = evalkit_score("cityscapes_ovseg", paths, preds, tmp_path / "out", keys)
    ref = reference_for(paths, preds, derived_instances(paths["panoptic_json"], paths["panoptic_root"]))
    for name, value in ref.items():
        assert ours["metrics"][name] == pytest.approx(value, abs=1e-6), name


def test_perfect_answers_score_100(tmp_path: Path, fake_minilm: None) -> None:
    paths = make_dataset(tmp_path / "data", n_images=3, seed=3, crowd=False)
    preds = make_predictions(paths, tmp_path / "preds.jsonl", seed=3, p_correct=1.0)
    ours = evalkit_score("ade20k_ovseg", paths, preds, tmp_path / "out", ADE_KEYS)
    m = ours["metrics"]
    # Every segment is classified right: things match exactly, VOID pixels are ignored (255)
    # in the semantic ground truth, so mIoU and things' PQ are 100. Stuff segments of one
    # class merge into one prediction, so stuff PQ may be below 100.
    assert m["miou"] == pytest.approx(100.0)
    assert m["pq_th"] == pytest.approx(100.0)
    assert np.isfinite(m["ap"]) and m["ap"] > 50


def test_equal_answers_keep_query_order_in_ap(tmp_path: Path, fake_minilm: None) -> None:
    """Issue 20 A1: three regions all answered "cls0" (two cars, one person in between by
    segment id, the person the largest). The reference's float32 scores tie, so COCOeval
    keeps query order (car, person, car); float64 put the large person first."""
    from PIL import Image

    from tests.ovseg_support import _rle, id2rgb

    h, w = 40, 40
    pan = np.full((h, w), 4, dtype=np.uint32)  # 4: road (stuff) around everything
    pan[0:10, 0:10] = 1  # car, 100 px
    pan[10:30, 10:30] = 2  # person, 400 px
    pan[30:35, 30:40] = 3  # car, 50 px
    root = tmp_path / "data"
    (root / "panoptic").mkdir(parents=True)
    (root / "semantic").mkdir()
    Image.fromarray(id2rgb(pan)).save(root / "panoptic" / "img_0.png")
    sem = np.select([pan == 1, pan == 2, pan == 3], [0, 1, 0], 3).astype(np.uint8)
    Image.fromarray(sem).save(root / "semantic" / "img_0.png")
    cats = [{"id": k, "name": f"cls{k}", "isthing": int(k < 2)} for k in range(4)]
    seg_cat = {1: 0, 2: 1, 3: 0, 4: 3}
    infos = [
        {"id": i, "category_id": c, "area": int((pan == i).sum()), "iscrowd": 0, "bbox": [0, 0, 1, 1]}
        for i, c in seg_cat.items()
    ]
    images = [{"id": "img_0", "file_name": "img_0.jpg", "height": h, "width": w}]
    pan_json = root / "panoptic.json"
    pan_json.write_text(
        json.dumps(
            {
                "images": images,
                "annotations": [{"image_id": "img_0", "file_name": "img_0.png", "segments_info": infos}],
                "categories": cats,
            }
        )
    )
    anns = [
        {
            "id": i,
            "image_id": "img_0",
            "category_id": c,
            "iscrowd": 0,
            "segmentation": _rle(pan == i),
            "area": int((pan == i).sum()),
        }
        for i, c in seg_cat.items()
        if c < 2
    ]
    inst_json = root / "instances.json"
    inst_json.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats[:2]}))
    vocab = root / "vocabulary.txt"
    vocab.write_text("0:invalid_class_id\n" + "\n".join(f"{k + 1}:cls{k},cls{k} alt" for k in range(4)))
    paths = {
        "panoptic_json": pan_json,
        "panoptic_root": root / "panoptic",
        "semantic_root": root / "semantic",
        "instances_json": inst_json,
        "vocabulary": vocab,
    }
    preds = tmp_path / "preds.jsonl"
    answers = {1: "cls0", 2: "cls0", 3: "cls0", 4: "cls3"}
    preds.write_text("".join(json.dumps({"id": f"img_0#{i}", "text": t}) + "\n" for i, t in answers.items()))
    ours = evalkit_score("ade20k_ovseg", paths, preds, tmp_path / "out", ADE_KEYS)
    ref = reference_for(paths, preds, json.loads(inst_json.read_text()))
    assert ours["metrics"]["ap"] == pytest.approx(ref["ap"], abs=1e-6)
    assert ours["metrics"]["ap50"] == pytest.approx(ref["ap50"], abs=1e-6)
    # By hand, AP of car (TP, FP, TP at any IoU: precision 1 to recall 0.5, then 2/3) and of
    # person (its one detection, tied with two FPs, comes second: 1/2), over 101 recall points.
    car = (51 * 1.0 + 50 * 2 / 3) / 101
    person = 101 * 0.5 / 101
    assert ours["metrics"]["ap"] == pytest.approx(100 * (car + person) / 2, abs=1e-6)


def test_json_segments_without_pixels_are_misses_as_in_panopticapi(tmp_path: Path, fake_minilm: None) -> None:
    """Issue 20 A4: ADE's JSON may name segments with no pixel in the PNG. The reference never
    asks about them (its queries are the PNG's ids) and panopticapi counts each as a false
    negative; evalkit raised a DataError."""
    paths = make_dataset(tmp_path / "data", n_images=3, n_classes=12, n_things=7, segments=10, seed=8)
    preds = make_predictions(paths, tmp_path / "preds.jsonl", seed=8, p_correct=0.8)
    pan = json.loads(paths["panoptic_json"].read_text())
    # thing class 0 (a miss for PQ-Th) in the middle of the id order, and a stuff class 9
    pan["annotations"][0]["segments_info"].append({"id": 3, "category_id": 0, "area": 40, "iscrowd": 0})
    pan["annotations"][1]["segments_info"].append({"id": 5, "category_id": 9, "area": 12, "iscrowd": 0})
    paths["panoptic_json"].write_text(json.dumps(pan))
    ours = evalkit_score("ade20k_ovseg", paths, preds, tmp_path / "out", ADE_KEYS)
    ref = reference_for(paths, preds, json.loads(paths["instances_json"].read_text()))
    for name, value in ref.items():
        assert ours["metrics"][name] == pytest.approx(value, abs=1e-6), name
    img0, img1 = pan["annotations"][0]["image_id"], pan["annotations"][1]["image_id"]
    assert ours["counts"]["segments_without_pixels"] == 2
    assert ours["segments_without_pixels"] == [f"{img0}#3", f"{img1}#5"]
    assert any("2 JSON segment(s) have no pixel" in d for d in ours["provenance"]["deviations"])
