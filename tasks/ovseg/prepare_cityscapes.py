"""``evalkit data prepare cityscapes SRC DEST``: Cityscapes val as ``cityscapes_ovseg`` reads
it — the files cityscapesScripts' ``createPanopticImgs.py`` and ``createTrainIdLabelImgs.py``
write, without installing cityscapesScripts.

``SRC`` is a Cityscapes root holding ``gtFine/`` (gtFine_trainvaltest.zip) and
``leftImg8bit/`` (leftImg8bit_trainvaltest.zip) from https://www.cityscapes-dataset.com/downloads/.
``DEST`` (``$EVALKIT_DATA/cityscapes`` for the card's defaults; may be ``SRC``: the reference
writes into gtFine) gets, for split ``val``:

* ``gtFine/cityscapes_panoptic_val/<id>_gtFine_panoptic.png`` and
  ``gtFine/cityscapes_panoptic_val.json`` (createPanopticImgs, label ids, not ``--use-train-id``);
* ``gtFine/val/<city>/<id>_gtFine_labelTrainIds.png`` (createTrainIdLabelImgs, for the
  split's fine annotations only: the reference also converts the other splits and gtCoarse);
* ``leftImg8bit/val``: a link to SRC's, when DEST is another folder.

The reference rules (mcordts/cityscapesScripts 0bcc4a7), restated (labels:
:mod:`.cityscapes_labels`):

* Panoptic: the sorted ``gtFine/<split>/*/*_instanceIds.png``; image id = the file name less
  ``_gtFine_instanceIds.png``; the images entry's ``file_name`` is the name with
  ``_instanceIds.png`` replaced by ``_leftImg8bit.png`` (so ``<id>_gtFine_leftImg8bit.png``,
  kept as the script writes it). Each distinct value v of the PNG, ascending: v < 1000 is a
  region of label v (crowd, if the label has instances), else an instance of label v // 1000;
  labels ignored in evaluation are left out (VOID, id 0). The segment id is v, its colour
  (v % 256, v // 256, v // 65536), its area and box those of its pixels. Categories: the
  labels not ignored in evaluation, in table order. JSON: sorted keys, indent 4.
* Train ids: a canvas of the image size filled with 255 (unlabeled), then each polygon of
  ``*_gtFine_polygons.json`` in file order, drawn with PIL's ``ImageDraw.polygon`` in its
  label's train id — deleted objects skipped, ``<label>group`` read as ``<label>``, labels
  with a negative id (license plate) not drawn.

Nothing is random: the output is the reference's, byte for byte, for the same Pillow.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
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

from .cityscapes_labels import BY_ID, BY_NAME, LABELS

INSTANCE_SUFFIX = "_gtFine_instanceIds.png"
UNLABELED = BY_NAME["unlabeled"]


def panoptic_categories() -> list[dict[str, Any]]:
    return [
        {
            "id": label.id,
            "name": label.name,
            "color": list(label.color),
            "supercategory": label.category,
            "isthing": 1 if label.has_instances else 0,
        }
        for label in LABELS
        if not label.ignore_in_eval
    ]


@dataclass(frozen=True)
class CityJob:
    gt: Path  # gtFine/<split>
    out_panoptic: Path
    out_gt: Path  # DEST/gtFine/<split>
    work: Path


def convert_image(job: CityJob, item: str) -> str | None:
    """One image (``<city>/<id>``): panoptic PNG, train-id PNG, its record."""
    try:
        _convert_image(job, item)
    except EvalkitError as exc:
        return str(exc)
    except OSError as exc:  # an unreadable image or PNG (Pillow names the file)
        return f"{item}: {exc}"
    return None


def _bbox(mask: np.ndarray) -> list[int]:
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def _convert_image(job: CityJob, item: str) -> None:
    city, image_id = item.split("/")
    source = job.gt / city / f"{image_id}{INSTANCE_SUFFIX}"
    with Image.open(source) as im:
        ids = np.array(im)
    if ids.ndim != 2:
        raise PrepareError(f"{source}: expected a one-channel instance id PNG, shape {ids.shape}")
    height, width = ids.shape
    pan = np.zeros((height, width, 3), dtype=np.uint8)
    segments: list[dict[str, Any]] = []
    for value in np.unique(ids).tolist():
        crowd = 1 if value < 1000 else 0
        label = BY_ID.get(value if value < 1000 else value // 1000)
        if label is None or value >= 1 << 16:
            raise PrepareError(f"{source}: value {value} is no Cityscapes label or instance id")
        if label.ignore_in_eval:
            continue
        if not label.has_instances:
            crowd = 0
        mask = ids == value
        pan[mask] = (value % 256, value // 256, value // 256 // 256)
        segments.append(
            {
                "id": value,
                "category_id": label.id,
                "area": int(mask.sum()),
                "bbox": _bbox(mask),
                "iscrowd": crowd,
            }
        )
    file_name = f"{image_id}{INSTANCE_SUFFIX}"
    write_png(job.out_panoptic / file_name.replace("_instanceIds.png", "_panoptic.png"), pan)
    write_png(
        job.out_gt / city / f"{image_id}_gtFine_labelTrainIds.png", train_id_image(job.gt / city, image_id)
    )
    record = {
        "image": {
            "id": image_id,
            "width": width,
            "height": height,
            "file_name": file_name.replace("_instanceIds.png", "_leftImg8bit.png"),
        },
        "annotation": {
            "image_id": image_id,
            "file_name": file_name.replace("_instanceIds.png", "_panoptic.png"),
            "segments_info": segments,
        },
    }
    write_record(job.work, image_id, record)


def train_id_image(folder: Path, image_id: str) -> Image.Image:
    """createTrainIdLabelImgs / json2labelImg(..., "trainIds") of one polygons file."""
    path = folder / f"{image_id}_gtFine_polygons.json"
    if not path.is_file():
        raise PrepareError(f"{path}: not found (gtFine polygons)")
    try:
        raw = json.loads(path.read_text("utf-8"))
        size = (int(raw["imgWidth"]), int(raw["imgHeight"]))
        objects = list(raw["objects"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise PrepareError(f"{path}: not a Cityscapes polygons file ({exc})") from exc
    canvas = Image.new("L", size, UNLABELED.train_id)
    draw = ImageDraw.Draw(canvas)
    for k, obj in enumerate(objects):
        if obj.get("deleted"):
            continue
        name = str(obj["label"])
        if name not in BY_NAME and name.endswith("group"):
            name = name[: -len("group")]
        label = BY_NAME.get(name)
        if label is None:
            raise PrepareError(f"{path}, object {k}: unknown label {obj['label']!r}")
        if label.id < 0:
            continue
        try:
            draw.polygon([(p[0], p[1]) for p in obj["polygon"]], fill=label.train_id)
        except (TypeError, ValueError, IndexError) as exc:
            raise PrepareError(f"{path}, object {k}: cannot draw its polygon ({exc})") from exc
    return canvas


@register_preparer
class CityscapesPreparer(Preparer):
    name = "cityscapes"
    summary = "Cityscapes gtFine + leftImg8bit -> panoptic PNGs/JSON and labelTrainIds PNGs"
    source = (
        "a Cityscapes root with gtFine/ and leftImg8bit/ "
        "(https://www.cityscapes-dataset.com/downloads/: gtFine_trainvaltest.zip, "
        "leftImg8bit_trainvaltest.zip)"
    )
    takes = frozenset({"split"})
    splits = ("val", "train", "test")

    def prepare(self, src: Path, dest: Path, options: PrepareOptions, console: Console) -> PrepareResult:
        split = self.split(options)
        gt = require_folder(src / "gtFine" / split, f"gtFine/{split}: is SRC the Cityscapes root?")
        # The reference sorts full paths: by city folder, then file name.
        items = sorted(
            f"{p.parent.name}/{p.name[: -len(INSTANCE_SUFFIX)]}" for p in gt.glob(f"*/*{INSTANCE_SUFFIX}")
        )
        if not items:
            raise PrepareError(f"{gt}: no */*{INSTANCE_SUFFIX} files")
        work = WorkDir(dest, f"cityscapes-{split}", {"dataset": self.name, "split": split}, options.force)
        base = f"cityscapes_panoptic_{split}"
        job = CityJob(
            gt=gt, out_panoptic=dest / "gtFine" / base, out_gt=dest / "gtFine" / split, work=work.root
        )
        job.out_panoptic.mkdir(parents=True, exist_ok=True)
        converted = run_items(
            [i.split("/")[1] for i in items],
            functools.partial(_by_id, job, {i.split("/")[1]: i for i in items}),
            work,
            options,
            f"cityscapes {split}",
            console,
        )
        records = [work.load(i.split("/")[1]) for i in items]
        out = dest / "gtFine" / f"{base}.json"
        payload = {
            "images": [r["image"] for r in records],
            "annotations": [r["annotation"] for r in records],
            "categories": panoptic_categories(),
        }
        atomic_write_text(out, json.dumps(payload, sort_keys=True, indent=4))
        work.finish()
        notes = [f"{len(records):,} images ({converted:,} converted now)"]
        images = src / "leftImg8bit" / split
        if images.is_dir() and link_folder(images, dest / "leftImg8bit" / split):
            notes.append(f"linked {dest / 'leftImg8bit' / split} -> {images}")
        data = {
            "panoptic_json": out,
            "panoptic_root": job.out_panoptic,
            "semantic_root": job.out_gt,
            "images": dest / "leftImg8bit" / split,
        }
        return PrepareResult(
            written=[out, job.out_panoptic, job.out_gt],
            tasks=["cityscapes_ovseg"] if split == "val" else [],
            data=data if split == "val" else {},
            notes=[*notes, "vocabulary: Osprey's cityscapes_with_prompt_eng.txt (see the check below)"],
        )


def _by_id(job: CityJob, items: dict[str, str], image_id: str) -> str | None:
    return convert_image(job, items[image_id])
