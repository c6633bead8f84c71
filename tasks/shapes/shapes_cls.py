"""``shapes_cls``: the shapes benchmark's referring classification, read from the Osprey-format
``<split>/cls.json`` that :mod:`.scenes` writes (same reader as ``lvis_cls``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalkit.readers import ReadResult, RecordErrors, load_json, register_reader

from ..referring_cls.osprey_json import read_osprey_subset
from .scenes import VERSION, split_files


@register_reader("shapes_cls")
def read_shapes_cls(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    """The shapes benchmark's Osprey-format file, generated on first use unless given."""
    split, annotations, images = split_files(data, "annotations", options)
    errors = RecordErrors(options)
    samples = read_osprey_subset(annotations, load_json(annotations), images, errors)
    note = f"shapes v{VERSION} {split}: {len(samples)} regions"
    return ReadResult(samples, [annotations], [note], errors.skipped)
