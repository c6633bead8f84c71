"""``shapes_region_cls``: closed-set classification of the shapes regions, scored as
``coco_region_cls`` (accuracy and COCO box AP from the generated name's probability), on
the COCO instances file :mod:`.coco_view` writes (generated on first use unless given)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalkit.readers import ReadResult, RecordErrors, load_json, register_reader

from ..closed_set.coco_instances import samples_from_instances
from .coco_view import ensure_coco_view
from .scenes import VERSION, ensure_shapes


@register_reader("shapes_region_cls")
def read_shapes_region_cls(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    split = str(options.get("split", "val"))
    path = data.get("instances")
    images = data.get("images")
    if path is None:
        path = ensure_coco_view(split).instances
        images = images or ensure_shapes().images(split)
    samples, note, skipped = samples_from_instances(path, load_json(path), images, RecordErrors(options))
    return ReadResult(samples, [path], [f"shapes v{VERSION} {split}: {note}"], skipped)
