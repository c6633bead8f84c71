"""``shapes_cap``: region captions of the shapes benchmark.

One sample per region of ``<split>/cls.json`` (the same regions and ids, ``<image stem>#<i>``,
as ``shapes_cls``); references = :func:`.scenes.region_captions` of the region's category.
Generates the benchmark into the cache on first use unless the files are given.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalkit.readers import ReadResult, load_json, register_reader

from ..caption.refcocog_cap import CaptionInfo
from ..referring_cls.osprey_json import read_osprey_subset
from .scenes import VERSION, region_captions, split_files


@register_reader("shapes_cap")
def read_shapes_cap(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    split, path, images = split_files(data, "annotations", options)
    samples = read_osprey_subset(path, load_json(path), images)
    for sample in samples:
        category = str(sample.target)
        sample.meta = CaptionInfo(category=category)
        sample.target = region_captions(category)
    note = f"shapes v{VERSION} {split}: {len(samples)} regions, references = region_captions(category)"
    return ReadResult(samples, [path], [note])
