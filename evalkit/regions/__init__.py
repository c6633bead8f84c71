"""Regions: the visual prompts a region-level VLM is asked about.

* :mod:`evalkit.regions.region`  — the :class:`Region` value (mask / box / points / scribble),
  its JSON form (hashed into store keys: it must not change) and ``Region.convert``.
* :mod:`evalkit.regions.convert` — pure, seeded conversions between region kinds, each with
  the reference it follows, plus :class:`Conversion`, the record of what was done.
* :mod:`evalkit.regions.coords`  — the coordinate conventions models are given regions in
  (SPHINX-V padded square, Ferret/Shikra ints in [0,1000), GLaMM [0,1], Qwen2-VL).

Every name importable from ``evalkit.regions`` before it became a package still is.
"""

from evalkit.regions.region import (
    REGION_KINDS,
    Region,
    RegionError,
    RegionKind,
    _check_points,
    _check_size,
    _points_to_mask,
    _rle_to_json,
    box_to_mask,
    mask_to_box,
    polygons_to_mask,
)

__all__ = [
    "REGION_KINDS",
    "Region",
    "RegionError",
    "RegionKind",
    "_check_points",
    "_check_size",
    "_points_to_mask",
    "_rle_to_json",
    "box_to_mask",
    "mask_to_box",
    "polygons_to_mask",
]
