"""The bad-input corpus: every way a user's data can be broken, generated in the real formats.

``build(folder)`` writes one small dataset per case and returns, for each, the CLI arguments
that must fail and the pieces its error message must name (the file and the record).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from evalkit.regions import Region
from tests.helpers import write_images


@dataclass
class Case:
    name: str
    args: list[str]
    expect: list[str]  # substrings the one-line error must contain


def _good_records() -> list[dict]:
    records = []
    for i in range(3):
        h, w = 40, 50
        mask = np.zeros((h, w), np.uint8)
        mask[5:15, 5:20] = 1
        records.append(
            {
                "file_name": f"img{i}.jpg",
                "height": h,
                "width": w,
                "categories": ["dog", "teddy_bear"],
                "annotations": [
                    {"segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]]},
                    {"segmentation": Region.from_mask(mask).rle},
                ],
            }
        )
    return records


def build(root: Path) -> list[Case]:
    cases: list[Case] = []

    def dataset(name: str, records: list[dict] | None = None, raw: bytes | None = None) -> Path:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        ann = folder / "ann.json"
        if raw is not None:
            ann.write_bytes(raw)
        else:
            ann.write_text(json.dumps(records))
        write_images(folder / "images", _good_records())
        return folder

    def run_args(folder: Path, model_args: str = "") -> list[str]:
        return [
            "run",
            "--model",
            "slowfake",
            "--model-args",
            model_args or "delay=0",
            "--task",
            "lvis_cls",
            "--data",
            f"annotations={folder / 'ann.json'}",
            "--data",
            f"images={folder / 'images'}",
            "--output",
            str(folder / "out"),
        ]

    good = _good_records()

    recs = copy.deepcopy(good)
    recs[1].update(height=160, width=200)
    recs[1]["annotations"][1]["segmentation"] = [[40, 40, 90, 40, 90, 90]]
    folder = dataset("corrupt_jpeg", recs)
    noise = np.random.default_rng(0).integers(0, 255, (160, 200, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "images" / "img1.jpg", quality=95)
    data = (folder / "images" / "img1.jpg").read_bytes()
    # Header intact (the pre-flight check passes), scan data cut: fails only when decoded.
    (folder / "images" / "img1.jpg").write_bytes(data[: len(data) // 2])
    cases.append(
        Case(
            "corrupt_jpeg", run_args(folder, "decode=1"), ["img1.jpg", "record img1#0", "cannot decode image"]
        )
    )

    folder = dataset("missing_image", good)
    (folder / "images" / "img2.jpg").unlink()
    cases.append(
        Case("missing_image", run_args(folder), ["images/img2.jpg", "record img2#0", "image file not found"])
    )

    folder = dataset("image_size_mismatch", good)
    Image.new("RGB", (64, 64)).save(folder / "images" / "img0.jpg")
    cases.append(
        Case("image_size_mismatch", run_args(folder), ["img0.jpg", "record img0#0", "the file is 64x64"])
    )

    recs = copy.deepcopy(good)
    recs[1]["annotations"][1]["segmentation"] = Region.from_mask(np.zeros((40, 50), np.uint8)).rle
    folder = dataset("empty_mask", recs)
    cases.append(
        Case("empty_mask", run_args(folder), ["ann.json", "record #1 (img1.jpg) annotation 1", "empty mask"])
    )

    recs = copy.deepcopy(good)
    recs[2]["annotations"][0]["segmentation"] = [[1, 1, 5, 5]]
    folder = dataset("polygon_two_points", recs)
    cases.append(
        Case(
            "polygon_two_points",
            run_args(folder),
            ["ann.json", "record #2 (img2.jpg) annotation 0", ">= 3 (x, y) points"],
        )
    )

    recs = copy.deepcopy(good)
    recs[0]["annotations"][1]["segmentation"] = {"size": [41, 50], "counts": "0"}
    folder = dataset("rle_wrong_size", recs)
    cases.append(
        Case(
            "rle_wrong_size",
            run_args(folder),
            ["ann.json", "record #0 (img0.jpg) annotation 1", "RLE size [41, 50]"],
        )
    )

    recs = copy.deepcopy(good)
    recs[1]["annotations"][0]["segmentation"] = [[60, 45, 90, 45, 90, 80, 60, 80]]
    folder = dataset("region_outside_image", recs)
    cases.append(
        Case(
            "region_outside_image",
            run_args(folder),
            ["ann.json", "record #1 (img1.jpg) annotation 0", "outside the 50x40 image"],
        )
    )

    recs = copy.deepcopy(good)
    recs[2]["file_name"] = "img0.jpg"
    folder = dataset("duplicate_ids", recs)
    cases.append(
        Case("duplicate_ids", run_args(folder), ["ann.json", "record img0#0", "duplicate sample id"])
    )

    recs = copy.deepcopy(good)
    recs[1]["height"] = "40"
    folder = dataset("wrong_json_types", recs)
    cases.append(
        Case(
            "wrong_json_types",
            run_args(folder),
            ["ann.json", "record #1 (img1.jpg)", "field 'height' has the wrong type (str)"],
        )
    )

    recs = copy.deepcopy(good)
    recs[0]["categories"].append("cat")
    folder = dataset("length_mismatch", recs)
    cases.append(
        Case(
            "length_mismatch",
            run_args(folder),
            ["ann.json", "record #0 (img0.jpg)", "3 categories for 2 annotations"],
        )
    )

    folder = dataset("non_utf8", raw=json.dumps(good).replace("teddy_bear", "caf\u00e9").encode("latin-1"))
    cases.append(Case("non_utf8", run_args(folder), ["ann.json", "not UTF-8 text"]))

    folder = dataset("malformed_json", raw=json.dumps(good)[:-20].encode())
    cases.append(Case("malformed_json", run_args(folder), ["ann.json", "malformed JSON"]))

    for name, file_name in (
        ("image_path_traversal", "../../outside.jpg"),
        ("image_path_absolute", "/etc/hostname"),
    ):
        recs = copy.deepcopy(good)
        recs[1]["file_name"] = file_name
        folder = dataset(name, recs)
        cases.append(
            Case(
                name,
                run_args(folder),
                [
                    "images",
                    f"record #1 ({file_name})",
                    f"{file_name!r} is not a path inside the images folder",
                ],
            )
        )

    # Coordinates pycocotools would walk pixel by pixel (NaN, infinity, 1e12): validated first,
    # or the process is killed for memory, even with --on-error skip.
    for name, value, expect in (
        ("polygon_nan", float("nan"), "not a finite number (nan)"),
        ("polygon_infinite", float("inf"), "not a finite number (inf)"),
        ("polygon_huge", 1e12, "coordinates far outside the 50x40 image"),
    ):
        recs = copy.deepcopy(good)
        recs[0]["annotations"][0]["segmentation"] = [[10, 10, value, 10, 30, 30, 10, 30]]
        folder = dataset(name, recs)
        cases.append(Case(name, run_args(folder), ["ann.json", "record #0 (img0.jpg) annotation 0", expect]))

    # RLEs pycocotools decodes silently into uninitialised memory, or crashes on.
    tall = np.zeros((60, 50), np.uint8)
    tall[5:55, 5:20] = 1
    for name, counts, expect in (
        ("rle_short", "52", "its runs cover 7 pixels, its size 2000"),
        ("rle_long", Region.from_mask(tall).rle["counts"], "its runs cover 3000 pixels, its size 2000"),  # type: ignore[index]
        ("rle_garbage", "0\x7f", "is not of the RLE alphabet"),
        ("rle_negative", [-5, 2005], "must be non-negative integers"),
    ):
        recs = copy.deepcopy(good)
        recs[2]["annotations"][1]["segmentation"] = {"size": [40, 50], "counts": counts}
        folder = dataset(name, recs)
        cases.append(Case(name, run_args(folder), ["ann.json", "record #2 (img2.jpg) annotation 1", expect]))

    folder = dataset("predictions_unknown_id", good)
    ids = [f"img{i}#{k}" for i in range(3) for k in range(2)]
    preds = folder / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": x, "text": "dog"}) + "\n" for x in [*ids, "img9#0"]))
    cases.append(
        Case(
            "predictions_unknown_id",
            [
                "score",
                "--task",
                "lvis_cls",
                "--data",
                f"annotations={folder / 'ann.json'}",
                "--predictions",
                str(preds),
                "--output",
                str(folder / "out"),
            ],
            ["preds.jsonl", "record line 7", "id 'img9#0' is not a sample of this task"],
        )
    )

    folder = dataset("predictions_missing_id", good)
    preds = folder / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": x, "text": "dog"}) + "\n" for x in ids[:-1]))
    cases.append(
        Case(
            "predictions_missing_id",
            [
                "score",
                "--task",
                "lvis_cls",
                "--data",
                f"annotations={folder / 'ann.json'}",
                "--predictions",
                str(preds),
                "--output",
                str(folder / "out"),
            ],
            ["preds.jsonl", "no prediction for 1 of 6 request ids", "img2#1"],
        )
    )
    return cases
