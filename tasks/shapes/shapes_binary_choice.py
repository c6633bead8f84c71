"""``shapes_binary_choice``: the shapes benchmark as Ferret's LVIS binary choice — every region of
``<split>/cls.json`` with a seeded negative category, point, box and free-form shape, built by
:func:`..sphinx_v.ferret_lvis_build.build_ferret_records` (its seeded defaults) from the regions
written as an LVIS-style dict (names as phrases: ``red circle``, ``house roof``), and scored by
``binary_choice``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalkit.readers import ReadResult, RecordErrors, load_json, register_reader

from ..referring_cls.osprey_json import read_osprey_subset
from ..sphinx_v.ferret_lvis import read_ferret_records
from ..sphinx_v.ferret_lvis_build import build_ferret_records
from .scenes import VERSION, all_categories, category_phrase, split_files


@register_reader("shapes_binary_choice")
def read_shapes_binary_choice(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    split, annotations, images = split_files(data, "annotations", options)
    errors = RecordErrors(options)
    regions = read_osprey_subset(annotations, load_json(annotations), images, errors)
    names = all_categories()
    # offered as the phrases the model names regions by (red circle, house roof)
    categories = [{"id": k + 1, "name": category_phrase(n), "synonyms": []} for k, n in enumerate(names)]
    by_image: dict[str, int] = {}
    lvis_images, lvis_annotations = [], []
    for k, s in enumerate(regions):
        (region,) = s.regions
        image = str(s.image)
        if image not in by_image:
            by_image[image] = len(by_image) + 1
            lvis_images.append(
                {"id": by_image[image], "file_name": image, "width": region.width, "height": region.height}
            )
        x1, y1, x2, y2 = region.box_xyxy()
        lvis_annotations.append(
            {
                "id": k + 1,
                "image_id": by_image[image],
                "category_id": names.index(str(s.target)) + 1,
                "segmentation": region.rle,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
            }
        )
    raw = {"images": lvis_images, "annotations": lvis_annotations, "categories": categories}
    records, _ = build_ferret_records(raw, annotations, sample_objects=len(lvis_annotations))
    samples = read_ferret_records(
        annotations, [(f"region {r['id']}", r) for r in records], images, True, errors
    )
    note = f"shapes v{VERSION} {split}: {len(samples)} regions, each with a seeded negative category"
    return ReadResult(samples, [annotations], [note], errors.skipped)
