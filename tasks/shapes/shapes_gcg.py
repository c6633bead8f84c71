"""``shapes_gcg``: grounded captioning on the shapes scenes, written as GranD-f ground truth and
read by the GCG reader.

Written once per split into ``<split>/gcg_v<n>/``: ``caption_gt.json`` (COCO captions with
``labels``) and ``mask_gt.json`` (COCO instances, category 1, RLE), as GranD-f's
``{split}_gcg_coco_*_gt.json``. Each scene with a visible object is one image; its caption
names every visible object in drawing order ("A red circle, a blue square and a house."),
each label (``a red circle``) grounded by the object's visible mask.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalkit.files import build_dir_once
from evalkit.readers import ReadResult, load_json, register_reader

from ..gcg.gcg_annotations import read_grounded_captions
from ..refseg.refer_seg import encode
from .object_masks import scenes_with_objects
from .scenes import VERSION, ensure_shapes

FORMAT_VERSION = 1


def article(name: str) -> str:
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def listing(phrases: list[str]) -> str:
    """``a, b and c``."""
    return phrases[0] if len(phrases) == 1 else f"{', '.join(phrases[:-1])} and {phrases[-1]}"


def write_gcg_split(split_dir: Path, out: Path) -> None:
    scenes = load_json(split_dir / "scenes.json")
    images: list[dict[str, Any]] = []
    captions: list[dict[str, Any]] = []
    masks: list[dict[str, Any]] = []
    for _, scene, objects in scenes_with_objects(split_dir, scenes):
        image_id = Path(scene["file_name"]).stem
        images.append(
            {
                "id": image_id,
                "file_name": scene["file_name"],
                "height": scene["height"],
                "width": scene["width"],
            }
        )
        labels = [article(obj.name) for obj in objects]
        text = listing(labels)
        captions.append(
            {
                "image_id": image_id,
                "id": len(captions),
                "caption": f"{text[0].upper()}{text[1:]}.",
                "labels": labels,
            }
        )
        for obj in objects:
            masks.append(
                {
                    "id": len(masks) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": encode(obj.mask),
                    "area": int(obj.mask.sum()),
                    "iscrowd": 0,
                }
            )
    (out / "caption_gt.json").write_text(json.dumps({"images": images, "annotations": captions}))
    (out / "mask_gt.json").write_text(
        json.dumps({"images": images, "annotations": masks, "categories": [{"id": 1, "name": "object"}]})
    )


def ensure_gcg(split: str) -> Path:
    split_dir = ensure_shapes().split(split)
    return build_dir_once(
        split_dir / f"gcg_v{FORMAT_VERSION}",
        lambda folder: write_gcg_split(split_dir, folder),
        "shapes gcg\n",
    )


@register_reader("shapes_gcg")
def read_shapes_gcg(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    split = str(options.get("split", "val"))
    captions, masks, images = data.get("captions"), data.get("masks"), data.get("images")
    if captions is None or masks is None:
        root = ensure_gcg(split)
        captions, masks = captions or root / "caption_gt.json", masks or root / "mask_gt.json"
        images = images or ensure_shapes().images(split)
    read = read_grounded_captions(captions, masks, images, options)
    read.notes.insert(0, f"shapes v{VERSION} {split}: grounded captioning view (gcg_v{FORMAT_VERSION})")
    return read
