"""``evalkit data prepare lvis-1k lvis_v1_val.json DEST [--coco COCO_ROOT]`` (see :mod:`.coco_1k`)."""

from __future__ import annotations

from evalkit.data.prepare import register_preparer

from .coco_1k import Coco1kPreparer


@register_preparer
class Lvis1kPreparer(Coco1kPreparer):
    name = "lvis-1k"
    summary = "raw LVIS v1 val -> lvis_cls's seeded 1,000-image subset in Osprey's layout"
    source = "lvis_v1_val.json (https://www.lvisdataset.org/dataset: lvis_v1_val.json.zip)"
    task = "lvis_cls"
    prefix = "lvis"
