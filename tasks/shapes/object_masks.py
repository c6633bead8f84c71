"""The visible mask of every object of a shapes scene (a house is its wall, roof and door
together), read from the split's instance-id maps: what the referring-segmentation and
grounded-captioning views ground their expressions and phrases in."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .scenes import MIN_VISIBLE, object_names


@dataclass(frozen=True)
class SceneObject:
    name: str  # "red circle", "house" (scenes.object_names)
    mask: np.ndarray  # uint8, its visible pixels


def visible_objects(
    split_dir: Path, scene: dict[str, Any], min_visible: int = MIN_VISIBLE
) -> list[SceneObject]:
    """The scene's objects in drawing order with at least ``min_visible`` visible pixels."""
    name = Path(scene["file_name"]).stem
    with Image.open(split_dir / "ids" / f"{name}.png") as im:
        ids = np.asarray(im, dtype=np.int64)
    out = []
    for label, obj in zip(object_names(scene), scene["objects"], strict=True):
        parts = [p["id"] for p in obj["parts"]] if obj["shape"] == "house" else [obj["id"]]
        mask = np.isin(ids, parts).astype(np.uint8)
        if int(mask.sum()) >= min_visible:
            out.append(SceneObject(label, mask))
    return out


def scenes_with_objects(
    split_dir: Path, scenes: list[dict[str, Any]]
) -> Iterator[tuple[int, dict[str, Any], list[SceneObject]]]:
    """(index, scene, visible objects) of every scene showing at least one object."""
    for k, scene in enumerate(scenes):
        objects = visible_objects(split_dir, scene)
        if objects:
            yield k, scene, objects
