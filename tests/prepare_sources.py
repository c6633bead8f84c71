"""Tiny official-format sources for the `evalkit data prepare` tests.

* :func:`make_ade_source` — ``ADEChallengeData2016/{images,annotations,annotations_instance}/
  validation``: JPEGs, semantic PNGs (0 = other, 1..150) and instance PNGs (R = instance class
  1..100, G = instance id), with things over stuff, two instances of one class (the colour
  offset path), thing-class pixels without an instance, VOID, and a stuff region a thing covers
  completely.
* :func:`make_cityscapes_source` — ``gtFine/val/<city>/*_gtFine_{instanceIds.png,polygons.json}``
  and ``leftImg8bit/val/<city>/*_leftImg8bit.png``: stuff, instances, a crowd region
  (``cargroup``), ignored labels, a deleted polygon and a license plate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

# (instance class, SceneParsing class) pairs of the real mapping used below: 4 person -> 13,
# 8 chair -> 20, 9 car -> 21, 1 bed -> 8; stuff classes: 1 wall, 4 floor, 3 sky, 7 road.
PERSON, CHAIR, CAR = (4, 13), (8, 20), (9, 21)
WALL, FLOOR, SKY, ROAD = 1, 4, 3, 7


def make_ade_source(root: Path, n_images: int = 4, seed: int = 0, covered_stuff: bool = True) -> Path:
    src = root / "ADEChallengeData2016"
    rng = np.random.default_rng(seed)
    dirs = {k: src / k / "validation" for k in ("images", "annotations", "annotations_instance")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for n in range(n_images):
        h, w = 30 + 4 * n, 44 - 2 * n
        image_id = f"ADE_val_{n + 1:08d}"
        pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(dirs["images"] / f"{image_id}.jpg", quality=90)
        sem = np.full((h, w), WALL, np.uint8)
        sem[h // 2 :, :] = FLOOR
        sem[: h // 5, : w // 2] = SKY
        sem[:3, -4:] = 0  # "other": ignored (255) in the semantic map, VOID in the panoptic one
        ins = np.zeros((h, w, 3), np.uint8)

        things = [
            ((4, 14, 3, 12), CHAIR, 1),
            ((6, 18, 14, 22), CHAIR, 2),  # a second chair: the class colour is taken
            ((h - 10, h - 2, w - 12, w - 3), PERSON, 3 + n),
        ]
        if n % 2 == 0:
            things.append(((h // 2 - 2, h // 2 + 6, 25, 34 - n), CAR, 9))
        for (y0, y1, x0, x1), klass, instance in things:
            ins[y0:y1, x0:x1, 0] = klass[0]
            ins[y0:y1, x0:x1, 1] = instance
            # The semantic map mostly agrees (a pixel row of disagreement: stuff under a thing).
            sem[y0 + 1 : y1, x0:x1] = klass[1]
        if n % 2 == 0:
            sem[h - 6 : h - 3, 2:6] = CAR[1]  # car pixels with no car instance: VOID
        if n == 1 and covered_stuff:
            sem[h - 9 : h - 4, w - 11 : w - 5] = ROAD  # road only under the person: fully covered
        Image.fromarray(sem).save(dirs["annotations"] / f"{image_id}.png")
        Image.fromarray(ins).save(dirs["annotations_instance"] / f"{image_id}.png")
    return src


# Cityscapes: (label name, id, train id) of the labels drawn below.
CITY_POLYGONS = [
    ("road", [(0, 20), (63, 20), (63, 31), (0, 31)]),
    ("sky", [(0, 0), (63, 0), (63, 8), (0, 8)]),
    ("building", [(0, 8), (30, 8), (30, 20), (0, 20)]),
    ("static", [(30, 8), (40, 8), (40, 14), (30, 14)]),  # ignored in evaluation: VOID
    ("car", [(5, 15), (20, 15), (20, 26), (5, 26)]),
    ("car", [(22, 16), (34, 16), (34, 27), (22, 27)]),
    ("cargroup", [(40, 18), (60, 18), (60, 28), (40, 28)]),  # a crowd of cars
    ("person", [(44, 10), (48, 10), (48, 22), (44, 22)]),
    ("license plate", [(8, 22), (12, 22), (12, 24), (8, 24)]),  # id -1: never drawn
    ("bicycle", [(50, 2), (60, 2), (55, 12)]),
]
LABEL_IDS = {"road": 7, "sky": 23, "building": 11, "static": 4, "car": 26, "person": 24, "bicycle": 33}


def make_cityscapes_source(root: Path, cities: tuple[str, ...] = ("frankfurt", "lindau")) -> Path:
    """Two images per city, 64 x 32; instance ids drawn from the same polygons."""
    src = root / "cityscapes"
    for c, city in enumerate(cities):
        gt = src / "gtFine" / "val" / city
        left = src / "leftImg8bit" / "val" / city
        gt.mkdir(parents=True, exist_ok=True)
        left.mkdir(parents=True, exist_ok=True)
        for n in range(2):
            image_id = f"{city}_{c:06d}_{n * 19:06d}"
            objects: list[dict[str, Any]] = []
            ids = Image.new("I", (64, 32), 0)
            draw = ImageDraw.Draw(ids)
            count: dict[str, int] = {}
            for label, polygon in CITY_POLYGONS:
                shifted = [(x, min(31, y + n)) for x, y in polygon]
                obj: dict[str, Any] = {"label": label, "polygon": [list(p) for p in shifted]}
                if label == "bicycle" and n == 1:
                    obj["deleted"] = 1  # a deleted object: not drawn in either file
                objects.append(obj)
                if obj.get("deleted") or label == "license plate":
                    continue
                base = label.removesuffix("group")
                if label in ("car", "person", "bicycle"):
                    count[base] = count.get(base, 0) + 1
                    value = LABEL_IDS[base] * 1000 + count[base] - 1
                else:
                    value = LABEL_IDS[base]
                draw.polygon(shifted, fill=value)
            # 16-bit, as the released instanceIds PNGs (ids up to 33999).
            Image.fromarray(np.asarray(ids).astype(np.uint16)).save(gt / f"{image_id}_gtFine_instanceIds.png")
            (gt / f"{image_id}_gtFine_polygons.json").write_text(
                json.dumps({"imgHeight": 32, "imgWidth": 64, "objects": objects})
            )
            Image.fromarray(np.full((32, 64, 3), 40 * (n + 1), np.uint8)).save(
                left / f"{image_id}_leftImg8bit.png"
            )
    return src
