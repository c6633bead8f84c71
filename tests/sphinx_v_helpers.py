"""Builders of SPHINX-V / Ferret eval files in their released schemas, for the sphinx_v tests."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from tests.helpers import LVIS_NAMES


def sphinx_v_records(
    dataset_name: str, n_images: int, seed: int = 0, names: list[str] | None = None, max_regions: int = 13
) -> list[dict[str, Any]]:
    """Records as ``accessory/eval/readme.md`` shows them: one per image, ``gt_answers`` lines,
    ``bbox`` (COCO xywh) for ``*_box`` files, ``points`` for ``*_point`` ones. Images are 64x48."""
    rng = random.Random(seed)
    names = names or LVIS_NAMES
    point = dataset_name.endswith("_point")
    question = (
        "Please identify the labels of each marked point in the image."
        if point
        else "Please identify the labels of each marked region in the image."
    )
    records = []
    for i in range(n_images):
        k = rng.randint(1, max_regions)
        labels = [rng.choice(names) for _ in range(k)]
        vps: list[list[float]] = []
        for _ in range(k):
            x, y = rng.randint(0, 50), rng.randint(0, 36)
            vps.append([float(x), float(y)] if point else [x + 0.5, y + 0.25, 10.0, 8.5])
        records.append(
            {
                "image_name": f"{100000 + i:012d}.jpg",
                "question": question,
                "question_id": 100000 + i,
                "dataset_name": dataset_name,
                "gt_answers": "\n".join(f"Region {j + 1}: {c}" for j, c in enumerate(labels)),
                ("points" if point else "bbox"): vps,
            }
        )
    return records


def write_json(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj))
    return path


def write_flat_images(folder: Path, names: list[str], size: tuple[int, int] = (64, 48)) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        Image.new("RGB", size, (k * 37 % 255, 120, 80)).save(folder / name)
    return folder
