"""``shapes_roc``: the shapes benchmark as SPHINX-V's multi-region referring classification —
one record per image with all its regions' boxes (``Region i: <category>`` lines), built from
the same ``<split>/cls.json`` as ``shapes_cls`` by :mod:`..sphinx_v.rebuild` (boxes = the
masks' tight boxes) and scored by ``sphinxv_roc``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalkit.readers import ReadResult, RecordErrors, load_json, register_reader

from ..referring_cls.osprey_json import read_osprey_subset
from ..sphinx_v.rebuild import QUESTIONS, rebuild_records
from ..sphinx_v.sphinx_v_json import record_sample
from .scenes import VERSION, split_files

DATASET = "shapes_box"


@register_reader("shapes_roc")
def read_shapes_roc(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    split, annotations, images = split_files(data, "annotations", options)
    errors = RecordErrors(options)
    regions = read_osprey_subset(annotations, load_json(annotations), images, errors)
    records = rebuild_records(regions, DATASET, "box", QUESTIONS["box"])
    samples = [
        record_sample(annotations, k, r, "box", DATASET, images, None, True) for k, r in enumerate(records)
    ]
    note = f"shapes v{VERSION} {split}: {len(samples)} images, {len(regions)} regions (tight boxes)"
    return ReadResult(samples, [annotations], [note], errors.skipped)
