"""``evalkit data prepare ade20k SRC DEST``: ADE20K-150 as ``ade20k_ovseg`` reads it — the
files Mask2Former's ``prepare_ade20k_{sem,pan,ins}_seg.py`` write, without detectron2 or
panopticapi.

``SRC`` is ``ADEChallengeData2016`` (http://sceneparsing.csail.mit.edu/ ,
``ADEChallengeData2016.zip``) with the Places Challenge instance annotations untarred into it
(``annotations_instance.tar``, same site). ``DEST`` (``$EVALKIT_DATA/ADEChallengeData2016``
for the card's defaults; may be ``SRC`` itself, as the reference writes there) gets, for split
``val`` (folder ``validation``):

* ``annotations_detectron2/validation/<id>.png`` (prepare_ade20k_sem_seg.py): the label
  minus one as uint8, so 0 ("other") wraps to 255 = ignore (for the split's images; the
  reference converts every file of ``annotations/<dir>``, the same ones in the release);
* ``ade20k_panoptic_val/<id>.png`` + ``ade20k_panoptic_val.json`` (prepare_ade20k_pan_seg.py);
* ``ade20k_instance_val.json`` (prepare_ade20k_ins_seg.py);
* ``images/validation``: a link to SRC's, when DEST is another folder.

The reference rules (Mask2Former commit 9b0651c), restated:

* Images: the sorted ``images/<dir>/*.jpg``; image id = the file name up to its first ``.``;
  width and height of the decoded image. Semantic and instance PNGs are ``<id>.png``.
* Panoptic, per image: **stuff first** — each semantic value present (label - 1, 255 left
  out) whose class is not a thing becomes one segment in its class colour; **then things** —
  each non-zero instance id (G channel) becomes one segment of the SceneParsing class its
  instance class (R channel) maps to, pasted over the stuff under it. A class is a thing when
  some instance class maps to it. Areas and boxes are the masks' *before* pasting, so a stuff
  segment's JSON area still counts pixels a thing covers. Colours come from panopticapi's
  ``IdGenerator``, new for each image: stuff colours are reserved from the start; a thing
  takes its class colour if still free, else the class colour plus a uniform offset in
  [-30, 30] per channel, clipped to [0, 255], drawn again until free. Segment id = R + 256 G +
  256² B. JSON: ``json.dump`` with default separators.
* Instances: one annotation per non-zero instance id, images in order and instance ids
  ascending within one, ``id`` counting from 1 over the split; ``category_id`` = the mapped
  SceneParsing index; bbox of the mask; pycocotools RLE; area = the RLE's area; iscrowd 0.
  Categories: the 100 instance classes, their ids mapped the same way.

One departure: the reference draws the colour offsets from NumPy's global RNG, never seeded,
so no two runs of it give the same ids to the second and later instances of a class in an
image. evalkit draws them from ``np.random.RandomState`` seeded per image (the first four
bytes of sha256("<seed>|<image id>"), ``--seed``, default 0): the same files on every run,
for any ``--jobs`` and across resumes. Segment ids are labels only; PQ, AP and mIoU do not
depend on them.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from rich.console import Console

from evalkit.data.prepare import (
    PrepareError,
    PrepareOptions,
    Preparer,
    PrepareResult,
    WorkDir,
    link_folder,
    register_preparer,
    require_folder,
    run_items,
    write_png,
    write_record,
)
from evalkit.errors import EvalkitError
from evalkit.files import atomic_write_text

from .ade20k_classes import ADE20K_150, ADE20K_INSTANCE_100

SPLIT_FOLDERS = {"val": "validation", "train": "training"}
MAX_OFFSET = 30  # IdGenerator.random_color's max_dist
VOID = 255

# SceneParsing index (0-based) of each instance class; a class some instance maps to is a thing.
INSTANCE_TO_CLASS: dict[int, int] = {ins: sem - 1 for ins, sem, _ in ADE20K_INSTANCE_100}
THING_CLASSES = frozenset(INSTANCE_TO_CLASS.values())


def panoptic_categories() -> list[dict[str, Any]]:
    return [
        {"name": name, "id": k, "isthing": int(k in THING_CLASSES), "color": list(colour)}
        for k, (name, colour) in enumerate(ADE20K_150)
    ]


def instance_categories() -> list[dict[str, Any]]:
    return [{"id": INSTANCE_TO_CLASS[ins], "name": name} for ins, _, name in ADE20K_INSTANCE_100]


def image_seed(seed: int, image_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}|{image_id}".encode()).digest()[:4], "little")


class SegmentColours:
    """panopticapi's IdGenerator rule for one image, drawing offsets from ``rng``."""

    def __init__(self, rng: np.random.RandomState):
        self.rng = rng
        # The reference starts from set([0, 0, 0]) == {0}, which no colour tuple equals: black
        # is not reserved. Stuff colours are.
        self.taken = {colour for k, (_, colour) in enumerate(ADE20K_150) if k not in THING_CLASSES}

    def colour(self, class_index: int) -> tuple[int, int, int]:
        base = ADE20K_150[class_index][1]
        if class_index not in THING_CLASSES:
            return base
        if base not in self.taken:
            self.taken.add(base)
            return base
        while True:
            offset = self.rng.randint(low=-MAX_OFFSET, high=MAX_OFFSET + 1, size=3)
            drawn = np.clip(np.array(base) + offset, 0, 255)
            colour = (int(drawn[0]), int(drawn[1]), int(drawn[2]))
            if colour not in self.taken:
                self.taken.add(colour)
                return colour


def bbox_of(mask: np.ndarray) -> list[int]:
    """[x, y, width, height] of the mask's pixels (as the scripts' row / column sums give it)."""
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


@dataclass(frozen=True)
class AdeJob:
    """Everything one image's conversion needs (picklable, for the worker processes)."""

    images: Path
    semantic: Path
    instances: Path
    out_semantic: Path
    out_panoptic: Path
    work: Path
    seed: int


def _read_uint8(path: Path, channels: int) -> np.ndarray:
    if not path.is_file():
        raise PrepareError(f"{path}: not found")
    with Image.open(path) as im:
        arr = np.asarray(im)
    if arr.dtype != np.uint8:
        raise PrepareError(f"{path}: expected 8-bit values, found {arr.dtype}")
    if (arr.ndim == 2) != (channels == 1) or (channels > 1 and arr.shape[2] < channels):
        raise PrepareError(f"{path}: expected {'one channel' if channels == 1 else 'RGB'}, shape {arr.shape}")
    return arr


def convert_image(job: AdeJob, file_name: str) -> str | None:
    """One image: semantic PNG, panoptic PNG, its record (panoptic segments + instances)."""
    try:
        _convert_image(job, file_name)
    except EvalkitError as exc:
        return str(exc)
    except OSError as exc:  # an unreadable image or PNG (Pillow names the file)
        return f"{file_name}: {exc}"
    return None


def _convert_image(job: AdeJob, file_name: str) -> None:
    image_id = file_name.split(".")[0]
    with Image.open(job.images / file_name) as im:
        width, height = im.size
    sem_path = job.semantic / f"{image_id}.png"
    ins_path = job.instances / f"{image_id}.png"
    sem = _read_uint8(sem_path, 1)
    ins = _read_uint8(ins_path, 3)
    for path, arr in ((sem_path, sem), (ins_path, ins)):
        if arr.shape[:2] != (height, width):
            raise PrepareError(f"{path}: {arr.shape[1]}x{arr.shape[0]}, but its image is {width}x{height}")

    classes = sem - np.uint8(1)  # uint8 arithmetic: 0 wraps to 255 (ignore), as the reference
    write_png(job.out_semantic / f"{image_id}.png", classes)

    colours = SegmentColours(np.random.RandomState(image_seed(job.seed, image_id)))
    pan = np.zeros((height, width, 3), dtype=np.uint8)
    segments: list[dict[str, Any]] = []

    def add(mask: np.ndarray, class_index: int) -> None:
        colour = colours.colour(class_index)
        pan[mask] = colour
        segments.append(
            {
                "id": colour[0] + 256 * colour[1] + 65536 * colour[2],
                "category_id": class_index,
                "area": int(mask.sum()),
                "bbox": bbox_of(mask),
                "iscrowd": 0,
            }
        )

    for value in np.unique(classes).tolist():
        if value != VOID and value not in THING_CLASSES:
            add(classes == value, value)

    instance_ids, instance_classes = ins[..., 1], ins[..., 0]
    instances: list[dict[str, Any]] = []
    for thing_id in np.unique(instance_ids).tolist():
        if thing_id == 0:
            continue
        mask = instance_ids == thing_id
        found = np.unique(instance_classes[mask]).tolist()
        if len(found) != 1:
            raise PrepareError(f"{ins_path}: instance {thing_id} has instance classes {found} (expected one)")
        if found[0] not in INSTANCE_TO_CLASS:
            raise PrepareError(
                f"{ins_path}: instance {thing_id} has instance class {found[0]}, "
                "not one of the 100 of ade20k_instance_catid_mapping.txt"
            )
        class_index = INSTANCE_TO_CLASS[found[0]]
        add(mask, class_index)
        rle = mask_utils.encode(np.asfortranarray(mask[:, :, None], dtype=np.uint8))[0]
        rle["counts"] = rle["counts"].decode("utf-8")
        instances.append(
            {
                "category_id": class_index,
                "bbox": bbox_of(mask),
                "segmentation": rle,
                "area": int(mask_utils.area(rle)),
            }
        )
    write_png(job.out_panoptic / f"{image_id}.png", pan)
    record = {
        "image": {"id": image_id, "file_name": file_name, "width": width, "height": height},
        "segments_info": segments,
        "instances": instances,
    }
    write_record(job.work, file_name, record)


@register_preparer
class Ade20kPreparer(Preparer):
    name = "ade20k"
    summary = "ADEChallengeData2016 + instance annotations -> panoptic, semantic and instance files"
    source = (
        "ADEChallengeData2016 (http://sceneparsing.csail.mit.edu/) with annotations_instance/ "
        "from http://sceneparsing.csail.mit.edu/data/ChallengeData2017/annotations_instance.tar"
    )
    takes = frozenset({"split", "seed"})
    splits = ("val", "train")

    def prepare(self, src: Path, dest: Path, options: PrepareOptions, console: Console) -> PrepareResult:
        split = self.split(options)
        folder = SPLIT_FOLDERS[split]
        images = require_folder(src / "images" / folder, f"images/{folder}: is SRC ADEChallengeData2016?")
        semantic = require_folder(src / "annotations" / folder, f"ADE20K annotations/{folder}")
        instances = require_folder(
            src / "annotations_instance" / folder,
            f"the instance annotations: untar annotations_instance.tar into {src}",
        )
        files = sorted(p.name for p in images.glob("*.jpg"))
        if not files:
            raise PrepareError(f"{images}: no .jpg images")
        fingerprint = {"dataset": self.name, "split": split, "seed": options.seed}
        work = WorkDir(dest, f"ade20k-{split}", fingerprint, options.force)
        job = AdeJob(
            images=images,
            semantic=semantic,
            instances=instances,
            out_semantic=dest / "annotations_detectron2" / folder,
            out_panoptic=dest / f"ade20k_panoptic_{split}",
            work=work.root,
            seed=options.seed,
        )
        job.out_semantic.mkdir(parents=True, exist_ok=True)
        job.out_panoptic.mkdir(parents=True, exist_ok=True)
        if len({name.split(".")[0] for name in files}) != len(files):
            raise PrepareError(f"{images}: two images share an id (the name up to its first '.')")
        converted = run_items(
            files, functools.partial(convert_image, job), work, options, f"ade20k {split}", console
        )
        records = [work.load(name) for name in files]
        pan_json = dest / f"ade20k_panoptic_{split}.json"
        ins_json = dest / f"ade20k_instance_{split}.json"
        atomic_write_text(pan_json, json.dumps(panoptic_json(records)))
        atomic_write_text(ins_json, json.dumps(instance_json(records)))
        work.finish()
        notes = [f"{len(records):,} images ({converted:,} converted now)"]
        if link_folder(images, dest / "images" / folder):
            notes.append(f"linked {dest / 'images' / folder} -> {images}")
        return PrepareResult(
            written=[pan_json, job.out_panoptic, job.out_semantic, ins_json],
            tasks=["ade20k_ovseg"] if split == "val" else [],
            data=ade_data_paths(dest) if split == "val" else {},
            notes=[*notes, "vocabulary: Osprey's ade20k_150_with_prompt_eng.txt (see the check below)"],
        )


def ade_data_paths(dest: Path) -> dict[str, Path]:
    """The ``--data`` paths of ``ade20k_ovseg`` in a prepared DEST (its defaults, when DEST is
    ``$EVALKIT_DATA/ADEChallengeData2016``)."""
    return {
        "panoptic_json": dest / "ade20k_panoptic_val.json",
        "panoptic_root": dest / "ade20k_panoptic_val",
        "semantic_root": dest / "annotations_detectron2" / "validation",
        "instances_json": dest / "ade20k_instance_val.json",
        "images": dest / "images" / "validation",
    }


def panoptic_json(records: list[dict[str, Any]]) -> dict[str, Any]:
    annotations = [
        {
            "image_id": r["image"]["id"],
            "file_name": r["image"]["id"] + ".png",
            "segments_info": r["segments_info"],
        }
        for r in records
    ]
    images = [r["image"] for r in records]
    return {"images": images, "annotations": annotations, "categories": panoptic_categories()}


def instance_json(records: list[dict[str, Any]]) -> dict[str, Any]:
    annotations: list[dict[str, Any]] = []
    for r in records:
        for inst in r["instances"]:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": r["image"]["id"],
                    "iscrowd": 0,
                    "category_id": inst["category_id"],
                    "bbox": inst["bbox"],
                    "segmentation": inst["segmentation"],
                    "area": inst["area"],
                }
            )
    images = [r["image"] for r in records]
    return {"images": images, "categories": instance_categories(), "annotations": annotations}
