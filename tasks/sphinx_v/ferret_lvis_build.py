"""Ferret's LVIS binary-choice file rebuilt from raw LVIS v1 val (PROTOCOLS_WAVE2.md §C/§Q).

Ferret's ``dataset/lvis/lvis_eval.jsonl`` is not released, nor how its objects, negatives,
points and free-form shapes were chosen. evalkit's default (non-reference), recorded:

* objects: ``random.Random(seed).sample`` (seed 42, the seed ``eval_lvis.py`` sets) of
  ``sample_objects`` (default 1,000) annotations with a non-empty mask (``iscrowd`` 0 where
  the field exists), then ordered by annotation id — the file order, which decides whether
  the GT is offered first (even lines) or second (odd lines);
* ``neg_class``: from the same ``Random`` stream, object by object, a uniformly random LVIS
  category other than the object's;
* ``synonyms``: the category's LVIS ``synonyms``; ``name`` as LVIS writes it (underscores
  kept — ``eval_lvis.py`` replaces them, so Ferret's file had them);
* ``sample_point``: a uniform foreground pixel of the mask, one ``numpy.random.default_rng
  (seed)`` stream over the objects in file order, the integer pixel;
* ``bbox``: the LVIS ``xywh`` box; ``bbox_norm``: ``[x/W, y/H, (x+w)/W, (y+h)/H]``;
* ``free_shape_bbox_raw``: SPHINX-V's free-form simulation (``noise_augmentation``, its own
  ``RandomState(free_form_seed)`` stream, default 0, in id order,
  :func:`evalkit.regions.convert.free_form_boxes`) of the LVIS box, as ``xyxy`` integer
  pixels clipped to the image; no ``free_shape_segment_mask`` (SPHINX-V's free form is a box).

    python -m evalkit.tasks.sphinx_v.ferret_lvis_build lvis_v1_val.json lvis_eval.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from evalkit.errors import DataError
from evalkit.regions import Region, RegionError
from evalkit.regions.convert import free_form_boxes, seeded_point


def build_note(n: int, of: int, sample_objects: int, seed: int, free_form_seed: int) -> str:
    return (
        f"Ferret LVIS binary-choice records REBUILT from raw LVIS (not Ferret's file): {n} of {of} "
        f"objects, random.Random({seed}).sample of {sample_objects} ordered by annotation id; "
        f"negatives uniform over the other categories (same stream); points default_rng({seed}) "
        f"uniform foreground pixels; free-form = SPHINX-V noise_augmentation, RandomState({free_form_seed})"
    )


def build_ferret_records(
    raw: dict[str, Any], path: Path, sample_objects: int = 1000, seed: int = 42, free_form_seed: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """Ferret-schema records from a raw LVIS v1 ``{images, annotations, categories}``; and how
    many annotations were eligible."""
    categories = {c["id"]: c for c in raw["categories"]}
    images = {img["id"]: img for img in raw["images"]}
    eligible = []
    for k, ann in enumerate(raw["annotations"]):
        if (
            not isinstance(ann, dict)
            or not {"id", "image_id", "category_id", "segmentation", "bbox"} <= ann.keys()
        ):
            raise DataError(
                path, "annotation needs id, image_id, category_id, segmentation, bbox", f"annotations[{k}]"
            )
        if ann.get("iscrowd", 0) or ann["image_id"] not in images or ann["category_id"] not in categories:
            continue
        eligible.append(ann)
    eligible.sort(key=lambda a: a["id"])
    rng = random.Random(seed)
    chosen = sorted(rng.sample(eligible, min(sample_objects, len(eligible))), key=lambda a: a["id"])
    names = sorted(c["name"] for c in categories.values())
    point_rng = np.random.default_rng(seed)
    records: list[dict[str, Any]] = []
    for ann in chosen:
        img = images[ann["image_id"]]
        w, h = int(img["width"]), int(img["height"])
        category = categories[ann["category_id"]]
        negative = rng.choice([n for n in names if n != category["name"]])
        where = f"annotation {ann['id']}"
        try:
            mask = Region.from_segmentation(ann["segmentation"], h, w).to_mask(cache=False)
        except RegionError as exc:
            raise DataError(path, f"invalid segmentation: {exc}", where) from exc
        x, y, bw, bh = (float(v) for v in ann["bbox"])
        if mask.any():
            px, py = seeded_point(mask, point_rng)
        else:  # a sliver polygon that covers no pixel centre: its box's centre pixel
            px, py = min(int(x + bw / 2), w - 1), min(int(y + bh / 2), h - 1)
        file_name = img.get("file_name") or PurePosixPath(str(img.get("coco_url", ""))).name
        records.append(
            {
                "id": ann["id"],
                "image_path": f"val2017/{file_name}",
                "width": w,
                "height": h,
                "name": category["name"],
                "synonyms": list(category.get("synonyms", [])),
                "neg_class": negative,
                "sample_point": [int(px), int(py)],
                "bbox": [x, y, bw, bh],
                "bbox_norm": [x / w, y / h, (x + bw) / w, (y + bh) / h],
            }
        )
    free = free_form_boxes({str(r["id"]): r["bbox"] for r in records}, free_form_seed)
    for r in records:
        fx, fy, fw, fh = free[str(r["id"])]
        w, h = r["width"], r["height"]
        x1, y1 = min(max(int(fx), 0), w - 1), min(max(int(fy), 0), h - 1)
        x2, y2 = min(max(int(fx + fw), x1), w - 1), min(max(int(fy + fh), y1), h - 1)
        r["free_shape_bbox_raw"] = [x1, y1, x2, y2]
    return records, len(eligible)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lvis", type=Path, help="raw LVIS v1 val JSON")
    parser.add_argument("out", type=Path, help="the Ferret-schema JSON-lines file to write")
    parser.add_argument("--sample-objects", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--free-form-seed", type=int, default=0)
    args = parser.parse_args(argv)
    raw = json.loads(args.lvis.read_text("utf-8"))
    records, n = build_ferret_records(raw, args.lvis, args.sample_objects, args.seed, args.free_form_seed)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in records))
    print(f"{args.out}: " + build_note(len(records), n, args.sample_objects, args.seed, args.free_form_seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
