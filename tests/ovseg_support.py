"""Test / benchmark support for the open-vocabulary segmentation tasks.

* :func:`make_dataset` writes a synthetic COCO-panoptic val set in the ADE20K layout (panoptic
  PNG + JSON, semantic PNGs, instance JSON, vocabulary file) with VOID pixels, crowds, tiny
  segments, stuff areas in the JSON larger than their pixels (as ADE's preparation leaves
  them), and classes absent from the ground truth.
* :func:`fake_encoder` embeds strings deterministically (the template is stripped, so an
  answer equal to a synonym has cosine 1 with its class) — no model needed.
* :func:`reference_scores` is the reference pipeline, written from the released code: dense
  ``300 x H x W`` Mask2Former inference in torch, prediction PNGs + panopticapi
  ``pq_compute_single_core``, pycocotools ``COCOeval`` on RLE results, detectron2's
  SemSegEvaluator formula.
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

TEMPLATE_HEAD, TEMPLATE_TAIL = "There is a ", " in the scene."


def fake_encoder(texts: Sequence[str]) -> np.ndarray:
    out = np.zeros((len(texts), 64))
    for k, text in enumerate(texts):
        if text.startswith(TEMPLATE_HEAD) and text.endswith(TEMPLATE_TAIL):
            text = text[len(TEMPLATE_HEAD) : -len(TEMPLATE_TAIL)]
        out[k] = np.random.default_rng(zlib.crc32(text.encode())).normal(size=64)
    return out


def id2rgb(ids: np.ndarray) -> np.ndarray:
    ids = ids.astype(np.uint32)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


def class_names(n_classes: int) -> list[list[str]]:
    return [[f"cls{k}", f"cls{k} alt"] for k in range(n_classes)]


def make_dataset(
    root: Path,
    n_images: int = 6,
    size: tuple[int, int] = (48, 64),
    n_classes: int = 12,
    n_things: int = 7,
    segments: int = 15,
    seed: int = 0,
    crowd: bool = True,
    layout: str = "ade20k",
) -> dict[str, Path]:
    """ADE20K-layout files (or Cityscapes: label ids 7, 10, 13... ranked into trainIds, city
    folders, no ``invalid_class_id`` line); the first ``n_things`` classes are things, the
    last two never occur."""
    rng = random.Random(seed)
    h, w = size
    pan_dir, sem_dir = root / "panoptic", root / "semantic"
    pan_dir.mkdir(parents=True, exist_ok=True)
    sem_dir.mkdir(parents=True, exist_ok=True)
    used = list(range(n_classes - 2))
    city = layout == "cityscapes"
    cat_ids = [7 + 3 * k for k in range(n_classes)] if city else list(range(n_classes))
    cats = [{"id": cat_ids[k], "name": f"cls{k}", "isthing": int(k < n_things)} for k in range(n_classes)]
    images, annotations, inst_anns = [], [], []
    ann_id = 1
    for n in range(n_images):
        image_id = f"city{n % 2}_000000_{n:06d}" if city else f"img_{n:05d}"
        pan = np.zeros((h, w), dtype=np.uint32)
        taken: set[int] = set()

        background = _new_id(rng, taken)
        pan[:] = background
        seg_cat = {background: rng.choice([c for c in used if c >= n_things])}
        for _ in range(rng.randint(segments - 4, segments + 4)):
            y0, x0 = rng.randrange(h), rng.randrange(w)
            tiny = rng.random() < 0.15
            y1 = min(h, y0 + (rng.randint(1, 2) if tiny else rng.randint(4, h // 2)))
            x1 = min(w, x0 + (rng.randint(1, 2) if tiny else rng.randint(4, w // 2)))
            sid = _new_id(rng, taken)
            pan[y0:y1, x0:x1] = sid
            seg_cat[sid] = rng.choice(used)
        if rng.random() < 0.8:  # VOID
            y0, x0 = rng.randrange(h - 3), rng.randrange(w - 3)
            pan[y0 : y0 + rng.randint(2, 8), x0 : x0 + rng.randint(2, 8)] = 0
        present, counts = np.unique(pan, return_counts=True)
        segments_info = []
        sem = np.full((h, w), 255, dtype=np.uint8)
        for sid, count in zip(present.tolist(), counts.tolist(), strict=True):
            if sid == 0:
                continue
            cat = seg_cat[sid]
            is_crowd = int(crowd and cat < n_things and rng.random() < 0.1)
            # ADE's preparation paints things over stuff after measuring stuff areas
            area = count + (rng.randint(1, 30) if cat >= n_things and rng.random() < 0.3 else 0)
            segments_info.append(
                {
                    "id": sid,
                    "category_id": cat_ids[cat],
                    "area": area,
                    "iscrowd": is_crowd,
                    "bbox": [0, 0, 1, 1],
                }
            )
            mask = pan == sid
            sem[mask] = cat
            if cat < n_things:
                inst_mask = mask.copy()
                if rng.random() < 0.3:  # instance masks may overlap other segments
                    ys, xs = np.nonzero(mask)
                    inst_mask[max(0, ys.min() - 2) : ys.max() + 3, max(0, xs.min() - 2) : xs.max() + 3] = True
                inst_anns.append(
                    {
                        "id": ann_id,
                        "image_id": image_id,
                        "category_id": cat_ids[cat],
                        "iscrowd": is_crowd,
                        "segmentation": _rle(inst_mask),
                        "area": int(inst_mask.sum()),
                        "bbox": _bbox(inst_mask),
                    }
                )
                ann_id += 1
        sem[rng.randrange(h), rng.randrange(w)] = 255  # a stray ignore pixel
        pan_name = f"{image_id}_gtFine_panoptic.png" if city else f"{image_id}.png"
        Image.fromarray(id2rgb(pan)).save(pan_dir / pan_name)
        if city:
            (sem_dir / image_id.split("_")[0]).mkdir(exist_ok=True)
            Image.fromarray(sem).save(
                sem_dir / image_id.split("_")[0] / f"{image_id}_gtFine_labelTrainIds.png"
            )
        else:
            Image.fromarray(sem).save(sem_dir / pan_name)
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "height": h, "width": w})
        annotations.append({"image_id": image_id, "file_name": pan_name, "segments_info": segments_info})
    pan_json = root / "panoptic.json"
    pan_json.write_text(json.dumps({"images": images, "annotations": annotations, "categories": cats}))
    inst_json = root / "instances.json"
    inst_json.write_text(
        json.dumps(
            {
                "images": images,
                "annotations": inst_anns,
                "categories": [c for c in cats if c["isthing"]],
            }
        )
    )
    vocab = root / "vocabulary.txt"
    offset = 0 if city else 1
    vocab.write_text(
        ("" if city else "0:invalid_class_id\n")
        + "\n".join(f"{k + offset}:{','.join(names)}" for k, names in enumerate(class_names(n_classes)))
    )
    return {
        "panoptic_json": pan_json,
        "panoptic_root": pan_dir,
        "semantic_root": sem_dir,
        "instances_json": inst_json,
        "vocabulary": vocab,
    }


def _new_id(rng: random.Random, taken: set[int]) -> int:
    while True:
        sid = rng.randrange(1, 1 << 24)
        if sid not in taken:
            taken.add(sid)
            return sid


def _rle(mask: np.ndarray) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode()
    return rle


def _bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [
        int(xs.min()),
        int(ys.min()),
        int(xs.max() - xs.min() + 1),
        int(ys.max() - ys.min() + 1),
    ]


def make_predictions(paths: dict[str, Path], out: Path, seed: int = 0, p_correct: float = 0.6) -> Path:
    rng = random.Random(seed)
    pan = json.loads(paths["panoptic_json"].read_text())
    n_classes = len(pan["categories"])
    names = class_names(n_classes)
    rank = {c["id"]: k for k, c in enumerate(sorted(pan["categories"], key=lambda c: c["id"]))}
    with out.open("w") as fh:
        for ann in pan["annotations"]:
            for seg in sorted(ann["segments_info"], key=lambda s: s["id"]):
                r = rng.random()
                if r < p_correct:
                    text = rng.choice(names[rank[seg["category_id"]]])
                elif r < 0.9:
                    text = rng.choice(names[rng.randrange(n_classes)])
                else:
                    text = rng.choice(["something", "a thing", "unclear </s>"])
                fh.write(json.dumps({"id": f"{ann['image_id']}#{seg['id']}", "text": text}) + "\n")
    return out
