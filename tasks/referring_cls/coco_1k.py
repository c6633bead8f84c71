"""``evalkit data prepare lvis-1k|paco-1k SRC DEST``: the seeded 1,000-image subset of raw
LVIS v1 val / PACO-LVIS val, written in Osprey's ``*_val_1k_category.json`` layout.

``lvis_cls`` / ``paco_cls`` read the raw files too, drawing the same subset every time
(``random.Random(seed).sample`` over the sorted ids of the images with a usable annotation,
:func:`.osprey_json.coco_subset`); preparing it once gives a file of a few megabytes instead
of one of hundreds parsed at every run, and an image folder that works:

* ``DEST/<lvis|paco>_val_1k_seed<seed>.json`` — a list of ``{file_name, height, width,
  image_id, categories, annotations}``, ``categories[i]`` naming ``annotations[i]`` (the raw
  annotation, unchanged), images in ascending id order, annotations in id order: the
  samples and regions the raw file gives (ids become Osprey's ``<file stem>#<i>``). It is
  not Osprey's own subset, whose draw was not published (its counts: 1,000 images with
  4,004 LVIS / 4,263 PACO regions), so its numbers are not the paper's either.
* ``DEST/images/`` (with ``--coco COCO_ROOT``) — one link per subset image into
  ``COCO_ROOT/train2017`` or ``val2017``: LVIS val images come from both (their
  ``coco_url`` says which), which the card's one ``images`` folder cannot express.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from rich.console import Console

from evalkit.cards import CardCatalog
from evalkit.data.prepare import PrepareError, PrepareOptions, Preparer, PrepareResult
from evalkit.files import atomic_write_text
from evalkit.readers import load_json

from .osprey_json import coco_file_name, coco_subset

COCO_SPLITS = ("train2017", "val2017")


class Coco1kPreparer(Preparer):
    task: ClassVar[str]  # the card whose reader_args (sample size, seed, parts) it follows
    prefix: ClassVar[str]
    takes = frozenset({"seed", "coco"})

    def prepare(self, src: Path, dest: Path, options: PrepareOptions, console: Console) -> PrepareResult:
        reader_args = dict(CardCatalog().load(self.task).card.reader_args)
        if options.seed:
            reader_args["seed"] = options.seed
        seed = int(reader_args.get("seed", 0))
        raw = load_json(src)
        if not isinstance(raw, dict) or not {"images", "annotations", "categories"} <= raw.keys():
            raise PrepareError(f"{src}: expected a raw COCO-style file ({self.source})")
        subset = coco_subset(src, raw, reader_args)
        records: list[dict[str, Any]] = []
        for image_id in subset.chosen:
            img = subset.images[image_id]
            anns = subset.annotations[image_id]
            records.append(
                {
                    "file_name": PurePosixPath(coco_file_name(src, img)).name,
                    "height": img["height"],
                    "width": img["width"],
                    "image_id": image_id,
                    "categories": [subset.categories[a["category_id"]] for a in anns],
                    "annotations": anns,
                }
            )
        out = dest / f"{self.prefix}_val_1k_seed{seed}.json"
        atomic_write_text(out, json.dumps(records))
        n_regions = sum(len(r["annotations"]) for r in records)
        notes = [
            f"{len(records):,} of {subset.eligible:,} images (seed {seed}), {n_regions:,} regions; "
            "not Osprey's subset (see `evalkit data check`)"
        ]
        data = {"annotations": out}
        if options.coco is not None:
            data["images"] = link_images(subset, src, options.coco, dest / "images")
            notes.append(f"linked {len(records):,} images into {data['images']}")
        else:
            notes.append("images: pass one folder holding COCO train2017 + val2017 (or rerun with --coco)")
        return PrepareResult(written=[out], tasks=[self.task], data=data, notes=notes)


def link_images(subset: Any, src: Path, coco: Path, folder: Path) -> Path:
    """``folder/<name>`` -> ``coco/<train2017|val2017>/<name>`` for every image of the subset."""
    for split in COCO_SPLITS:
        if not (coco / split).is_dir():
            raise PrepareError(
                f"--coco {coco}: no {split}/ folder (a COCO 2017 root holds train2017/ and val2017/)"
            )
    folder.mkdir(parents=True, exist_ok=True)
    missing: list[str] = []
    for image_id in subset.chosen:
        img = subset.images[image_id]
        given = PurePosixPath(coco_file_name(src, img))
        hinted = PurePosixPath(str(img.get("coco_url", ""))).parent.name or given.parent.name
        splits = [hinted] if hinted in COCO_SPLITS else list(COCO_SPLITS)
        target = next((coco / s / given.name for s in splits if (coco / s / given.name).is_file()), None)
        if target is None:
            missing.append(given.name)
            continue
        link = folder / given.name
        if link.is_symlink() or link.exists():
            if link.resolve() == target.resolve():
                continue
            link.unlink()
        link.symlink_to(target.resolve())
    if missing:
        raise PrepareError(
            f"--coco {coco}: {len(missing)} subset images are in neither train2017/ nor val2017/ "
            f"(first: {missing[0]})"
        )
    return folder
