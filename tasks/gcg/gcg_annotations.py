"""Grounded-captioning ground truth as GLaMM's GCG evaluator reads it (GranD-f val/test,
MGLMM's MGSC splits, the shapes GCG view): a COCO-caption file and a COCO-instances file.

* ``captions`` (``{val,test}_gcg_coco_caption_gt.json``, ``{root,subtree,all}_mgsc_caption_gt.json``):
  ``{"images": [{"id", "file_name", "height", "width", ["type"]}], "annotations":
  [{"image_id", "id", "caption", "labels": [phrase, ...]}]}``; image ids are strings
  (``sa_10010541``; MGSC ``<sam stem>_<k>``), ``type`` is MGSC's ``root`` / ``subtree:<label>``.
* ``masks`` (``..._mask_gt.json``): ``{"images", "annotations": [{"id", "image_id",
  "category_id", "segmentation" (RLE), "area", "iscrowd"}], "categories"}``, an image's masks
  in the order of its ``labels``.

One sample per image of the caption file, in its order (the evaluator iterates
``caption_gt["images"]``): id = the image id, target = its caption(s) (every caption of the
image is a reference, as ``COCOEvalCap`` takes them), ``meta`` = the labels of its first
caption annotation (``loadAnns(...)[0]["labels"]``) and its ground-truth masks in file order.
The masks' size is their RLE's (MGLMM's converter swaps ``height`` and ``width`` in the
image records; the evaluator never reads them for RLE masks).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from evalkit.errors import DataError
from evalkit.readers import ReadResult, RecordErrors, image_path, load_json, register_reader, require_path
from evalkit.records import Sample, SampleInfo
from evalkit.regions import Region, RegionError


class GtMask(BaseModel):
    """One ground-truth mask of the instances file."""

    model_config = ConfigDict(extra="forbid")
    id: int
    rle: dict[str, Any]  # compressed COCO RLE, counts a string
    category_id: int = 1
    iscrowd: bool = False


class GroundedCaptionInfo(SampleInfo):
    image_id: str
    height: int  # of the masks (their RLE size)
    width: int
    labels: list[str]  # the phrases of the ground-truth masks, index-aligned with ``masks``
    masks: list[GtMask]
    kind: str | None = None  # MGSC's image type: "root" or "subtree:<label>"


def _records(path: Path, raw: Any, key: str) -> list[Any]:
    if not isinstance(raw, dict) or not isinstance(raw.get(key), list):
        raise DataError(path, f"expected a COCO-style object with an {key!r} list")
    items: list[Any] = raw[key]
    return items


def _mask_of(path: Path, ann: dict[str, Any], size: tuple[int, int] | None, where: str) -> GtMask:
    seg = ann.get("segmentation")
    if isinstance(seg, dict) and isinstance(seg.get("counts"), (str, bytes)) and "size" in seg:
        h, w = (int(v) for v in seg["size"])
    elif size is not None:
        h, w = size
    else:
        raise DataError(path, "polygon or uncompressed segmentation of an image without a record", where)
    try:
        region = Region.from_segmentation(seg, h, w)
    except RegionError as exc:
        raise DataError(path, f"invalid segmentation: {exc}", where) from exc
    assert region.rle is not None
    if not isinstance(ann.get("id"), int) or isinstance(ann.get("id"), bool):
        raise DataError(path, "annotation 'id' must be an integer", where)
    return GtMask(
        id=ann["id"],
        rle=region.rle,
        category_id=int(ann.get("category_id", 1)),
        iscrowd=bool(ann.get("iscrowd", 0)),
    )


def read_grounded_captions(
    captions_path: Path, masks_path: Path, images: Path | None, options: Mapping[str, Any]
) -> ReadResult:
    """The samples of one split (see the module docstring)."""
    errors = RecordErrors(options)
    cap_raw = load_json(captions_path)
    mask_raw = load_json(masks_path)
    cap_images = _records(captions_path, cap_raw, "images")
    cap_anns = _records(captions_path, cap_raw, "annotations")
    mask_anns = _records(masks_path, mask_raw, "annotations")
    mask_sizes: dict[str, tuple[int, int]] = {}
    for img in mask_raw.get("images", []) if isinstance(mask_raw.get("images"), list) else []:
        if isinstance(img, dict) and {"id", "height", "width"} <= img.keys():
            mask_sizes[str(img["id"])] = (int(img["height"]), int(img["width"]))

    captions: dict[str, list[dict[str, Any]]] = {}
    for k, ann in enumerate(cap_anns):
        if not isinstance(ann, dict) or "image_id" not in ann or not isinstance(ann.get("caption"), str):
            raise DataError(
                captions_path, "caption annotation needs image_id and a string caption", f"annotations[{k}]"
            )
        captions.setdefault(str(ann["image_id"]), []).append(ann)
    wanted = {str(img.get("id")) for img in cap_images if isinstance(img, dict)}
    masks: dict[str, list[GtMask]] = {}
    for k, ann in enumerate(mask_anns):
        where = f"annotations[{k}]" + (f" (id {ann.get('id')})" if isinstance(ann, dict) else "")
        if not isinstance(ann, dict) or "image_id" not in ann:
            raise DataError(masks_path, "mask annotation needs image_id", where)
        image_id = str(ann["image_id"])
        if image_id not in wanted:
            # COCOeval would count it as a missed ground truth of an image nobody captions.
            raise DataError(
                masks_path, f"mask of image {image_id!r}, which the caption file does not list", where
            )
        masks.setdefault(image_id, []).append(_mask_of(masks_path, ann, mask_sizes.get(image_id), where))

    samples: list[Sample] = []
    for k, img in enumerate(cap_images):
        with errors.guard():
            where = f"images[{k}]"
            if not isinstance(img, dict) or "id" not in img:
                raise DataError(captions_path, "image record needs an id", where)
            image_id = str(img["id"])
            where = f"{where} (id {image_id})"
            anns = captions.get(image_id)
            if not anns:
                raise DataError(captions_path, "image has no caption annotation", where)
            labels = anns[0].get("labels")
            if not isinstance(labels, list) or not all(isinstance(v, str) for v in labels):
                raise DataError(captions_path, "caption annotation needs 'labels', a list of phrases", where)
            gt = masks.get(image_id, [])
            sizes = {tuple(m.rle["size"]) for m in gt}
            if len(sizes) > 1:
                raise DataError(
                    masks_path, f"image {image_id!r} has masks of different sizes {sorted(sizes)}"
                )
            if sizes:
                h, w = (int(v) for v in next(iter(sizes)))
            elif {"height", "width"} <= img.keys():
                h, w = int(img["height"]), int(img["width"])
            else:
                raise DataError(captions_path, "image without masks needs height and width", where)
            file_name = str(img.get("file_name") or f"{image_id}.jpg")
            refs = [str(a["caption"]) for a in anns]
            kind = img.get("type")
            samples.append(
                Sample(
                    id=image_id,
                    image=file_name,
                    regions=[],
                    target=refs[0] if len(refs) == 1 else refs,
                    image_path=image_path(images, file_name),
                    meta=GroundedCaptionInfo(
                        image_id=image_id,
                        height=h,
                        width=w,
                        labels=list(labels),
                        masks=gt,
                        kind=str(kind) if kind is not None else None,
                    ),
                )
            )
    n_masks = sum(len(v) for v in masks.values())
    note = f"{captions_path.name} + {masks_path.name}: {len(samples)} images, {n_masks} ground-truth masks"
    return ReadResult(samples, [captions_path, masks_path], [note], errors.skipped)


@register_reader("gcg_annotations")
def read_gcg(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    return read_grounded_captions(
        require_path(data, "captions"), require_path(data, "masks"), data.get("images"), options
    )
