"""``shapes_pope``: yes/no object questions about the shapes scenes (POPE's format).

Per scene of ``<split>/scenes.json``, up to ``max_per_scene`` objects that are visible (at
least ``MIN_VISIBLE`` pixels, the rule ``cls.json`` uses) asked about with label ``yes``, and
as many names of :func:`.scenes.all_object_names` absent from the scene with label ``no`` —
balanced in every scene. Objects drawn but hidden behind others are asked about neither way.
The choice is seeded per scene by name (``random.Random("shapes-pope:<seed>:<file name>")``),
so it is the same on every machine and does not depend on the other scenes. Id:
``<image stem>/<name with _ for spaces>``. Generates the benchmark into the cache on first
use unless the files are given.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from evalkit.errors import DataError
from evalkit.readers import ReadResult, image_path, load_json, register_reader
from evalkit.records import Sample

from ..pope.pope_questions import PopeQuestion
from .scenes import VERSION, all_object_names, split_files, visible_object_names

POPE_QUESTION = "Is there a {name} in the image?"


def pope_questions(scene: dict[str, Any], seed: int = 0, max_per_scene: int = 3) -> list[tuple[str, str]]:
    """Balanced (object name, ``yes``/``no``) pairs for one scene, seeded by its file name."""
    rng = random.Random(f"shapes-pope:{seed}:{scene['file_name']}")
    present, drawn = visible_object_names(scene)
    absent = [n for n in all_object_names() if n not in drawn]
    k = min(len(present), len(absent), max_per_scene)
    pairs = [(n, "yes") for n in rng.sample(present, k)] + [(n, "no") for n in rng.sample(absent, k)]
    rng.shuffle(pairs)
    return pairs


@register_reader("shapes_pope")
def read_shapes_pope(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    split, path, images = split_files(data, "scenes", options)
    seed = int(options.get("seed", 0))
    max_per_scene = int(options.get("max_per_scene", 3))
    scenes = load_json(path)
    if not isinstance(scenes, list):
        raise DataError(path, "expected the list of scenes of a shapes split")
    samples: list[Sample] = []
    for index, scene in enumerate(scenes):
        if not isinstance(scene, dict) or not {"file_name", "objects"} <= scene.keys():
            raise DataError(path, "scene needs file_name and objects", f"#{index}")
        file_name = str(scene["file_name"])
        stem = PurePosixPath(file_name).stem
        for name, label in pope_questions(scene, seed, max_per_scene):
            samples.append(
                Sample(
                    id=f"{stem}/{name.replace(' ', '_')}",
                    image=file_name,
                    regions=[],
                    target=label,
                    image_path=image_path(images, file_name),
                    meta=PopeQuestion(text=POPE_QUESTION.format(name=name)),
                )
            )
    n_yes = sum(1 for s in samples if s.target == "yes")
    note = (
        f"shapes v{VERSION} {split}: {len(samples)} questions ({n_yes} yes), at most "
        f"{max_per_scene} + {max_per_scene} per scene, seed {seed}"
    )
    return ReadResult(samples, [path], [note])
