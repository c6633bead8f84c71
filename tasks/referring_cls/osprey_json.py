"""Referring-classification data: Osprey's 1K-image subsets and raw LVIS / PACO-LVIS JSON.

* ``lvis_val_1k_category.json`` / ``paco_val_1k_category.json`` (Osprey's released subsets):
  a list of ``{file_name, height, width, categories: [str], annotations: [{segmentation}]}``,
  ``categories[i]`` naming ``annotations[i]``. Sample id: ``<file stem>#<i>``.
* Raw LVIS v1 val / PACO-LVIS val (COCO-style ``{images, annotations, categories}``): a seeded
  sample of ``sample_images`` images (default 1,000, seed 0: ``random.Random(seed).sample``
  over the sorted ids of the images that have usable annotations — the same on every
  machine). Sample id: ``<image id>/<annotation id>``. ``parts_only`` keeps PACO's
  ``object:part`` categories.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from evalkit.errors import DataError
from evalkit.readers import (
    ReadResult,
    RecordErrors,
    image_path,
    load_json,
    register_reader,
    require_path,
    segmentation_region,
    typed_field,
)
from evalkit.records import Sample
from evalkit.regions import Region


@register_reader("osprey_json")
def read_referring(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    path = require_path(data, "annotations")
    raw = load_json(path)
    images = data.get("images")
    errors = RecordErrors(options)
    if isinstance(raw, list):
        samples = read_osprey_subset(path, raw, images, errors)
        note = f"{path.name}: Osprey subset, {len(samples)} regions"
        return ReadResult(samples, [path], [note, *errors.odd_notes()], errors.skipped)
    if isinstance(raw, dict) and {"images", "annotations", "categories"} <= raw.keys():
        return read_coco_style(path, raw, images, options, errors)
    raise DataError(
        path,
        "expected Osprey's list of image records or a COCO-style object with "
        "'images', 'annotations' and 'categories'",
    )


def read_osprey_subset(
    path: Path, records: list[Any], images: Path | None, errors: RecordErrors | None = None
) -> list[Sample]:
    errors = errors or RecordErrors({})
    samples: list[Sample] = []
    for index, record in enumerate(records):
        with errors.guard():
            samples.extend(_subset_record(path, index, record, images, errors))
    return samples


def _subset_record(
    path: Path, index: int, record: Any, images: Path | None, errors: RecordErrors
) -> list[Sample]:
    samples: list[Sample] = []
    where = f"#{index}"
    if not isinstance(record, dict):
        raise DataError(path, "an image record must be an object", where)
    file_name = typed_field(path, record, "file_name", str, where)
    where = f"#{index} ({file_name})"
    height = typed_field(path, record, "height", int, where)
    width = typed_field(path, record, "width", int, where)
    categories = typed_field(path, record, "categories", list, where)
    annotations = typed_field(path, record, "annotations", list, where)
    if len(categories) != len(annotations):
        raise DataError(
            path,
            f"{len(categories)} categories for {len(annotations)} annotations",
            where,
        )
    stem = PurePosixPath(file_name).stem
    for i, (category, ann) in enumerate(zip(categories, annotations, strict=True)):
        with errors.guard():
            region = _region(path, f"{where} annotation {i}", category, ann, height, width, errors.odd)
            samples.append(
                Sample(
                    id=f"{stem}#{i}",
                    image=file_name,
                    regions=[region],
                    target=category,
                    image_path=image_path(images, file_name, where),
                )
            )
    return samples


def _region(
    path: Path, where: str, category: Any, ann: Any, height: int, width: int, odd: list[str] | None = None
) -> Region:
    if not isinstance(category, str):
        raise DataError(path, f"category is not a string: {category!r}", where)
    seen: list[str] = []
    region = segmentation_region(path, ann, height, width, where, seen)
    if region.area() == 0:
        raise DataError(path, "empty mask (0 pixels): nothing to ask about", where)
    if odd is not None:
        odd.extend(seen)  # only once the region is used
    return region


@dataclass
class CocoSubset:
    """The seeded image sample of a raw LVIS / PACO-LVIS file, as ``read_coco_style`` takes it
    (``evalkit data prepare lvis-1k|paco-1k`` writes the same images in Osprey's layout)."""

    chosen: list[int]  # sampled image ids, ascending
    eligible: int  # images with at least one usable annotation
    images: dict[int, dict[str, Any]]  # image id -> its JSON entry
    annotations: dict[int, list[dict[str, Any]]]  # image id -> usable annotations, id order
    categories: dict[int, str]  # category id -> name


def coco_subset(path: Path, raw: dict[str, Any], options: Mapping[str, Any]) -> CocoSubset:
    n_images = int(options.get("sample_images", 1000))
    seed = int(options.get("seed", 0))
    parts_only = bool(options.get("parts_only", False))
    categories = {c["id"]: c["name"] for c in raw["categories"]}
    image_info: dict[int, dict[str, Any]] = {}
    for k, img in enumerate(raw["images"]):
        if not isinstance(img, dict) or "id" not in img:
            raise DataError(path, "image entry has no 'id'", f"images[{k}]")
        image_info[img["id"]] = img
    by_image: dict[int, list[dict[str, Any]]] = {}
    for k, ann in enumerate(raw["annotations"]):
        where = f"annotations[{k}]"
        if not isinstance(ann, dict) or not {"id", "image_id", "category_id", "segmentation"} <= ann.keys():
            raise DataError(path, "annotation needs id, image_id, category_id, segmentation", where)
        if ann["category_id"] not in categories:
            raise DataError(path, f"unknown category_id {ann['category_id']}", f"{where} (id {ann['id']})")
        if ann["image_id"] not in image_info:
            raise DataError(path, f"unknown image_id {ann['image_id']}", f"{where} (id {ann['id']})")
        if parts_only and ":" not in categories[ann["category_id"]]:
            continue
        if ann.get("iscrowd", 0):
            continue
        by_image.setdefault(ann["image_id"], []).append(ann)
    eligible = sorted(by_image)
    chosen = sorted(random.Random(seed).sample(eligible, min(n_images, len(eligible))))
    for anns in by_image.values():
        anns.sort(key=lambda a: a["id"])
    return CocoSubset(chosen, len(eligible), image_info, by_image, categories)


def coco_file_name(path: Path, img: dict[str, Any]) -> str:
    """An image's file name: ``file_name`` (PACO), else the last part of ``coco_url`` (LVIS)."""
    file_name = img.get("file_name") or PurePosixPath(str(img.get("coco_url", ""))).name
    if not file_name:
        raise DataError(path, "image has neither file_name nor coco_url", f"image {img.get('id')}")
    return str(file_name)


def read_coco_style(
    path: Path,
    raw: dict[str, Any],
    images: Path | None,
    options: Mapping[str, Any],
    errors: RecordErrors,
) -> ReadResult:
    subset = coco_subset(path, raw, options)
    samples: list[Sample] = []
    for image_id in subset.chosen:
        img = subset.images[image_id]
        file_name = coco_file_name(path, img)
        for ann in subset.annotations[image_id]:
            category = subset.categories[ann["category_id"]]
            with errors.guard():
                where = f"annotation {ann['id']}"
                region = _region(path, where, category, ann, img["height"], img["width"], errors.odd)
                samples.append(
                    Sample(
                        id=f"{image_id}/{ann['id']}",
                        image=file_name,
                        regions=[region],
                        target=category,
                        image_path=image_path(images, file_name, where),
                    )
                )
    seed = int(options.get("seed", 0))
    note = (
        f"{path.name}: COCO-style; {len(subset.chosen)} of {subset.eligible} images sampled with "
        f"random.Random({seed}).sample over sorted image ids"
        + ("; part categories only" if options.get("parts_only", False) else "")
    )
    return ReadResult(samples, [path], [note, *errors.odd_notes()], errors.skipped)
