"""SPHINX-V's eval files rebuilt from Osprey's 1K LVIS / PACO subsets or raw LVIS / PACO-LVIS.

The released ``eval_dataset/Referring_Object_Classification/{LVIS,PACO}_{box,point}.json`` are
Git-LFS files on the Hugging Face hub (PROTOCOLS_WAVE2.md §B: "very likely Osprey's 1K-image
LVIS / PACO sets grouped per image"). Where they are missing, evalkit rebuilds records of the
same schema (``{image_name, question, question_id, dataset_name, gt_answers, bbox | points}``,
plus ``height`` / ``width``) from the regions :mod:`..referring_cls.osprey_json` reads:

* one record per image, its regions in file order (``gt_answers`` = ``Region i: <category>``
  lines, the category as written, underscores kept);
* box = the tight box of the GT mask, COCO ``xywh`` pixels (the mask's extent, what
  SPHINX-V's ``extract_masks_from_draw`` makes of a mask);
* point = a uniform foreground pixel of the mask drawn from ONE
  ``numpy.random.default_rng(seed)`` stream, objects in file order, the integer pixel
  ``(x, y)`` (PROTOCOLS_WAVE2.md §B/§Q default, non-reference: the authors' sampling is not
  released);
* ``question_id`` = the COCO image id (the file name's digits for Osprey's subsets).

Every record is marked as rebuilt in the samples (and the reader's note says how), so results
never pass a rebuilt set off as the authors' file.

    python -m evalkit.tasks.sphinx_v.rebuild LVIS_box lvis_val_1k_category.json LVIS_box.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from evalkit.readers import ReadResult
from evalkit.records import Sample
from evalkit.regions.convert import seeded_point, tight_box

from ..referring_cls.osprey_json import read_referring

# The question of each SPHINX-V eval file. Box ROC: the released readme's example record;
# point ROC: the stage-1 template (PROTOCOLS_WAVE2.md §B: not in the released code); OCR and
# brief captions: the paper's text (§5.3, §5.4).
QUESTIONS: dict[str, str] = {
    "box": "Please identify the labels of each marked region in the image.",
    "point": "Please identify the labels of each marked point in the image.",
    "ocr": "Please provide the ocr results of each marked region in the image.",
    "brief_caption": "Please provide a brief description of each marked region in the image.",
}
DATASETS: dict[str, str] = {  # dataset_name -> prompt kind
    "LVIS_box": "box",
    "LVIS_point": "point",
    "PACO_box": "box",
    "PACO_point": "point",
}


def rule_note(kind: str, seed: int) -> str:
    if kind == "box":
        return "boxes = tight box of each GT mask (COCO xywh pixels)"
    return (
        f"points = a uniform foreground pixel of each GT mask, one numpy default_rng({seed}) "
        "stream over the objects in file order (PROTOCOLS_WAVE2.md §B default, non-reference)"
    )


def _question_id(sample: Sample) -> int | str:
    """The COCO image id: a raw file's ``<image id>/<ann id>`` prefix, or an Osprey subset's
    file-name digits (``000000490182.jpg`` -> 490182)."""
    if "/" in sample.id:
        head = sample.id.split("/", 1)[0]
        return int(head) if head.isdigit() else head
    stem = PurePosixPath(str(sample.image)).stem
    return int(stem) if stem.isdigit() else stem


def rebuild_records(
    samples: Sequence[Sample], dataset_name: str, kind: str, question: str, seed: int = 0
) -> list[dict[str, Any]]:
    """SPHINX-V records (one per image, first-appearance order) from per-region samples whose
    target is the category and whose one region is the GT mask."""
    rng = np.random.default_rng(seed)
    records: dict[str, dict[str, Any]] = {}
    for s in samples:
        (region,) = s.regions
        mask = region.to_mask(cache=False)
        if kind == "point":
            x, y = seeded_point(mask, rng)
            vp: list[float] = [int(x), int(y)]
        else:
            x1, y1, x2, y2 = tight_box(mask)
            vp = [x1, y1, x2 - x1, y2 - y1]
        image = str(s.image)
        rec = records.get(image)
        if rec is None:
            rec = records[image] = {
                "image_name": image,
                "question": question,
                "question_id": _question_id(s),
                "dataset_name": dataset_name,
                "gt_answers": [],
                "bbox" if kind == "box" else "points": [],
                "height": region.height,
                "width": region.width,
            }
        rec["gt_answers"].append(f"Region {len(rec['gt_answers']) + 1}: {s.target}")
        rec["bbox" if kind == "box" else "points"].append(vp)
    out = list(records.values())
    for rec in out:
        rec["gt_answers"] = "\n".join(rec["gt_answers"])
    return out


def rebuild_from(
    data: Mapping[str, Path | None], options: Mapping[str, Any], dataset_name: str, kind: str, question: str
) -> tuple[list[dict[str, Any]], ReadResult]:
    """The records rebuilt from the ``annotations`` file (Osprey subset or raw COCO-style)."""
    source = read_referring(data, options)
    seed = int(options.get("point_seed", 0))
    return rebuild_records(source.samples, dataset_name, kind, question, seed), source


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument(
        "src", type=Path, help="Osprey *_val_1k_category.json, or raw LVIS v1 / PACO-LVIS val"
    )
    parser.add_argument("out", type=Path)
    parser.add_argument("--sample-images", type=int, default=1000, help="raw files: images sampled")
    parser.add_argument("--seed", type=int, default=0, help="raw files: image sampling seed")
    parser.add_argument("--point-seed", type=int, default=0)
    parser.add_argument("--parts-only", action="store_true", help="raw PACO: object:part categories only")
    args = parser.parse_args(argv)
    kind = DATASETS[args.dataset]
    options = {
        "sample_images": args.sample_images,
        "seed": args.seed,
        "parts_only": args.parts_only,
        "point_seed": args.point_seed,
    }
    records, _ = rebuild_from({"annotations": args.src}, options, args.dataset, kind, QUESTIONS[kind])
    args.out.write_text(json.dumps(records))
    n = sum(len(r["gt_answers"].split("\n")) for r in records)
    print(f"{args.out}: {len(records)} images, {n} regions; {rule_note(kind, args.point_seed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
