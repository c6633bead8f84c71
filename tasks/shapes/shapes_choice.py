"""``shapes_choice``: the shapes benchmark's regions, each to be named by ranking the whole
shapes vocabulary (every colour x shape and house part, :func:`.scenes.all_categories`) by
likelihood; read from the same ``<split>/cls.json`` as ``shapes_cls``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalkit.readers import ReadResult, RecordErrors, load_json, register_reader

from ..closed_set.choice_ranking import ChoiceQuestion
from ..referring_cls.osprey_json import read_osprey_subset
from .scenes import VERSION, all_categories, category_phrase, split_files


@register_reader("shapes_choice")
def read_shapes_choice(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    split, annotations, images = split_files(data, "annotations", options)
    errors = RecordErrors(options)
    vocabulary = [category_phrase(c) for c in all_categories()]
    samples = read_osprey_subset(annotations, load_json(annotations), images, errors)
    for sample in samples:
        sample.meta = ChoiceQuestion(
            choices=vocabulary, answer=vocabulary.index(category_phrase(str(sample.target)))
        )
    note = f"shapes v{VERSION} {split}: {len(samples)} regions x {len(vocabulary)} choices"
    return ReadResult(samples, [annotations], [note], errors.skipped)
