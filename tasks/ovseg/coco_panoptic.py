"""COCO-panoptic validation sets for open-vocabulary segmentation (Cityscapes, ADE20K-150, shapes).

Files, as the standard preparation scripts write them:

* ``panoptic_json`` — ``{images, annotations: [{image_id, file_name, segments_info}], categories}``;
  ``panoptic_root`` — one RGB PNG per annotation, segment id = R + 256 G + 256² B (``rgb2id``),
  0 = VOID. Cityscapes: cityscapesScripts ``createPanopticImgs``; ADE20K-150: Mask2Former's
  ``prepare_ade20k_pan_seg`` (string image ids).
* ``semantic_root`` — per-pixel class index, 255 = ignore: ADE
  ``annotations_detectron2/validation/<name>.png``; Cityscapes
  ``gtFine/val/<city>/<image id>_gtFine_labelTrainIds.png``.
* ``vocabulary`` — Osprey's ``*_with_prompt_eng.txt``: lines ``idx:syn1,syn2,...``; a first line
  ``0:invalid_class_id`` (ADE) shifts class indices by one.

Classes: the JSON categories sorted by id; class index = rank (ADE ids 0..149, Cityscapes label
ids 7..33 -> trainIds 0..18), thing / stuff from ``isthing``. The vocabulary must have one
line per class. Sample id: ``<image id>#<segment id>``, one per segment in ascending id order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from evalkit.errors import DataError
from evalkit.images import find_image
from evalkit.metrics.panoptic import Segment
from evalkit.readers import ReadResult, load_json, register_reader, require_path
from evalkit.records import Sample, SampleInfo
from evalkit.regions import Region

MAX_QUERIES = 300  # the reference's num_queries: ids beyond are never asked about
LAYOUTS = ("ade20k", "cityscapes", "flat")


@dataclass(frozen=True)
class Category:
    id: int
    name: str
    isthing: bool
    index: int  # contiguous class index (= semantic label value)


@dataclass
class PanopticAnnotation:
    image_id: Any  # as in the JSON (str for ADE / Cityscapes)
    file_name: str  # panoptic PNG, relative to panoptic_root
    segments: list[Segment]  # JSON order; areas from the JSON
    image: dict[str, Any]  # the JSON ``images`` entry

    @property
    def sorted_ids(self) -> np.ndarray:
        return np.array(sorted(s.id for s in self.segments), dtype=np.int64)


@dataclass
class PanopticSet:
    json_path: Path
    panoptic_root: Path
    layout: str
    categories: list[Category]  # sorted by id
    annotations: list[PanopticAnnotation]
    by_id: dict[int, Category] = field(default_factory=dict)
    json_order: list[Category] = field(default_factory=list)  # the JSON's category order

    @property
    def isthing(self) -> dict[int, bool]:
        """Category id -> thing, in the JSON's category order (panopticapi sums in that order)."""
        return {c.id: c.isthing for c in self.json_order}


def load_panoptic_set(json_path: Path, panoptic_root: Path, layout: str) -> PanopticSet:
    """Parsed once per file version: the reader and the scorer both need it."""
    stat = json_path.stat() if json_path.exists() else None
    key = (stat.st_mtime_ns, stat.st_size) if stat else (0, 0)
    return _load_panoptic_set(json_path, panoptic_root, layout, key)


@lru_cache(maxsize=4)
def _load_panoptic_set(
    json_path: Path, panoptic_root: Path, layout: str, _version: tuple[int, int]
) -> PanopticSet:
    if layout not in LAYOUTS:
        raise DataError(json_path, f"unknown layout {layout!r} (known: {', '.join(LAYOUTS)})")
    raw = load_json(json_path)
    if not isinstance(raw, dict) or not {"annotations", "categories"} <= raw.keys():
        raise DataError(json_path, "expected a COCO panoptic object with 'annotations' and 'categories'")
    json_order: list[Category] = []
    for k, cat in enumerate(raw["categories"]):
        if not isinstance(cat, dict) or not {"id", "name"} <= cat.keys():
            raise DataError(json_path, "a category needs 'id' and 'name'", f"categories[{k}]")
        json_order.append(Category(int(cat["id"]), str(cat["name"]), cat.get("isthing", 0) == 1, -1))
    ranked = sorted(json_order, key=lambda c: c.id)
    index = {c.id: i for i, c in enumerate(ranked)}
    if len(index) != len(ranked):
        raise DataError(json_path, "duplicate category ids")
    categories = [Category(c.id, c.name, c.isthing, index[c.id]) for c in ranked]
    by_id = {c.id: c for c in categories}
    images = {img.get("id"): img for img in raw.get("images", []) if isinstance(img, dict)}
    annotations: list[PanopticAnnotation] = []
    seen: set[Any] = set()
    for k, ann in enumerate(raw["annotations"]):
        where = f"annotations[{k}]"
        if not isinstance(ann, dict) or not {"image_id", "file_name", "segments_info"} <= ann.keys():
            raise DataError(json_path, "an annotation needs image_id, file_name, segments_info", where)
        image_id = ann["image_id"]
        where = f"annotations[{k}] (image {image_id})"
        if image_id in seen:
            raise DataError(json_path, "image annotated twice", where)
        seen.add(image_id)
        segments = []
        for seg in ann["segments_info"]:
            if not isinstance(seg, dict) or not {"id", "category_id"} <= seg.keys():
                raise DataError(json_path, "a segment needs 'id' and 'category_id'", where)
            if seg["category_id"] not in by_id:
                raise DataError(
                    json_path,
                    f"segment {seg['id']} has unknown category {seg['category_id']}",
                    where,
                )
            if int(seg["id"]) == 0:
                raise DataError(json_path, "segment id 0 is VOID and cannot be a segment", where)
            area = seg.get("area")
            if area is None:
                raise DataError(json_path, f"segment {seg['id']} has no 'area'", where)
            segments.append(
                Segment(int(seg["id"]), int(seg["category_id"]), int(area), seg.get("iscrowd", 0) == 1)
            )
        if len({s.id for s in segments}) != len(segments):
            raise DataError(json_path, "duplicate segment ids", where)
        image = images.get(image_id, {"id": image_id})
        annotations.append(PanopticAnnotation(image_id, str(ann["file_name"]), segments, image))
    return PanopticSet(json_path, panoptic_root, layout, categories, annotations, by_id, json_order)


# ---------------------------------------------------------------------- file layout
def _city(image_id: Any) -> str:
    return str(image_id).split("_")[0]


def image_file(layout: str, ann: PanopticAnnotation) -> str:
    """The RGB image, relative to the ``images`` folder."""
    if layout == "cityscapes":  # leftImg8bit/val/<city>/<image id>_leftImg8bit.png
        return f"{_city(ann.image_id)}/{ann.image_id}_leftImg8bit.png"
    if "file_name" in ann.image:
        return str(ann.image["file_name"])
    return Path(ann.file_name).stem + ".jpg"  # what the ADE registration assumes


def semantic_file(layout: str, semantic_root: Path, ann: PanopticAnnotation) -> Path:
    if layout == "cityscapes":
        return semantic_root / _city(ann.image_id) / f"{ann.image_id}_gtFine_labelTrainIds.png"
    return semantic_root / ann.file_name


# ---------------------------------------------------------------------- pixels
def read_id_map(path: Path, record: str) -> np.ndarray:
    """``rgb2id`` of a panoptic PNG as uint32."""
    if not path.exists():
        raise DataError(path, "panoptic PNG not found", record)
    with Image.open(path) as im:
        rgb = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    ids = rgb[..., 0].astype(np.uint32)
    ids |= rgb[..., 1].astype(np.uint32) << 8
    ids |= rgb[..., 2].astype(np.uint32) << 16
    return ids


_ID_LUT: np.ndarray | None = None  # 2^24 entries: segment id -> position, -1 elsewhere


def _index_map(id_map: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Position of each pixel's id in ``ids``; ``len(ids)`` for VOID, -1 for unknown ids.

    One gather through a reusable 2^24-entry table (32 MB, the ids are 24-bit): several
    times faster than a binary search per pixel, and the table is reset after each image.
    """
    global _ID_LUT
    if _ID_LUT is None:
        _ID_LUT = np.full(1 << 24, -1, dtype=np.int16)
    if len(ids) >= np.iinfo(np.int16).max:
        pos = np.searchsorted(ids, id_map)  # more segments than the table's type holds
        pos_c = np.minimum(pos, len(ids) - 1)
        out = np.where(ids[pos_c] == id_map, pos_c, -1)
        return np.where(id_map == 0, len(ids), out)
    lut = _ID_LUT
    lut[ids] = np.arange(len(ids), dtype=np.int16)
    lut[0] = len(ids)
    try:
        return lut[id_map]
    finally:
        lut[ids] = -1
        lut[0] = -1


@dataclass
class SegmentMap:
    ids: np.ndarray  # (S,) JSON segment ids that have pixels, ascending
    counts: np.ndarray  # (S,) pixels of each
    index: np.ndarray  # (H, W) int: position in ``ids``; S for VOID pixels
    n_queries: int  # the first n_queries ids are the reference's queries
    has_void: bool
    # JSON segments with no pixel in the PNG. The reference's queries are the PNG's ids
    # (np.unique of the PNG), so these are never asked about; panopticapi counts each
    # (non-crowd) as a false negative.
    absent: tuple[int, ...] = ()


def read_segment_map(pset: PanopticSet, ann: PanopticAnnotation) -> SegmentMap:
    """The annotation's PNG, checked against its JSON segments and image size."""
    path = pset.panoptic_root / ann.file_name
    record = f"image {ann.image_id}"
    id_map = read_id_map(path, record)
    height, width = ann.image.get("height"), ann.image.get("width")
    if height is not None and width is not None and id_map.shape != (int(height), int(width)):
        raise DataError(
            path,
            f"PNG is {id_map.shape[1]}x{id_map.shape[0]} but {pset.json_path.name} says {width}x{height}",
            record,
        )
    ids = ann.sorted_ids
    index = _index_map(id_map, ids)
    unknown = index < 0
    if unknown.any():
        missing = sorted({int(v) for v in np.unique(id_map[unknown])[:10]})
        raise DataError(
            path, f"segment ids {missing} are in the PNG but not in {pset.json_path.name}", record
        )
    counts = np.bincount(index.ravel(), minlength=len(ids) + 1)
    absent = tuple(int(i) for i, c in zip(ids.tolist(), counts[:-1].tolist(), strict=True) if c == 0)
    if absent:  # rare (ADE): index the present segments only, as the reference's queries are
        ids = ids[counts[:-1] > 0]
        index = _index_map(id_map, ids)
        counts = np.bincount(index.ravel(), minlength=len(ids) + 1)
    has_void = bool(counts[-1] > 0)
    # The reference enumerates np.unique of the PNG (VOID included) and stops at 300 entries.
    n_queries = min(len(ids), MAX_QUERIES - 1 if has_void else MAX_QUERIES)
    return SegmentMap(ids, counts[:-1], index, n_queries, has_void, absent)


def read_semantic(path: Path, shape: tuple[int, ...], record: str) -> np.ndarray:
    if not path.exists():
        raise DataError(path, "semantic PNG not found", record)
    with Image.open(path) as im:
        sem = np.asarray(im)
    if sem.ndim != 2:
        raise DataError(path, f"expected a one-channel label PNG, got shape {sem.shape}", record)
    if sem.shape != shape:
        raise DataError(
            path,
            f"semantic PNG is {sem.shape[1]}x{sem.shape[0]}, panoptic PNG {shape[1]}x{shape[0]}",
            record,
        )
    return sem


# ---------------------------------------------------------------------- vocabulary
@dataclass
class Vocabulary:
    path: Path
    synonyms: list[list[str]]  # per class index


def read_vocabulary(path: Path, num_classes: int) -> Vocabulary:
    """Osprey's prompt-engineered class names; split exactly like the reference."""
    if not path.exists():
        raise DataError(path, "vocabulary file not found")
    lines = path.read_text("utf-8").splitlines()
    entries: list[tuple[int, str, int]] = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split(":")
        if len(parts) != 2 or not parts[0].strip().isdigit():
            raise DataError(path, "expected 'index:name1,name2,...'", f"line {lineno}")
        entries.append((int(parts[0]), parts[1], lineno))
    offset = 1 if entries and entries[0][0] == 0 and entries[0][1] == "invalid_class_id" else 0
    classes = entries[offset:]
    synonyms: list[list[str]] = []
    for k, (idx, names, lineno) in enumerate(classes):
        if idx - offset != k:
            raise DataError(path, f"index {idx} out of order (expected {k + offset})", f"line {lineno}")
        synonyms.append(names.replace(", ", ",").split(","))
    if len(synonyms) != num_classes:
        raise DataError(path, f"{len(synonyms)} classes but the panoptic JSON has {num_classes} categories")
    return Vocabulary(path, synonyms)


# ---------------------------------------------------------------------- reader
DataDefaults = Callable[[Mapping[str, "Path | None"], Mapping[str, Any]], dict[str, "Path | None"]]
_DATA_DEFAULTS: dict[str, DataDefaults] = {}


def register_data_defaults(reader: str) -> Callable[[DataDefaults], DataDefaults]:
    """A generated dataset (shapes) fills the paths a card leaves empty, for reader and scorer."""

    def decorator(fn: DataDefaults) -> DataDefaults:
        _DATA_DEFAULTS[reader] = fn
        return fn

    return decorator


def complete_data(
    reader: str, data: Mapping[str, Path | None], options: Mapping[str, Any]
) -> dict[str, Path | None]:
    fill = _DATA_DEFAULTS.get(reader)
    return fill(data, options) if fill else dict(data)


def panoptic_inputs(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> PanopticSet:
    layout = str(options.get("layout", "flat"))
    return load_panoptic_set(require_path(data, "panoptic_json"), require_path(data, "panoptic_root"), layout)


def samples_from_set(
    pset: PanopticSet, images: Path | None, with_regions: bool, absent: list[str] | None = None
) -> list[Sample]:
    """One sample per segment with pixels (ascending id, at most 300 per image); a JSON
    segment without any pixel in its PNG is no sample (the reference never asks about it)
    and is listed in ``absent`` as ``<image id>#<segment id>``. Regions are built only when
    the images are known (``run``, ``samples``)."""
    samples: list[Sample] = []
    for ann in pset.annotations:
        by_seg = {s.id: s for s in ann.segments}
        image = image_file(pset.layout, ann)
        regions: dict[int, Region] = {}
        # The PNG is read even without regions to build: the queries are its segments.
        segmap = read_segment_map(pset, ann)
        ids = segmap.ids[:MAX_QUERIES].tolist()
        if with_regions:
            regions = {
                sid: Region.from_mask(np.asfortranarray(segmap.index == k).astype(np.uint8))
                for k, sid in enumerate(ids)
            }
        if absent is not None:
            absent += [f"{ann.image_id}#{sid}" for sid in segmap.absent]
        for sid in ids:
            category = pset.by_id[by_seg[sid].category_id]
            samples.append(
                Sample(
                    id=f"{ann.image_id}#{sid}",
                    image=image,
                    regions=[regions[sid]] if with_regions else [],
                    target=category.name,
                    image_path=str(find_image(images, [image], str(ann.image_id)))
                    if images is not None
                    else None,
                    meta=SegmentInfo(
                        image_id=ann.image_id,
                        segment_id=sid,
                        category_id=category.id,
                        isthing=category.isthing,
                        iscrowd=by_seg[sid].iscrowd,
                    ),
                )
            )
    return samples


class SegmentInfo(SampleInfo):
    """A panoptic segment's ids, as its PNG and JSON give them."""

    image_id: int | str
    segment_id: int
    category_id: int
    isthing: bool
    iscrowd: int


@register_reader("coco_panoptic")
def read_coco_panoptic(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    pset = panoptic_inputs(data, options)
    vocabulary = data.get("vocabulary")
    if vocabulary is not None and vocabulary.exists():
        read_vocabulary(vocabulary, len(pset.categories))  # fail early on a wrong file
    images = data.get("images")
    absent: list[str] = []
    samples = samples_from_set(pset, images, with_regions=images is not None, absent=absent)
    files = [pset.json_path] + [
        p for p in (vocabulary, data.get("instances_json")) if p is not None and p.exists()
    ]
    n_things = sum(c.isthing for c in pset.categories)
    note = (
        f"{pset.json_path.name}: {len(pset.annotations)} images, {len(samples)} segments, "
        f"{len(pset.categories)} classes ({n_things} things, "
        f"{len(pset.categories) - n_things} stuff)"
    )
    notes = [note]
    if absent:
        shown = ", ".join(absent[:10]) + (", ..." if len(absent) > 10 else "")
        notes.append(
            f"{len(absent)} JSON segment(s) have no pixel in their PNG: not asked about (the "
            f"reference's queries are the PNG's ids), counted as misses by PQ: {shown}"
        )
    return ReadResult(samples, files, notes)
