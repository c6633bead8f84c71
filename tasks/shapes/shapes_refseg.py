"""``shapes_refseg``: referring segmentation on the shapes scenes ("segment the red circle"),
written as refer toolkit files and read by the RefCOCO reader.

Written once per split into ``<split>/refseg_v<n>/``: ``refs(shapes).p`` (a pickle of plain
data, the toolkit's ``refs(<splitBy>).p`` schema) and ``instances.json`` (COCO instances, the
segmentation an RLE of the object's visible pixels). Every visible object whose name is unique
in its scene is one ref with one sentence, its name (``red circle``, ``house``): the question
then reads "Can you segment the red circle in this image?".
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalkit.files import build_dir_once
from evalkit.readers import ReadResult, load_json, register_reader

from ..refseg.refer_seg import encode, read_refer_files
from .object_masks import scenes_with_objects
from .scenes import VERSION, ensure_shapes, object_names

FORMAT_VERSION = 1
REFS_FILE = "refs(shapes).p"


def write_refseg_split(split_dir: Path, split: str, out: Path) -> None:
    scenes = load_json(split_dir / "scenes.json")
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    refs: list[dict[str, Any]] = []
    for k, scene, objects in scenes_with_objects(split_dir, scenes):
        images.append(
            {"id": k, "file_name": scene["file_name"], "height": scene["height"], "width": scene["width"]}
        )
        drawn = object_names(scene)
        for obj in objects:
            if drawn.count(obj.name) != 1:
                continue  # "the red circle" must name one object
            ann_id = len(annotations) + 1
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": k,
                    "category_id": 1,
                    "segmentation": encode(obj.mask),
                    "area": int(obj.mask.sum()),
                    "iscrowd": 0,
                }
            )
            refs.append(
                {
                    "ref_id": ann_id,
                    "ann_id": ann_id,
                    "image_id": k,
                    "split": split,
                    "category_id": 1,
                    "sentences": [
                        {"sent_id": ann_id, "sent": obj.name, "raw": obj.name, "tokens": obj.name.split()}
                    ],
                }
            )
    (out / REFS_FILE).write_bytes(pickle.dumps(refs, protocol=2))
    (out / "instances.json").write_text(
        json.dumps(
            {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "object"}]}
        )
    )


def ensure_refseg(split: str) -> Path:
    split_dir = ensure_shapes().split(split)
    return build_dir_once(
        split_dir / f"refseg_v{FORMAT_VERSION}",
        lambda folder: write_refseg_split(split_dir, split, folder),
        "shapes refseg\n",
    )


@register_reader("shapes_refseg")
def read_shapes_refseg(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    split = str(options.get("split", "val"))
    refs, instances, images = data.get("refs"), data.get("instances"), data.get("images")
    if refs is None or instances is None:
        root = ensure_refseg(split)
        refs, instances = refs or root / REFS_FILE, instances or root / "instances.json"
        images = images or ensure_shapes().images(split)
    read = read_refer_files(refs, instances, images, {**options, "split": split})
    read.notes.insert(0, f"shapes v{VERSION} {split}: referring segmentation view (refseg_v{FORMAT_VERSION})")
    return read
