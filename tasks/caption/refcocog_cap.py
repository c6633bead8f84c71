"""RefCOCOg region captioning: one sample per region, the references are its expressions.

Three layouts, chosen by the card's data keys (``refcocog_cap``: ``annotations``;
``refcocog_cap_refer``: ``refs`` + ``instances``) and by what the file holds:

* **Osprey** (``annotations`` = ``finetune_refcocog_val_with_mask.json``, the default): an
  MDETR-style COCO file whose ``images`` are (image, expression) records with a ``caption``
  and whose ``annotations`` carry the region's ``segmentation``. One sample per annotation:
  id = the annotation ``id`` as a string, target = its image record's ``caption`` (one
  reference), exactly what Osprey's ``refcocog_eval.py`` writes as ground truth.
* **refer toolkit** (``refs`` = ``refs(umd).p`` and ``instances`` = ``instances.json``): the
  refs of ``split`` (default ``val``),
  id = the ref's ``ann_id`` as a string, references = every expression of the region
  (``sentence_field``: ``sent``, the toolkit's tokenised text, or ``raw``), region = the COCO
  instance's segmentation.
* **COCO-caption dict** (``annotations`` holding ``{"1": [{"image_id", "id", "caption": [...]}]}``,
  e.g. SPHINX-V's ``RefCOCOg_brief_caption_gt.json``): references only — id = the key,
  target = every caption listed. Such samples carry no region, so they can be scored, not run.

Image files: COCO file names are tried as written under ``images`` and then, like Osprey's
script, by their last ``_`` field (``COCO_train2014_000000123.jpg`` -> ``000000123.jpg``),
so both a ``train2014`` folder and a flat "all COCO images" folder work.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalkit.errors import DataError
from evalkit.readers import (
    ReadResult,
    coco_image_path,
    load_json,
    register_reader,
    require_path,
    segmentation_region,
)
from evalkit.records import Sample, SampleInfo


class CaptionInfo(SampleInfo):
    image_id: int | str | None = None  # the COCO image id (shown in reports)
    category: str | None = None  # the region's category, where the data has one (shapes)


def references_of(target: Any) -> list[str]:
    """A caption sample's references: its target as a list of strings."""
    return [target] if isinstance(target, str) else [str(t) for t in target]


def _one_or_list(captions: list[str]) -> str | list[str]:
    return captions[0] if len(captions) == 1 else captions


@register_reader("refcocog_cap")
def read_refcocog(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    images = data.get("images")
    if "refs" in data or "instances" in data:
        refs = require_path(data, "refs")
        instances = require_path(data, "instances")
        return read_refer(refs, instances, images, options)
    path = require_path(data, "annotations")
    raw = load_json(path)
    if isinstance(raw, dict) and {"images", "annotations"} <= raw.keys():
        samples = read_osprey_captions(path, raw, images)
        return ReadResult(
            samples,
            [path],
            [
                f"{path.name}: Osprey layout, {len(samples)} regions, "
                "one reference each (the image record's caption)"
            ],
        )
    if isinstance(raw, dict) and raw and all(isinstance(v, list) for v in raw.values()):
        samples = read_caption_dict(path, raw)
        return ReadResult(
            samples,
            [path],
            [
                f"{path.name}: COCO-caption dict, {len(samples)} "
                "items, references only (no regions: score, not run)"
            ],
        )
    raise DataError(
        path,
        "expected Osprey's finetune_refcocog_val_with_mask.json (an object with 'images' and "
        "'annotations') or a COCO-caption dict ({id: [{caption: ...}]}); for the refer "
        "toolkit layout pass --data refs=... --data instances=...",
    )


def read_osprey_captions(path: Path, raw: dict[str, Any], images: Path | None) -> list[Sample]:
    records: dict[Any, dict[str, Any]] = {}
    for k, img in enumerate(raw["images"]):
        where = f"images[{k}]"
        if not isinstance(img, dict) or not {"id", "file_name", "height", "width", "caption"} <= img.keys():
            raise DataError(path, "image record needs id, file_name, height, width, caption", where)
        if not isinstance(img["caption"], str):
            raise DataError(path, "image record 'caption' is not a string", f"{where} (id {img['id']})")
        records[img["id"]] = img
    samples: list[Sample] = []
    for k, ann in enumerate(raw["annotations"]):
        where = f"annotations[{k}]"
        if not isinstance(ann, dict) or not {"id", "image_id", "segmentation"} <= ann.keys():
            raise DataError(path, "annotation needs id, image_id, segmentation", where)
        where = f"{where} (id {ann['id']})"
        img = records.get(ann["image_id"])
        if img is None:
            raise DataError(path, f"unknown image_id {ann['image_id']}", where)
        region = segmentation_region(path, ann, int(img["height"]), int(img["width"]), where)
        samples.append(
            Sample(
                id=str(ann["id"]),
                image=img["file_name"],
                regions=[region],
                target=img["caption"],
                image_path=coco_image_path(images, img["file_name"], where),
                meta=CaptionInfo(image_id=img.get("original_img_id", img["id"])),
            )
        )
    return samples


def read_caption_dict(path: Path, raw: dict[str, Any]) -> list[Sample]:
    samples: list[Sample] = []
    for key, entries in raw.items():
        captions: list[str] = []
        for k, entry in enumerate(entries):
            where = f"{key!r}[{k}]"
            if not isinstance(entry, dict) or "caption" not in entry:
                raise DataError(path, "entry has no 'caption'", where)
            value = entry["caption"]
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise DataError(path, "'caption' must be a string or a list of strings", where)
            captions.extend(values)
        if not captions:
            raise DataError(path, "no caption", repr(key))
        samples.append(Sample(id=str(key), image=None, regions=[], target=_one_or_list(captions)))
    return samples


class UnsafePickle(pickle.UnpicklingError):
    """The pickle asks for a Python object by name: loading it could run code."""


class PlainDataUnpickler(pickle.Unpickler):
    """The refer toolkit's refs(*).p hold only lists, dicts, strings and numbers, which a
    pickle builds with its own opcodes. Anything it would look up by name (a class, a
    function: what a ``__reduce__`` payload calls) is refused before it is imported, so a
    tampered file runs nothing. Persistent ids are refused too (the base class does)."""

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafePickle(f"{module}.{name}")


def _unpickle(path: Path, blob: bytes) -> Any:
    try:
        try:
            return PlainDataUnpickler(io.BytesIO(blob)).load()
        except UnicodeDecodeError:  # a Python 2 pickle with non-ASCII byte strings
            return PlainDataUnpickler(io.BytesIO(blob), encoding="latin1").load()
    except UnsafePickle as exc:
        raise DataError(
            path,
            f"refused, not plain data: this pickle would import {exc} and call it (refer-toolkit "
            "refs hold only lists, dicts, strings and numbers); nothing was run",
        ) from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise DataError(path, f"not a refer-toolkit refs pickle: {exc}") from exc


def load_refs(path: Path) -> list[dict[str, Any]]:
    """refs(*).p, or the same list as JSON (``evalkit data prepare refcocog`` writes it)."""
    if not path.is_file():
        raise DataError(path, "file not found")
    blob = path.read_bytes()
    refs = load_json(path) if blob.lstrip()[:1] == b"[" else _unpickle(path, blob)
    if not isinstance(refs, list):
        raise DataError(path, f"expected a list of refs, found {type(refs).__name__}")
    return refs


def read_refer(
    refs_path: Path, instances_path: Path, images: Path | None, options: Mapping[str, Any]
) -> ReadResult:
    split = str(options.get("split", "val"))
    field = str(options.get("sentence_field", "sent"))
    refs = load_refs(refs_path)
    instances = load_json(instances_path)
    if not isinstance(instances, dict) or not {"images", "annotations"} <= instances.keys():
        raise DataError(instances_path, "expected COCO-style instances with 'images' and 'annotations'")
    image_info = {img["id"]: img for img in instances["images"]}
    anns = {ann["id"]: ann for ann in instances["annotations"]}
    by_ann: dict[int, list[str]] = {}
    for k, ref in enumerate(refs):
        where = f"ref #{k}"
        if not isinstance(ref, dict) or not {"split", "ann_id", "sentences"} <= ref.keys():
            raise DataError(refs_path, "ref needs split, ann_id, sentences", where)
        if ref["split"] != split:
            continue
        sentences = []
        for s in ref["sentences"]:
            if not isinstance(s, dict) or not isinstance(s.get(field), str):
                raise DataError(
                    refs_path,
                    f"sentence without a string {field!r}",
                    f"{where} (ref_id {ref.get('ref_id')})",
                )
            sentences.append(s[field])
        if not sentences:
            raise DataError(refs_path, "ref has no sentences", f"{where} (ref_id {ref.get('ref_id')})")
        by_ann.setdefault(ref["ann_id"], []).extend(sentences)
    if not by_ann:
        raise DataError(refs_path, f"no ref of split {split!r}")
    samples: list[Sample] = []
    for ann_id in by_ann:
        ann = anns.get(ann_id)
        if ann is None:
            raise DataError(instances_path, f"annotation {ann_id} of a {split} ref is missing")
        where = f"annotation {ann_id}"
        img = image_info.get(ann["image_id"])
        if img is None:
            raise DataError(instances_path, f"unknown image_id {ann['image_id']}", where)
        region = segmentation_region(instances_path, ann, int(img["height"]), int(img["width"]), where)
        samples.append(
            Sample(
                id=str(ann_id),
                image=img["file_name"],
                regions=[region],
                target=_one_or_list(by_ann[ann_id]),
                image_path=coco_image_path(images, img["file_name"], where),
                meta=CaptionInfo(image_id=img["id"]),
            )
        )
    n_refs = sum(len(v) for v in by_ann.values())
    note = (
        f"{refs_path.name} + {instances_path.name}: refer toolkit, split {split}, "
        f"{len(samples)} regions, {n_refs} expressions ({field!r}) as references"
    )
    return ReadResult(samples, [refs_path, instances_path], [note])
