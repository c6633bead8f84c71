"""refcocog_cap: the three data layouts, and `evalkit score` parity with pycocoevalcap."""

from __future__ import annotations

import json
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from evalkit.cli import main
from evalkit.errors import DataError
from evalkit.regions import Region
from evalkit.task import get_task
from tests.coco_reference import pycocoevalcap_scores

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="needs Java")

CAPTIONS = [
    "the man in a blue shirt on the left",
    "a brown dog lying next to the sofa",
    "white plate with a slice of cake",
    "the woman holding an umbrella",
    "a red car parked near the tree",
    "small child wearing a yellow hat",
    "the laptop on the desk",
    "a black cat sitting on the windowsill",
]


def write_osprey_file(path: Path, n: int = 24, seed: int = 0) -> dict[str, Any]:
    """A file in the layout of Osprey's finetune_refcocog_val_with_mask.json (MDETR style)."""
    rng = random.Random(seed)
    images, annotations = [], []
    for k in range(n):
        coco_id = 9 + k // 2  # two expressions per COCO image, as in the real file
        h, w = 480, 640
        x, y = rng.randint(0, 300), rng.randint(0, 200)
        polygon = [x, y, x + 120.5, y, x + 120.5, y + 90.0, x, y + 90.0]
        images.append(
            {
                "file_name": f"COCO_train2014_{coco_id:012d}.jpg",
                "height": h,
                "width": w,
                "id": 100 + k,
                "original_img_id": coco_id,
                "caption": CAPTIONS[k % len(CAPTIONS)],
                "dataset_name": "refcocog",
                "tokens_negative": [[0, 3]],
                "sentence_id": k,
            }
        )
        segmentation: Any = [polygon]
        if k % 5 == 4:  # some regions as RLE
            from pycocotools import mask as mask_utils

            rle = mask_utils.merge(mask_utils.frPyObjects([polygon], h, w))
            segmentation = {"size": rle["size"], "counts": rle["counts"].decode()}
        annotations.append(
            {
                "area": 10845.0,
                "iscrowd": 0,
                "image_id": 100 + k,
                "category_id": 1,
                "id": 5000 + k,
                "bbox": [x, y, 120.5, 90.0],
                "tokens_positive": [[0, 7]],
                "segmentation": segmentation,
            }
        )
    raw = {
        "images": images,
        "annotations": annotations,
        "categories": [{"supercategory": "person", "id": 1, "name": "person"}],
    }
    path.write_text(json.dumps(raw))
    return raw


def osprey_postprocess(output: str) -> str:
    """refcocog_eval.py's decoding, rewritten from its description."""
    output = output.strip()
    if output.endswith("</s>"):
        output = output[: -len("</s>")]
    output = output.strip()
    if ":" in output:
        output = output.split(":")[1]
    return output.replace(".", ".\n")


def model_outputs(raw: dict[str, Any], seed: int = 1) -> dict[str, str]:
    rng = random.Random(seed)
    captions = {img["id"]: img["caption"] for img in raw["images"]}
    outputs = {}
    for k, ann in enumerate(raw["annotations"]):
        truth = captions[ann["image_id"]]
        choice = k % 8
        if choice == 0:
            text = ""  # empty output
        elif choice == 1:
            text = f"Region: {truth}."  # colon: keep what follows
        elif choice == 2:
            text = f"a: {truth}: extra"  # two colons: keep the middle
        elif choice == 3:
            text = f"{truth}.</s>"
        elif choice == 4:
            text = "st.louis 3.5 men. standing"  # dots inside tokens
        elif choice == 5:
            text = "   "
        else:
            words = truth.split()
            rng.shuffle(words)
            text = " ".join(words[: rng.randint(1, len(words))])
        outputs[str(ann["id"])] = text
    return outputs


@pytest.mark.slow
@needs_java
def test_score_equals_pycocoevalcap_after_reference_postprocessing(tmp_path: Path) -> None:
    data = tmp_path / "finetune_refcocog_val_with_mask.json"
    raw = write_osprey_file(data)
    outputs = model_outputs(raw)
    predictions = tmp_path / "preds.jsonl"
    lines = [json.dumps({"id": k, "text": v}) for k, v in outputs.items()]
    random.Random(2).shuffle(lines)
    predictions.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    rc = main(
        [
            "score",
            "--task",
            "refcocog_cap",
            "--data",
            f"annotations={data}",
            "--predictions",
            str(predictions),
            "--output",
            str(out),
        ]
    )
    assert rc == 0
    results = json.loads((out / "results.json").read_text())

    # The ground truth and result files refcocog_eval.py writes, scored with pycocoevalcap.
    captions = {img["id"]: img["caption"] for img in raw["images"]}
    refs = {str(a["id"]): [captions[a["image_id"]]] for a in raw["annotations"]}
    preds = {k: osprey_postprocess(v) for k, v in outputs.items()}
    reference = pycocoevalcap_scores(refs, preds)["corpus"]
    assert results["metrics"]["meteor"] == pytest.approx(reference["meteor"], abs=1e-3)
    assert results["metrics"]["cider"] == pytest.approx(reference["cider"], abs=1e-3)
    assert results["n"] == 24 and results["counts"]["references"] == 24
    assert 0 < results["metrics"]["meteor"] < 100 and results["metrics"]["cider"] > 0

    rows = {r["id"]: r for r in map(json.loads, (out / "samples.jsonl").read_text().splitlines())}
    assert rows["5001"]["caption"] == f" {CAPTIONS[1]}.\n"  # colon rule, then '.' -> '.\n'
    assert rows["5002"]["caption"] == f" {CAPTIONS[2]}"
    # "." -> ".\n" splits "3.5" (the reference quirk); PTB keeps "st." as an abbreviation.
    assert rows["5004"]["tokens"] == "st. louis 3 5 men standing"
    assert rows["5000"]["tokens"] == "" and rows["5000"]["cider"] == 0.0


def test_osprey_layout_samples(tmp_path: Path) -> None:
    data = tmp_path / "val.json"
    raw = write_osprey_file(data, n=6)
    images = tmp_path / "coco"
    images.mkdir()
    (images / "000000000009.jpg").write_bytes(b"")  # a flat "all COCO images" folder
    task = get_task("refcocog_cap")
    read = task.load_samples({"annotations": data, "images": images})
    assert [s.id for s in read.samples] == [str(a["id"]) for a in raw["annotations"]]
    first = read.samples[0]
    assert first.target == CAPTIONS[0]
    assert first.image == "COCO_train2014_000000000009.jpg"
    assert first.image_path == str(images / "000000000009.jpg")  # Osprey's split('_')[-1]
    assert first.regions[0].kind == "mask" and first.regions[0].area() > 10000
    # Annotation 4 is stored as RLE: it decodes to the polygon its bbox corners describe.
    ann = raw["annotations"][4]
    assert isinstance(ann["segmentation"], dict)
    x, y, w, h = ann["bbox"]
    rebuilt = Region.from_polygons([[x, y, x + w, y, x + w, y + h, x, y + h]], 480, 640)
    decoded = read.samples[4].regions[0]
    assert decoded.area() == rebuilt.area() == 10890
    assert (decoded.to_mask() == rebuilt.to_mask()).all()
    prompts = {r.prompt for r in task.build_requests(read.samples)}
    assert prompts == {
        "<image>\n.\nThis provides an overview of the picture.\n"
        "Please give me a short description of <region>."
    }


def test_refer_toolkit_layout(tmp_path: Path) -> None:
    refs = [
        {
            "ref_id": 1,
            "ann_id": 11,
            "image_id": 1,
            "split": "val",
            "category_id": 1,
            "file_name": "COCO_train2014_000000000001_11.jpg",
            "sent_ids": [1, 2],
            "sentences": [
                {"sent_id": 1, "sent": "a man in red", "raw": "A man in red.", "tokens": []},
                {"sent_id": 2, "sent": "the left man", "raw": "The left man", "tokens": []},
            ],
        },
        {
            "ref_id": 2,
            "ann_id": 12,
            "image_id": 1,
            "split": "train",
            "category_id": 1,
            "file_name": "x",
            "sent_ids": [3],
            "sentences": [{"sent_id": 3, "sent": "train only", "raw": "", "tokens": []}],
        },
        {
            "ref_id": 3,
            "ann_id": 13,
            "image_id": 2,
            "split": "val",
            "category_id": 2,
            "file_name": "y",
            "sent_ids": [4],
            "sentences": [{"sent_id": 4, "sent": "a dog", "raw": "A dog", "tokens": []}],
        },
    ]
    refs_path = tmp_path / "refs(umd).p"
    refs_path.write_bytes(pickle.dumps(refs, protocol=2))
    instances = {
        "images": [
            {"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "height": 100, "width": 120},
            {"id": 2, "file_name": "COCO_train2014_000000000002.jpg", "height": 50, "width": 60},
        ],
        "annotations": [
            {
                "id": 11,
                "image_id": 1,
                "category_id": 1,
                "bbox": [0, 0, 10, 10],
                "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]],
            },
            {
                "id": 12,
                "image_id": 1,
                "category_id": 1,
                "bbox": [0, 0, 5, 5],
                "segmentation": [[0, 0, 5, 0, 5, 5, 0, 5]],
            },
            {
                "id": 13,
                "image_id": 2,
                "category_id": 2,
                "bbox": [1, 1, 4, 4],
                "segmentation": [[1, 1, 5, 1, 5, 5, 1, 5]],
            },
        ],
    }
    instances_path = tmp_path / "instances.json"
    instances_path.write_text(json.dumps(instances))
    task = get_task("refcocog_cap_refer")
    data = task.resolve_data({"refs": str(refs_path), "instances": str(instances_path)}, command="score")
    read = task.load_samples(data)
    assert [s.id for s in read.samples] == ["11", "13"]  # split val only
    assert read.samples[0].target == ["a man in red", "the left man"]
    assert read.samples[1].target == "a dog"
    assert read.files == [refs_path, instances_path]
    assert "refer toolkit" in read.notes[0]

    # A pickle holding anything but plain data is refused (pickles can run code).
    evil = tmp_path / "evil.p"
    evil.write_bytes(pickle.dumps([{"split": "val", "obj": Path("/")}]))
    with pytest.raises(DataError, match="not plain data"):
        task.load_samples({**data, "refs": evil})
    with pytest.raises(DataError, match="no path given"):
        task.load_samples({**data, "instances": None})


def test_sphinx_v_ground_truth_loads_as_references(shared_dir: Path) -> None:
    path = shared_dir / "fixtures" / "sphinx_v" / "RefCOCOg_brief_caption_gt.json"
    task = get_task("refcocog_cap")
    read = task.load_samples({"annotations": path, "images": None})
    assert len(read.samples) == 4896
    assert read.samples[0].id == "1"
    assert read.samples[0].target == "a bush of plant behind middle woman"
    assert read.samples[1].target == "green plant behind a table visible behind a lady ' s head"
    assert all(s.regions == [] for s in read.samples)
    assert "references only" in read.notes[0]


def test_bad_input_names_file_and_record(tmp_path: Path) -> None:
    data = tmp_path / "bad.json"
    raw = write_osprey_file(data, n=3)
    raw["annotations"][1]["image_id"] = 999
    data.write_text(json.dumps(raw))
    task = get_task("refcocog_cap")
    with pytest.raises(
        DataError, match=r"bad\.json, record annotations\[1\] \(id 5001\): unknown image_id 999"
    ):
        task.load_samples({"annotations": data, "images": None})
    data.write_text(json.dumps([1, 2]))
    with pytest.raises(DataError, match=r"expected Osprey's finetune_refcocog_val_with_mask\.json"):
        task.load_samples({"annotations": data, "images": None})
