"""``evalkit data prepare paco-1k paco_lvis_v1_val.json DEST [--coco COCO_ROOT]`` (see :mod:`.coco_1k`)."""

from __future__ import annotations

from evalkit.data.prepare import register_preparer

from .coco_1k import Coco1kPreparer


@register_preparer
class Paco1kPreparer(Coco1kPreparer):
    name = "paco-1k"
    summary = "raw PACO-LVIS val -> paco_cls's seeded 1,000-image subset (parts) in Osprey's layout"
    source = "paco_lvis_v1_val.json (https://github.com/facebookresearch/paco#dataset-setup)"
    task = "paco_cls"
    prefix = "paco"
