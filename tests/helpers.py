"""Builders of small data files in the benchmarks' real formats, for tests and benchmarks."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.regions import Region

LVIS_NAMES = [
    "bow_(weapon)",
    "teddy_bear",
    "baseball_glove",
    "tennis_racket",
    "fire_engine",
    "cow",
    "zebra",
    "Christmas_tree",
    "dog",
    "cat",
]
PACO_NAMES = ["trash_can:lid", "bench:leg", "mug:handle", "car_(automobile):wheel", "chair:seat"]


def polygon_square(x: int, y: int, s: int) -> list[list[float]]:
    return [[x, y, x + s, y, x + s, y + s, x, y + s]]


def write_osprey_subset(
    path: Path, names: list[str], n_images: int, seed: int = 0, rle_every: int = 3
) -> list[dict[str, Any]]:
    """Osprey's ``*_val_1k_category.json`` layout: image records with parallel lists."""
    rng = random.Random(seed)
    records = []
    for i in range(n_images):
        h, w = rng.randint(40, 80), rng.randint(40, 80)
        k = rng.randint(1, 5)
        cats, anns = [], []
        for j in range(k):
            s = rng.randint(5, 15)
            x, y = rng.randint(0, w - s - 1), rng.randint(0, h - s - 1)
            if (i + j) % rle_every == 0:
                mask = np.zeros((h, w), np.uint8)
                mask[y : y + s, x : x + s] = 1
                seg: Any = Region.from_mask(mask).rle
            else:
                seg = polygon_square(x, y, s)
            cats.append(rng.choice(names))
            anns.append({"segmentation": seg})
        records.append(
            {
                "file_name": f"{100000 + i:012d}.jpg",
                "height": h,
                "width": w,
                "categories": cats,
                "annotations": anns,
            }
        )
    path.write_text(json.dumps(records))
    return records


def write_coco_style(path: Path, names: list[str], n_images: int, seed: int = 0) -> dict[str, Any]:
    """Raw LVIS v1 / PACO-LVIS style: images (coco_url, no file_name), annotations, categories."""
    rng = random.Random(seed)
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(names)]
    images, anns = [], []
    ann_id = 1
    for i in range(n_images):
        img_id = 1000 + i * 7
        h, w = rng.randint(40, 80), rng.randint(40, 80)
        images.append(
            {
                "id": img_id,
                "height": h,
                "width": w,
                "coco_url": f"http://images.cocodataset.org/val2017/{img_id:012d}.jpg",
            }
        )
        for _ in range(rng.randint(0, 3)):
            s = rng.randint(5, 15)
            x, y = rng.randint(0, w - s - 1), rng.randint(0, h - s - 1)
            anns.append(
                {
                    "id": ann_id,
                    "image_id": img_id,
                    "category_id": rng.choice(cats)["id"],
                    "segmentation": polygon_square(x, y, s),
                    "iscrowd": 0,
                }
            )
            ann_id += 1
    data = {"images": images, "annotations": anns, "categories": cats}
    path.write_text(json.dumps(data))
    return data


def write_predictions(path: Path, rows: list[tuple[str, str]]) -> None:
    path.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in rows))


def write_images(folder: Path, records: list[dict[str, Any]]) -> None:
    """A flat-colour JPEG of the right size for every image record."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for k, r in enumerate(records):
        Image.new("RGB", (r["width"], r["height"]), (k * 40 % 255, 90, 160)).save(folder / r["file_name"])


def run_replay(task: str, predictions: Path, output: Path, *extra: str) -> dict[str, Any]:
    """``evalkit run --model replay`` on a predictions file; returns its results.json."""
    from evalkit.cli import main

    args = ["run", "--model", "replay", "--model-args", f"path={predictions}", "--task", task]
    assert main([*args, *extra, "--output", str(output)]) == 0
    results: dict[str, Any] = json.loads((output / "results.json").read_text())
    return results
