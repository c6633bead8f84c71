"""The region kind a task shows the model, whatever kind its data gives (issue: SPHINX-V
asks about points and boxes of LVIS masks; a card may say ``region_kind: points``).

A card (or one of its variants, or ``evalkit run --region-kind``) sets

    region_kind: box | points | scribble | mask   (``point`` is read as ``points``)
    region_method: tight_box | free_form | seeded | visual_centre | medial_axis | rectangle
    region_seed: 0

and every request's regions are converted with :func:`evalkit.regions.convert.convert_region`
before any adapter sees them. Seeded methods draw per region from a seed derived from the
card's seed, the request id and the region's index, so a region's point does not depend on
which other samples ran (``--limit``, shards, a resumed run). ``free_form`` follows the
reference instead: SPHINX-V's ``noise_augmentation`` from one ``RandomState(seed)`` stream over
the boxes in request-id order (PROTOCOLS_WAVE2.md §C). Points and boxes a data file gives are
used as given, never resampled.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from evalkit.records import Request
from evalkit.regions import Region
from evalkit.regions.convert import METHOD_NOTES, Conversion, convert_region, free_form_boxes
from evalkit.regions.region import RegionKind

KIND_ALIASES = {"point": "points"}
KINDS = ("mask", "box", "points", "scribble")
SEEDED = ("seeded", "medial_axis")


@dataclass(frozen=True)
class RegionShown:
    """What a task shows the model: a region kind, how it is made, from which seed."""

    kind: RegionKind
    method: str | None = None
    seed: int = 0

    @staticmethod
    def parse(kind: str, method: str | None = None, seed: int | None = None) -> RegionShown:
        """From card values (``point`` is ``points``); ValueError for an unknown kind."""
        name = KIND_ALIASES.get(kind, kind)
        if name not in KINDS:
            raise ValueError(f"region_kind {kind!r}: expected one of {', '.join(KINDS)} (or point)")
        if method is not None and method not in METHOD_NOTES:
            known = ", ".join(m for m in METHOD_NOTES if m != "as given")
            raise ValueError(f"region_method {method!r}: expected one of {known}")
        return RegionShown(name, method, 0 if seed is None else seed)  # type: ignore[arg-type]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "method": self.method, "seed": self.seed}


def region_seed(seed: int, request_id: str, index: int) -> int:
    """The seed of one region's draw: independent of which other regions are drawn."""
    digest = hashlib.sha256(f"{seed}|{request_id}|{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def show_regions(requests: Sequence[Request], shown: RegionShown) -> list[Request]:
    """``requests`` with their regions as ``shown`` says, each carrying what was done."""
    free = {}
    if shown.method == "free_form":
        boxes = {}
        for r in requests:
            for k, region in enumerate(r.regions):
                x1, y1, x2, y2 = region.box_xyxy()
                boxes[f"{r.id}\x00{k:04d}"] = (x1, y1, x2 - x1, y2 - y1)
        free = free_form_boxes(boxes, shown.seed)
    out: list[Request] = []
    for r in requests:
        regions: list[Region] = []
        done: list[Conversion] = []
        for k, region in enumerate(r.regions):
            if shown.method == "free_form":
                x, y, w, h = free[f"{r.id}\x00{k:04d}"]
                moved = _clipped_box(x, y, w, h, region)
                regions.append(moved)
                done.append(Conversion(region.kind, "box", "free_form", shown.seed))
                continue
            seed = (
                region_seed(shown.seed, r.id, k)
                if (shown.method or _default(region, shown)) in SEEDED
                else None
            )
            converted, conversion = convert_region(region, shown.kind, shown.method, seed)
            regions.append(converted)
            done.append(conversion)
        out.append(replace(r, regions=regions, conversions=tuple(done)))
    return out


def _default(region: Region, shown: RegionShown) -> str:
    """The method convert_region picks when the card names none."""
    if region.kind == shown.kind:
        return "as given"
    return {"box": "tight_box", "points": "seeded", "scribble": "medial_axis", "mask": "rectangle"}[
        shown.kind
    ]


def _clipped_box(x: float, y: float, w: float, h: float, like: Region) -> Region:
    """A perturbed xywh box as a region of ``like``'s image, clipped to the image (a box
    moved past an edge keeps the part inside; at least one pixel)."""
    x1 = min(max(x, 0.0), like.width - 1.0)
    y1 = min(max(y, 0.0), like.height - 1.0)
    x2 = min(max(x + w, x1 + 1.0), float(like.width))
    y2 = min(max(y + h, y1 + 1.0), float(like.height))
    return Region.from_box((x1, y1, x2, y2), like.height, like.width)
