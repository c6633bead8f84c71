"""``shapes_rec_candidates``: which of an image's candidate boxes fits an expression
(``a red circle``), scored as ``refcocog_rec_candidates``, on the refer-toolkit refs,
COCO instances and proposals :mod:`.coco_view` builds from the scenes (generated on first
use unless given)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalkit.readers import ReadResult, register_reader

from ..closed_set.refer_candidates import read_refer_candidates
from .coco_view import ensure_coco_view
from .scenes import VERSION, ensure_shapes


@register_reader("shapes_rec_candidates")
def read_shapes_rec_candidates(data: Mapping[str, Path | None], options: Mapping[str, Any]) -> ReadResult:
    split = str(options.get("split", "val"))
    filled = dict(data)
    if any(filled.get(k) is None for k in ("refs", "instances", "proposals")):
        view = ensure_coco_view(split)
        defaults = {"refs": view.refs, "instances": view.instances, "proposals": view.proposals}
        filled.update({k: filled.get(k) or path for k, path in defaults.items()})
        if filled.get("images") is None:
            filled["images"] = ensure_shapes().images(split)
    result = read_refer_candidates(filled, options)
    result.notes.insert(0, f"shapes v{VERSION} {split}")
    return result
