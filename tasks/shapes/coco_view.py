"""The shapes scenes in COCO instances and refer-toolkit files, for the closed-set views
(``shapes_region_cls``, ``shapes_rec_candidates``: RegionGPT's protocols on shapes).

Written once per split from ``<split>/cls.json`` (the regions ``shapes_cls`` asks about) into
``<split>/closed_set_v<FORMAT_VERSION>/`` (the generator's own files are not touched):

* ``instances.json`` — COCO instances: image id = the scene's number + 1, annotation id =
  image id x 100 + instance id (never 0: COCOeval treats a match to id 0 as none), the
  visible mask as RLE, its tight ``bbox`` and pixel ``area``, ``iscrowd`` 0; categories =
  every :func:`.scenes.all_categories` name as :func:`.scenes.category_phrase` writes it
  (``red circle``, ``house roof``), id = position + 1.
* ``refs(shapes).p`` — refer-toolkit refs (``split`` = the shapes split): one per region
  whose category is the only one of its kind in the image (so the expression names exactly
  one region), expression = its canonical caption (``a red circle``, ``the roof of a
  house``), ``sent_id`` = ``ref_id`` = its annotation id.
* ``proposals.json`` — :mod:`evalkit.tasks.closed_set.proposals`' format, "from the
  scenes": per region its box with each edge moved by up to a quarter of the box's size
  and a score in [0.35, 1], plus one or two low-scoring (< 0.3) stray boxes per image;
  seeded per image by file name (``random.Random("shapes-proposals:<file name>")``). The
  jitter makes some boxes miss their region (IoU < 0.5), so the ground truth is injected
  now and then, as with a real detector.
"""

from __future__ import annotations

import json
import pickle
import random
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from evalkit.files import build_dir_once
from evalkit.readers import load_json
from evalkit.regions import Region

from .scenes import all_categories, category_phrase, ensure_shapes, region_captions

FORMAT_VERSION = 1
JITTER = 0.25  # each box edge moves by up to this fraction of the box's width / height
STRAY_SCORE = (0.05, 0.25)  # stray boxes score below the candidates' 0.3 threshold


@dataclass(frozen=True)
class CocoViewPaths:
    root: Path

    @property
    def instances(self) -> Path:
        return self.root / "instances.json"

    @property
    def refs(self) -> Path:
        return self.root / "refs(shapes).p"

    @property
    def proposals(self) -> Path:
        return self.root / "proposals.json"


def ensure_coco_view(split: str) -> CocoViewPaths:
    """``<shapes>/<split>/closed_set_v1``, written on first use (atomic; safe when racing)."""
    split_dir = ensure_shapes().split(split)
    out = split_dir / f"closed_set_v{FORMAT_VERSION}"
    built = build_dir_once(out, lambda folder: write_coco_view(split_dir, split, folder), "shapes coco\n")
    return CocoViewPaths(built)


def image_id_of(file_name: str) -> int:
    """``val_00012.png`` -> 13."""
    return int(PurePosixPath(file_name).stem.rsplit("_", 1)[1]) + 1


def write_coco_view(split_dir: Path, split: str, out: Path) -> None:
    categories = [category_phrase(c) for c in all_categories()]
    category_id = {name: k for k, name in enumerate(categories, start=1)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    refs: list[dict[str, Any]] = []
    proposals: dict[str, list[list[float]]] = {}
    for record in load_json(split_dir / "cls.json"):
        image_id = image_id_of(record["file_name"])
        height, width = int(record["height"]), int(record["width"])
        images.append({"id": image_id, "file_name": record["file_name"], "height": height, "width": width})
        names = [category_phrase(c) for c in record["categories"]]
        boxes = []
        for category, name, ann in zip(record["categories"], names, record["annotations"], strict=True):
            mask = Region.from_rle(ann["segmentation"], height, width).to_mask()
            x, y, w, h = _bbox(mask)
            ann_id = image_id * 100 + int(ann["instance_id"])
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": category_id[name],
                    "segmentation": ann["segmentation"],
                    "area": int(mask.sum()),
                    "bbox": [x, y, w, h],
                    "iscrowd": 0,
                }
            )
            boxes.append((float(x), float(y), float(x + w), float(y + h)))
            if names.count(name) == 1:
                sentence = region_captions(category)[0]
                refs.append(
                    {
                        "ref_id": ann_id,
                        "ann_id": ann_id,
                        "image_id": image_id,
                        "split": split,
                        "file_name": record["file_name"],
                        "category_id": category_id[name],
                        "sentences": [{"sent_id": ann_id, "sent": sentence, "raw": sentence}],
                    }
                )
        proposals[str(image_id)] = scene_proposals(record["file_name"], boxes, height, width)
    cats = [{"id": k, "name": name, "supercategory": "shape"} for name, k in category_id.items()]
    (out / "instances.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": cats})
    )
    (out / "refs(shapes).p").write_bytes(pickle.dumps(refs, protocol=2))
    (out / "proposals.json").write_text(json.dumps(proposals))


def scene_proposals(
    file_name: str, boxes: list[tuple[float, float, float, float]], height: int, width: int
) -> list[list[float]]:
    """One image's proposals (module docstring), seeded by its file name."""
    rng = random.Random(f"shapes-proposals:{file_name}")
    out: list[list[float]] = []
    for x1, y1, x2, y2 in boxes:
        w, h = x2 - x1, y2 - y1
        moved = [
            x1 + rng.uniform(-JITTER, JITTER) * w,
            y1 + rng.uniform(-JITTER, JITTER) * h,
            x2 + rng.uniform(-JITTER, JITTER) * w,
            y2 + rng.uniform(-JITTER, JITTER) * h,
        ]
        out.append([*_clipped(moved, height, width), round(rng.uniform(0.35, 1.0), 3)])
    for _ in range(rng.randint(1, 2)):
        size = rng.uniform(0.1, 0.4) * min(height, width)
        x, y = rng.uniform(0, width - size), rng.uniform(0, height - size)
        stray = _clipped([x, y, x + size, y + size], height, width)
        out.append([*stray, round(rng.uniform(*STRAY_SCORE), 3)])
    return out


def _clipped(box: list[float], height: int, width: int) -> list[float]:
    x1, y1 = min(max(box[0], 0.0), width - 2.0), min(max(box[1], 0.0), height - 2.0)
    x2, y2 = max(min(box[2], float(width)), x1 + 2.0), max(min(box[3], float(height)), y1 + 2.0)
    return [round(x1, 2), round(y1, 2), round(x2, 2), round(y2, 2)]


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)
