"""Visual Genome region descriptions (``vg_cap``): one sample per region of the test images.

* ``regions``: ``region_descriptions.json`` — ``[{"id": image_id, "regions": [{"region_id",
  "image_id", "x", "y", "width", "height", "phrase"}]}]``;
* ``image_data``: ``image_data.json`` — ``[{"image_id" (or "id"), "width", "height", "url"}]``;
* ``test_ids``: the test image ids (the densecap split GRiT / GPT4RoI evaluate on), as a JSON
  list, densecap's ``densecap_splits.json`` (``{"test": [...]}``), a COCO-style file with
  ``images`` (ids taken from it), or a text file with one id per line.

Region = the box ``[x, y, x + width, y + height]`` clipped to the image (boxes reaching past
the border are common in VG); boxes empty after clipping are skipped and counted.
Id: ``<image_id>/<region_id>``; target = the region's phrase (one reference).
Images: ``images/<VG_100K or VG_100K_2>/<id>.jpg`` as the url says, else ``images/<id>.jpg``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from evalkit.errors import DataError
from evalkit.images import find_image
from evalkit.readers import ReadResult, load_json, register_reader, require_path
from evalkit.records import Sample
from evalkit.regions import Region


def read_test_ids(path: Path, key: str = "test") -> list[int]:
    if path.suffix == ".txt":
        ids = []
        for lineno, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    ids.append(int(line.strip()))
                except ValueError as exc:
                    raise DataError(path, f"not an image id: {line.strip()!r}", f"line {lineno}") from exc
        return ids
    raw = load_json(path)
    if isinstance(raw, dict) and key in raw:
        raw = raw[key]
    elif isinstance(raw, dict) and "images" in raw:
        raw = [img.get("id") for img in raw["images"] if isinstance(img, dict)]
    if not isinstance(raw, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
        raise DataError(path, f"expected a list of image ids, {{{key!r}: [...]}}, or COCO-style 'images'")
    return raw


def vg_image_path(images: Path | None, image_id: int, url: str | None) -> str | None:
    if images is None:
        return None
    name = f"{image_id}.jpg"
    where = f"image {image_id}"
    if url:
        parts = PurePosixPath(url).parts
        if len(parts) >= 2:
            # <VG_100K or VG_100K_2>/<id>.jpg as the url says, else flat <id>.jpg
            return str(find_image(images, [f"{parts[-2]}/{parts[-1]}", parts[-1]], where))
    return str(find_image(images, [name], where))


@register_reader("vg_regions")
def read_vg(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    regions_path = require_path(data, "regions")
    image_data_path = require_path(data, "image_data")
    ids_path = require_path(data, "test_ids")
    images = data.get("images")
    test_ids = read_test_ids(ids_path, str(options.get("split_key", "test")))
    wanted = set(test_ids)

    info: dict[int, dict[str, Any]] = {}
    image_data = load_json(image_data_path)
    if not isinstance(image_data, list):
        raise DataError(image_data_path, "expected a list of image records")
    for k, img in enumerate(image_data):
        image_id = img.get("image_id", img.get("id")) if isinstance(img, dict) else None
        if not isinstance(image_id, int):
            raise DataError(image_data_path, "image record has no integer image_id / id", f"#{k}")
        if image_id in wanted:
            info[image_id] = img

    described = load_json(regions_path)
    if not isinstance(described, list):
        raise DataError(regions_path, "expected a list of {id, regions} records")
    by_image: dict[int, list[dict[str, Any]]] = {}
    for k, record in enumerate(described):
        if not isinstance(record, dict) or "regions" not in record:
            raise DataError(regions_path, "record has no 'regions'", f"#{k}")
        image_id = record.get("id", record.get("image_id"))
        if image_id in wanted:
            by_image[int(image_id)] = record["regions"]

    samples: list[Sample] = []
    clipped = skipped = 0
    missing = [i for i in test_ids if i not in info or i not in by_image]
    for image_id in test_ids:
        if image_id not in info or image_id not in by_image:
            continue
        img = info[image_id]
        width, height = int(img["width"]), int(img["height"])
        image_file = f"{image_id}.jpg"
        image_path = vg_image_path(images, image_id, img.get("url"))
        for j, reg in enumerate(by_image[image_id]):
            where = f"image {image_id} region #{j}"
            if (
                not isinstance(reg, dict)
                or not {"region_id", "x", "y", "width", "height", "phrase"} <= reg.keys()
            ):
                raise DataError(regions_path, "region needs region_id, x, y, width, height, phrase", where)
            x1, y1 = float(reg["x"]), float(reg["y"])
            x2, y2 = x1 + float(reg["width"]), y1 + float(reg["height"])
            cx1, cy1 = max(0.0, x1), max(0.0, y1)
            cx2, cy2 = min(float(width), x2), min(float(height), y2)
            if not (cx2 > cx1 and cy2 > cy1):
                skipped += 1
                continue
            if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
                clipped += 1
            samples.append(
                Sample(
                    id=f"{image_id}/{reg['region_id']}",
                    image=image_file,
                    regions=[Region.from_box((cx1, cy1, cx2, cy2), height, width)],
                    target=str(reg["phrase"]),
                    image_path=image_path,
                )
            )
    notes = [
        f"Visual Genome: {len(test_ids)} test image ids, {len(samples)} regions; "
        f"{clipped} boxes clipped to the image, {skipped} empty boxes skipped"
    ]
    if missing:
        notes.append(
            f"{len(missing)} test image id(s) have no image record or no regions, e.g. {missing[:5]}"
        )
    return ReadResult(samples, [regions_path, image_data_path, ids_path], notes)
