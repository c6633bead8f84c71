"""``shapes_ovseg``: the panoptic view of the generated shapes scenes, in COCO-panoptic files.

Written once per split from ``<split>/ids/*.png`` and ``scenes.json`` (the shapes generator
is not touched) into ``<split>/ovseg/``:

* ``panoptic.json`` + ``panoptic/<name>.png`` — COCO panoptic (``rgb2id`` ids): every visible
  object / house part is a thing segment (its instance id), the background one stuff segment
  (id :data:`BACKGROUND_SEGMENT`); regions with fewer than ``MIN_VISIBLE`` visible pixels are
  VOID (id 0), as the referring view leaves them out;
* ``semantic/<name>.png`` — class index per pixel, 255 on VOID;
* ``vocabulary.txt`` — Osprey's format (``k:syn1,syn2``), class k = k-th category by id.

Classes: ``background`` (stuff, id 1), then every ``category_phrase`` of the generator's
colours x shapes and house parts (things), whether or not a split uses them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from evalkit.files import build_dir_once
from evalkit.readers import ReadResult, load_json, register_reader

from ..ovseg.coco_panoptic import read_coco_panoptic, register_data_defaults
from .scenes import (
    COLOURS,
    HOUSE_PARTS,
    MIN_VISIBLE,
    SHAPES,
    category_phrase,
    ensure_shapes,
    scene_regions,
)

BACKGROUND_SEGMENT = 1000  # above every instance id a scene can have
IGNORE = 255
FORMAT_VERSION = 1


def shapes_categories() -> list[dict[str, Any]]:
    """COCO panoptic categories: background (stuff) first, then the objects and house parts."""
    names = [f"{c}_{s}" for c in COLOURS for s in SHAPES] + [f"house:{p}" for p in HOUSE_PARTS]
    cats = [{"id": 1, "name": "background", "isthing": 0, "supercategory": "stuff"}]
    for k, name in enumerate(names, start=2):
        cats.append({"id": k, "name": category_phrase(name), "isthing": 1, "supercategory": "shape"})
    return cats


def synonyms(name: str) -> list[str]:
    if name == "background":
        return ["background", "plain background", "empty background"]
    if name.startswith("house "):
        part = name.split(" ", 1)[1]
        return [name, f"{part} of a house", f"{part} of the house"]
    return [name, f"{name}s"]


def write_ovseg_split(split_dir: Path, out: Path) -> None:
    cats = shapes_categories()
    cat_id = {c["name"]: c["id"] for c in cats}
    index_of = {c["id"]: k for k, c in enumerate(sorted(cats, key=lambda c: c["id"]))}
    (out / "panoptic").mkdir(parents=True)
    (out / "semantic").mkdir(parents=True)
    scenes = load_json(split_dir / "scenes.json")
    images, annotations = [], []
    for scene in scenes:
        name = Path(scene["file_name"]).stem
        with Image.open(split_dir / "ids" / f"{name}.png") as im:
            ids = np.asarray(im, dtype=np.int64)
        areas = np.bincount(ids.ravel())
        pan = np.zeros(ids.shape, dtype=np.uint32)
        sem = np.full(ids.shape, IGNORE, dtype=np.uint8)
        segments = []
        background = ids == 0
        if background.any():
            pan[background] = BACKGROUND_SEGMENT
            sem[background] = index_of[cat_id["background"]]
            segments.append((BACKGROUND_SEGMENT, cat_id["background"], int(background.sum())))
        for instance, category in scene_regions(scene):
            if instance >= len(areas) or areas[instance] < MIN_VISIBLE:
                continue  # hidden or nearly hidden: VOID
            mask = ids == instance
            cid = cat_id[category_phrase(category)]
            pan[mask] = instance
            sem[mask] = index_of[cid]
            segments.append((instance, cid, int(areas[instance])))
        rgb = np.stack([pan % 256, pan // 256 % 256, pan // 65536], axis=-1).astype(np.uint8)
        Image.fromarray(rgb).save(out / "panoptic" / f"{name}.png", compress_level=1)
        Image.fromarray(sem).save(out / "semantic" / f"{name}.png", compress_level=1)
        h, w = ids.shape
        images.append({"id": name, "file_name": scene["file_name"], "height": h, "width": w})
        annotations.append(
            {
                "image_id": name,
                "file_name": f"{name}.png",
                "segments_info": [
                    {
                        "id": sid,
                        "category_id": cid,
                        "area": area,
                        "iscrowd": 0,
                        "bbox": _bbox(pan == sid),
                    }
                    for sid, cid, area in sorted(segments)
                ],
            }
        )
    (out / "panoptic.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": cats})
    )
    lines = [
        f"{k}:{','.join(synonyms(c['name']))}" for k, c in enumerate(sorted(cats, key=lambda c: c["id"]))
    ]
    (out / "vocabulary.txt").write_text("\n".join(lines) + "\n")


def _bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [
        int(xs.min()),
        int(ys.min()),
        int(xs.max() - xs.min() + 1),
        int(ys.max() - ys.min() + 1),
    ]


def ensure_ovseg(split: str) -> Path:
    """``<shapes>/<split>/ovseg``, written on first use (atomic rename; safe when racing)."""
    split_dir = ensure_shapes().split(split)
    out = split_dir / f"ovseg_v{FORMAT_VERSION}"
    return build_dir_once(out, lambda folder: write_ovseg_split(split_dir, folder), "shapes ovseg\n")


@register_data_defaults("shapes_ovseg")
def shapes_ovseg_data(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> dict[str, Path | None]:
    """Generated paths for the keys the user did not give."""
    split = str(options.get("split", "val"))
    out = dict(data)
    if all(out.get(k) is not None for k in ("panoptic_json", "panoptic_root", "semantic_root", "vocabulary")):
        return out
    root = ensure_ovseg(split)
    defaults = {
        "panoptic_json": root / "panoptic.json",
        "panoptic_root": root / "panoptic",
        "semantic_root": root / "semantic",
        "vocabulary": root / "vocabulary.txt",
    }
    for key, path in defaults.items():
        if out.get(key) is None:
            out[key] = path
    if "images" in out and out["images"] is None:
        out["images"] = ensure_shapes().images(split)
    return out


@register_reader("shapes_ovseg")
def read_shapes_ovseg(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    filled = shapes_ovseg_data(data, options)
    return read_coco_panoptic(filled, {"layout": "flat", **options})
