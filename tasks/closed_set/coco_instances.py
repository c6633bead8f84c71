"""COCO instances (``instances_val2017.json``) as closed-set region classification samples.

One sample per **non-crowd** annotation (``iscrowd == 0``), in file order: id
``"{image_id}/{ann_id}"``, the region its ``segmentation`` (polygons through ``frPyObjects``
+ ``merge``, RLE as given), target its category's ``name`` exactly as the file spells it
(``dining table``, ``tv``, ``hair drier``). The vocabulary is the file's ``categories`` in
their listed order. Crowd annotations are not asked about; each sample carries its image's
crowds, which COCOeval treats as ignore regions, so scoring needs no second read of the file
(PROTOCOLS_WAVE2.md §H).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from evalkit.errors import DataError
from evalkit.readers import (
    ReadResult,
    RecordErrors,
    coco_image_path,
    load_json,
    register_reader,
    require_path,
    segmentation_region,
    typed_field,
)
from evalkit.records import Sample, SampleInfo


class CocoBox(BaseModel):
    """One ground-truth annotation as COCOeval's box evaluation reads it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    ann_id: int
    category_id: int
    bbox: tuple[float, float, float, float]  # COCO x, y, w, h
    area: float


class RegionClass(SampleInfo):
    """A region to name, with what AP needs: its annotation, its image's crowds and the
    closed vocabulary (names and category ids, in the file's order)."""

    image_id: int
    box: CocoBox
    crowd: list[CocoBox] = Field(default_factory=list)
    # Shared by every sample of a file (the reader builds them once and does not copy them
    # per sample: 36,000 COCO regions x 80 names); left out of the per-sample rows.
    vocabulary: list[str] = Field(default_factory=list)
    category_ids: list[int] = Field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True, exclude={"vocabulary", "category_ids"})

    def category_of(self, name: str) -> int | None:
        """The category id of a vocabulary name (None: out of vocabulary)."""
        try:
            return self.category_ids[self.vocabulary.index(name)]
        except ValueError:
            return None


@register_reader("coco_instances")
def read_coco_instances(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    path = require_path(data, "instances")
    raw = load_json(path)
    samples, note, skipped = samples_from_instances(path, raw, data.get("images"), RecordErrors(options))
    return ReadResult(samples, [path], [note], skipped)


def samples_from_instances(
    path: Path, raw: Any, images: Path | None, errors: RecordErrors
) -> tuple[list[Sample], str, list[str]]:
    """The samples of a COCO instances object read from ``path`` (named in every error)."""
    if not isinstance(raw, dict) or not {"images", "annotations", "categories"} <= raw.keys():
        raise DataError(path, "expected COCO instances: an object with 'images', 'annotations', 'categories'")
    vocabulary, category_ids = _categories(path, raw["categories"])
    known = set(category_ids)
    image_info: dict[int, tuple[str, int, int]] = {}
    for k, img in enumerate(raw["images"]):
        where = f"images[{k}]"
        if not isinstance(img, dict):
            raise DataError(path, "an image record must be an object", where)
        image_id = typed_field(path, img, "id", int, where)
        where = f"images[{k}] (id {image_id})"
        image_info[image_id] = (
            typed_field(path, img, "file_name", str, where),
            typed_field(path, img, "height", int, where),
            typed_field(path, img, "width", int, where),
        )
    crowds: dict[int, list[CocoBox]] = {}
    regions: list[tuple[str, dict[str, Any], CocoBox, int]] = []
    for k, ann in enumerate(raw["annotations"]):
        with errors.guard():
            where = f"annotations[{k}]"
            if not isinstance(ann, dict):
                raise DataError(path, "an annotation must be an object", where)
            ann_id = typed_field(path, ann, "id", int, where)
            where = f"annotations[{k}] (id {ann_id})"
            image_id = typed_field(path, ann, "image_id", int, where)
            if image_id not in image_info:
                raise DataError(path, f"unknown image_id {image_id}", where)
            category_id = typed_field(path, ann, "category_id", int, where)
            if category_id not in known:
                raise DataError(path, f"category_id {category_id} is not in 'categories'", where)
            box = CocoBox(
                ann_id=ann_id,
                category_id=category_id,
                bbox=_bbox(path, ann, where),
                area=float(typed_field(path, ann, "area", (int, float), where)),
            )
            if ann.get("iscrowd", 0):
                crowds.setdefault(image_id, []).append(box)
            else:
                regions.append((where, ann, box, image_id))
    samples: list[Sample] = []
    for where, ann, box, image_id in regions:
        file_name, height, width = image_info[image_id]
        with errors.guard():
            region = segmentation_region(path, ann, height, width, where)
            info = RegionClass.model_construct(
                image_id=image_id,
                box=box,
                crowd=crowds.get(image_id, []),
                vocabulary=vocabulary,
                category_ids=category_ids,
            )
            samples.append(
                Sample(
                    id=f"{image_id}/{box.ann_id}",
                    image=file_name,
                    regions=[region],
                    target=vocabulary[category_ids.index(box.category_id)],
                    image_path=coco_image_path(images, file_name),
                    meta=info,
                )
            )
    n_crowd = sum(len(c) for c in crowds.values())
    n_images = len({s.info(RegionClass).image_id for s in samples})
    note = (
        f"{path.name}: {len(samples)} non-crowd regions of {n_images} "
        f"images, {len(vocabulary)} categories ({n_crowd} crowd annotations are ignore regions, not asked)"
    )
    return samples, note, errors.skipped


def _categories(path: Path, raw: Any) -> tuple[list[str], list[int]]:
    if not isinstance(raw, list) or not raw:
        raise DataError(path, "'categories' must be a non-empty list")
    names: list[str] = []
    ids: list[int] = []
    for k, cat in enumerate(raw):
        where = f"categories[{k}]"
        if not isinstance(cat, dict):
            raise DataError(path, "a category must be an object", where)
        cid = typed_field(path, cat, "id", int, where)
        name = typed_field(path, cat, "name", str, f"{where} (id {cid})")
        if name in names or cid in ids:
            raise DataError(path, f"category {name!r} (id {cid}) is listed twice", where)
        names.append(name)
        ids.append(cid)
    return names, ids


def _bbox(path: Path, ann: dict[str, Any], where: str) -> tuple[float, float, float, float]:
    box = typed_field(path, ann, "bbox", list, where)
    if len(box) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
        raise DataError(path, f"bbox must be 4 numbers [x, y, w, h], got {box!r}", where)
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        raise DataError(path, f"bbox {box!r} is empty (w and h must be > 0)", where)
    return (x, y, w, h)
