"""``shapes``: a procedurally generated, seeded benchmark of coloured geometric objects.

Each scene is an image with 1–6 objects: plain shapes (``circle``, ``square``, ``triangle``,
``star``, ``cross``) in one of six colours, and ``house`` objects made of parts (``wall``,
``roof``, ``door``), drawn back to front so later objects may occlude earlier ones. Masks are
the *visible* pixels, read from an instance-id map painted alongside the image.

Files are written in the benchmarks' real formats, so every reader is exercised:

* ``<split>/images/<split>_<n>.png``   the RGB images,
* ``<split>/ids/<split>_<n>.png``      16-bit instance-id maps (0 = background),
* ``<split>/scenes.json``              the full scene description (the source of every view),
* ``<split>/cls.json``                 Osprey referring-classification JSON (``shapes_cls``).

Generation is deterministic (seed per split and image), takes seconds, and runs once into
``$EVALKIT_CACHE/shapes/v<version>`` (default ``~/.cache/evalkit``); concurrent first uses
are safe (build in a temp folder, then an atomic rename).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from evalkit.files import build_dir_once
from evalkit.files import cache_dir as evalkit_cache_dir
from evalkit.regions import Region

VERSION = 1
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 165, 60),
    "blue": (45, 85, 215),
    "yellow": (235, 200, 35),
    "purple": (135, 60, 180),
    "orange": (245, 130, 30),
}
SHAPES = ("circle", "square", "triangle", "star", "cross")
HOUSE_PARTS: dict[str, tuple[int, int, int]] = {
    "wall": (225, 205, 160),
    "roof": (150, 50, 40),
    "door": (90, 60, 35),
}
SPLITS: dict[str, tuple[int, int]] = {"train": (2000, 1234), "val": (200, 4321)}  # images, seed
MIN_VISIBLE = 40  # pixels a region must show to be asked about (cls.json, and every view)


@dataclass
class ShapesPaths:
    root: Path

    def split(self, split: str) -> Path:
        return self.root / split

    def images(self, split: str) -> Path:
        return self.root / split / "images"

    def cls_json(self, split: str) -> Path:
        return self.root / split / "cls.json"

    def scenes_json(self, split: str) -> Path:
        return self.root / split / "scenes.json"


def cache_dir() -> Path:
    return evalkit_cache_dir() / "shapes" / f"v{VERSION}"


def ensure_shapes(root: Path | None = None) -> ShapesPaths:
    """Generate the shapes benchmark once; return where it lives."""

    def build(folder: Path) -> None:
        for split, (n_images, seed) in SPLITS.items():
            write_split(folder / split, split, n_images, seed)

    return ShapesPaths(build_dir_once(root or cache_dir(), build, f"shapes v{VERSION}\n"))


def split_files(
    data: Mapping[str, Path | None], key: str, options: Mapping[str, Any]
) -> tuple[str, Path, Path | None]:
    """(split, the file under data key ``key``, images folder); with no file given, the
    generated benchmark's ``scenes.json`` (key ``scenes``) or ``cls.json`` of the split."""
    split = str(options.get("split", "val"))
    path = data.get(key)
    images = data.get("images")
    if path is None:
        paths = ensure_shapes()
        path = paths.scenes_json(split) if key == "scenes" else paths.cls_json(split)
        images = images or paths.images(split)
    return split, path, images


# ---------------------------------------------------------------------- drawing
def _shape_polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    def rot(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        c, s = math.cos(angle), math.sin(angle)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]

    if shape == "square":
        return rot([(-r, -r), (r, -r), (r, r), (-r, r)])
    if shape == "triangle":
        return rot([(r * math.cos(a), r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)])
    if shape == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.45
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((rad * math.cos(a), rad * math.sin(a)))
        return rot(pts)
    if shape == "cross":
        t = r * 0.35
        return rot(
            [
                (-t, -r),
                (t, -r),
                (t, -t),
                (r, -t),
                (r, t),
                (t, t),
                (t, r),
                (-t, r),
                (-t, t),
                (-r, t),
                (-r, -t),
                (-t, -t),
            ]
        )
    raise ValueError(shape)


def _draw(
    draw_rgb: ImageDraw.ImageDraw,
    draw_ids: ImageDraw.ImageDraw,
    kind: str,
    geom: Any,
    colour: tuple[int, int, int],
    instance: int,
) -> None:
    if kind == "ellipse":
        draw_rgb.ellipse(geom, fill=colour)
        draw_ids.ellipse(geom, fill=instance)
    else:
        draw_rgb.polygon(geom, fill=colour)
        draw_ids.polygon(geom, fill=instance)


def make_scene(rng: random.Random, name: str) -> tuple[Image.Image, np.ndarray, dict[str, Any]]:
    width = rng.choice((224, 256, 288, 320))
    height = rng.choice((192, 224, 256))
    base = rng.randint(200, 240)
    noise = np.random.default_rng(rng.randrange(1 << 30)).integers(-8, 9, (height, width, 1))
    background = np.clip(base + noise, 0, 255).astype(np.uint8).repeat(3, axis=2)
    image = Image.fromarray(background, "RGB")
    ids = Image.new("I", (width, height), 0)
    draw_rgb, draw_ids = ImageDraw.Draw(image), ImageDraw.Draw(ids)
    objects: list[dict[str, Any]] = []
    next_id = 1
    for _ in range(rng.randint(1, 6)):
        r = rng.uniform(0.09, 0.2) * min(width, height)
        cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
        if rng.random() < 0.18:
            # A house: wall square, roof triangle above it, door inside the wall.
            w = r
            wall = [(cx - w, cy - w * 0.3), (cx + w, cy - w * 0.3), (cx + w, cy + w), (cx - w, cy + w)]
            roof = [(cx - w * 1.15, cy - w * 0.3), (cx + w * 1.15, cy - w * 0.3), (cx, cy - w * 1.1)]
            door = [
                (cx - w * 0.25, cy + w * 0.3),
                (cx + w * 0.25, cy + w * 0.3),
                (cx + w * 0.25, cy + w),
                (cx - w * 0.25, cy + w),
            ]
            parts = []
            for part, poly in (("wall", wall), ("roof", roof), ("door", door)):
                _draw(draw_rgb, draw_ids, "polygon", poly, HOUSE_PARTS[part], next_id)
                parts.append({"id": next_id, "part": part})
                next_id += 1
            objects.append({"shape": "house", "colour": None, "parts": parts, "cx": cx, "cy": cy, "r": r})
            continue
        shape = rng.choice(SHAPES)
        colour = rng.choice(list(COLOURS))
        if shape == "circle":
            geom: Any = (cx - r, cy - r, cx + r, cy + r)
            _draw(draw_rgb, draw_ids, "ellipse", geom, COLOURS[colour], next_id)
        else:
            angle = rng.uniform(-0.3, 0.3) if shape != "square" else rng.uniform(-0.2, 0.2)
            _draw(
                draw_rgb,
                draw_ids,
                "polygon",
                _shape_polygon(shape, cx, cy, r, angle),
                COLOURS[colour],
                next_id,
            )
        objects.append({"id": next_id, "shape": shape, "colour": colour, "cx": cx, "cy": cy, "r": r})
        next_id += 1
    id_map = np.asarray(ids, dtype=np.int32).astype(np.uint16)
    scene = {"file_name": f"{name}.png", "height": height, "width": width, "objects": objects}
    return image, id_map, scene


def scene_regions(scene: dict[str, Any]) -> list[tuple[int, str]]:
    """(instance id, category) of every region of a scene, in drawing order.

    Objects are ``<colour>_<shape>``; house parts ``house:<part>`` (PACO's ``object:part``).
    """
    out: list[tuple[int, str]] = []
    for obj in scene["objects"]:
        if obj["shape"] == "house":
            out.extend((p["id"], f"house:{p['part']}") for p in obj["parts"])
        else:
            out.append((obj["id"], f"{obj['colour']}_{obj['shape']}"))
    return out


def write_split(out: Path, split: str, n_images: int, seed: int, min_visible: int = MIN_VISIBLE) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "ids").mkdir(parents=True, exist_ok=True)
    scenes, cls_records = [], []
    for n in range(n_images):
        rng = random.Random(seed * 1_000_003 + n)
        name = f"{split}_{n:05d}"
        image, id_map, scene = make_scene(rng, name)
        image.save(out / "images" / f"{name}.png", optimize=False, compress_level=1)
        Image.fromarray(id_map).save(out / "ids" / f"{name}.png", compress_level=1)
        areas = np.bincount(id_map.ravel(), minlength=64)
        categories, annotations = [], []
        for instance, category in scene_regions(scene):
            # Regions hidden almost entirely behind later objects are not asked about.
            if instance >= len(areas) or areas[instance] < min_visible:
                continue
            region = Region.from_mask((id_map == instance).astype(np.uint8))
            categories.append(category)
            annotations.append({"segmentation": region.rle, "instance_id": instance})
        scene["visible"] = {str(i): int(areas[i]) for i in range(1, len(areas)) if areas[i]}
        scenes.append(scene)
        if categories:
            cls_records.append(
                {
                    "file_name": scene["file_name"],
                    "height": scene["height"],
                    "width": scene["width"],
                    "categories": categories,
                    "annotations": annotations,
                }
            )
    (out / "scenes.json").write_text(json.dumps(scenes))
    (out / "cls.json").write_text(json.dumps(cls_records))


# ---------------------------------------------------------------------- canonical texts
# The words every shapes view uses, defined once so the caption / yes-no / panoptic views and
# the tiny model's training data agree.
def category_phrase(category: str) -> str:
    """``red_circle`` -> ``red circle``; ``house:roof`` -> ``house roof``."""
    return category.replace("_", " ").replace(":", " ")


def region_captions(category: str) -> list[str]:
    """Reference captions of one region; the first is the canonical answer."""
    if category.startswith("house:"):
        part = category.split(":", 1)[1]
        return [f"the {part} of a house", f"a house {part}", f"{part} of the house"]
    colour, shape = category.split("_", 1)
    return [f"a {colour} {shape}", f"a {shape} that is {colour}", f"the {colour} {shape}"]


def object_names(scene: dict[str, Any]) -> list[str]:
    """Phrases of the objects present (``red circle``, ``house``), in drawing order."""
    names = []
    for obj in scene["objects"]:
        names.append("house" if obj["shape"] == "house" else f"{obj['colour']} {obj['shape']}")
    return names


def all_categories() -> list[str]:
    """Every region category the generator draws (``red_circle``..., ``house:wall``...)."""
    return [f"{c}_{s}" for c in COLOURS for s in SHAPES] + [f"house:{p}" for p in HOUSE_PARTS]


def all_object_names() -> list[str]:
    return [f"{c} {s}" for c in COLOURS for s in SHAPES] + ["house"]


def visible_object_names(scene: dict[str, Any], min_visible: int = MIN_VISIBLE) -> tuple[list[str], set[str]]:
    """(names of objects visible enough to ask about, names of every object drawn)."""
    visible_px = {int(k): int(v) for k, v in scene.get("visible", {}).items()}
    shown: list[str] = []
    drawn: set[str] = set()
    for name, obj in zip(object_names(scene), scene["objects"], strict=True):
        drawn.add(name)
        ids = [p["id"] for p in obj["parts"]] if obj["shape"] == "house" else [obj["id"]]
        if sum(visible_px.get(i, 0) for i in ids) >= min_visible and name not in shown:
            shown.append(name)
    return shown, drawn
