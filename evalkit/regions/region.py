"""Regions: the visual prompts a region-level VLM is asked about.

A :class:`Region` is one of

* ``mask``     — a binary mask stored as COCO RLE (``{"size": [h, w], "counts": str}``),
* ``box``      — ``[x1, y1, x2, y2]`` in pixels of the original image,
* ``points``   — ``[[x, y], ...]`` clicks in pixels,
* ``scribble`` — ``[[x, y], ...]`` a polyline in pixels.

Regions are immutable and JSON-serialisable (:meth:`Region.to_json`), so they can be part of
the hashed request payload. Masks are decoded only when someone needs pixels: reading a
4,000-region annotation file must not decode 4,000 masks.

Conversions follow what the reference code does: polygons become masks through COCO
``frPyObjects`` + ``merge`` (what Osprey's ``annToMask`` does), masks become boxes by their
tight pixel extent, boxes become rectangle masks covering the pixels they contain.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pycocotools import mask as mask_utils

from evalkit.regions.rle import rle_problem

RegionKind = Literal["mask", "box", "points", "scribble"]
REGION_KINDS: tuple[RegionKind, ...] = ("mask", "box", "points", "scribble")


class RegionError(ValueError):
    """A region that cannot be what it claims to be (bad polygon, RLE of the wrong size...)."""


@dataclass(frozen=True)
class Region:
    kind: RegionKind
    height: int
    width: int
    rle: dict[str, Any] | None = None
    box: tuple[float, float, float, float] | None = None
    points: tuple[tuple[float, float], ...] | None = None
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False, hash=False)

    # ------------------------------------------------------------------ constructors
    @staticmethod
    def from_segmentation(segmentation: Any, height: int, width: int) -> Region:
        """COCO ``segmentation``: a list of polygons, an RLE dict, or an uncompressed RLE."""
        _check_size(height, width)
        if isinstance(segmentation, list):
            return Region.from_polygons(segmentation, height, width)
        if isinstance(segmentation, dict):
            return Region.from_rle(segmentation, height, width)
        raise RegionError(
            f"segmentation must be a list of polygons or an RLE dict, got {type(segmentation).__name__}"
        )

    @staticmethod
    def from_polygons(polygons: Sequence[Sequence[float]], height: int, width: int) -> Region:
        """Polygons rasterised as the reference does (pycocotools ``frPyObjects`` + ``merge``,
        Osprey's ``annToMask``), including what it does with degenerate ones
        (:func:`degenerate_polygons`: an odd count loses its last number, fewer than 3 points
        add no pixel). Refused, with a clear error, exactly where pycocotools fails too: an
        empty list, or a first polygon of fewer than 5 numbers (it takes 4 numbers for a box
        and then rejects the list). Coordinates must be finite and within one image size of
        the image: pycocotools walks every polygon edge pixel by pixel, so a NaN or a 1e12
        coordinate exhausts memory instead of failing."""
        _check_size(height, width)
        if len(polygons) == 0:
            raise RegionError("segmentation is an empty polygon list")
        for k, poly in enumerate(polygons):
            if not isinstance(poly, (list, tuple)) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in poly
            ):
                raise RegionError(f"polygon {k} is not a flat list of numbers")
            _check_polygon_coordinates(k, poly, height, width)
        if len(polygons[0]) < 5:
            raise RegionError(
                f"polygon 0 has {len(polygons[0])} coordinates; a polygon needs >= 3 (x, y) points "
                "(pycocotools, with which the reference rasterises, cannot read it either)"
            )
        xs = [float(v) for p in polygons for v in p[0 : len(p) - len(p) % 2 : 2]]
        ys = [float(v) for p in polygons for v in p[1::2]]
        if not xs or max(xs) <= 0 or max(ys) <= 0 or min(xs) >= width or min(ys) >= height:
            raise RegionError(f"polygon lies outside the {width}x{height} image")
        rles = mask_utils.frPyObjects([list(map(float, p)) for p in polygons], height, width)
        merged = mask_utils.merge(rles)
        return Region("mask", height, width, rle=_rle_to_json(merged))

    @staticmethod
    def from_rle(rle: dict[str, Any], height: int, width: int) -> Region:
        _check_size(height, width)
        if "size" not in rle or "counts" not in rle:
            raise RegionError("RLE needs 'size' and 'counts'")
        size = list(rle["size"])
        if size != [height, width]:
            raise RegionError(f"RLE size {size} does not match the image size [{height}, {width}]")
        counts = rle["counts"]
        if isinstance(counts, list):  # uncompressed RLE
            if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
                raise RegionError("uncompressed RLE counts must be non-negative integers")
            if sum(counts) != height * width:
                raise RegionError(f"uncompressed RLE covers {sum(counts)} pixels, image has {height * width}")
            compressed = mask_utils.frPyObjects(rle, height, width)
            return Region("mask", height, width, rle=_rle_to_json(compressed))
        if isinstance(counts, bytes):
            try:
                counts = counts.decode("ascii")
            except UnicodeDecodeError:
                raise RegionError("RLE counts are not a COCO RLE string (non-ASCII bytes)") from None
        if not isinstance(counts, str):
            raise RegionError(f"RLE counts must be a string or a list, got {type(counts).__name__}")
        # pycocotools decodes a string whose runs do not cover the size into uninitialised
        # memory without a word: every run is checked first.
        problem = rle_problem(counts, height * width, zero_runs=True)
        if problem is not None:
            raise RegionError(f"RLE counts are not a valid COCO RLE of a {width}x{height} mask ({problem})")
        return Region("mask", height, width, rle={"size": size, "counts": counts})

    @staticmethod
    def from_mask(mask: np.ndarray) -> Region:
        if mask.ndim != 2:
            raise RegionError(f"mask must be 2-D, got shape {mask.shape}")
        h, w = mask.shape
        encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return Region("mask", h, w, rle=_rle_to_json(encoded))

    @staticmethod
    def from_box(box: Sequence[float], height: int, width: int, fmt: str = "xyxy") -> Region:
        _check_size(height, width)
        if len(box) != 4:
            raise RegionError(f"a box has 4 numbers, got {len(box)}")
        _check_finite(box, "box")
        x1, y1, a, b = (float(v) for v in box)
        x2, y2 = (x1 + a, y1 + b) if fmt == "xywh" else (a, b)
        if not (x2 > x1 and y2 > y1):
            raise RegionError(f"box {list(box)} ({fmt}) is empty")
        if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            raise RegionError(f"box {list(box)} ({fmt}) lies outside the {width}x{height} image")
        return Region("box", height, width, box=(x1, y1, x2, y2))

    @staticmethod
    def from_points(points: Sequence[Sequence[float]], height: int, width: int) -> Region:
        return Region("points", height, width, points=_check_points(points, height, width, 1))

    @staticmethod
    def from_scribble(points: Sequence[Sequence[float]], height: int, width: int) -> Region:
        return Region("scribble", height, width, points=_check_points(points, height, width, 2))

    # ------------------------------------------------------------------ conversions
    def to_mask(self, cache: bool = True) -> np.ndarray:
        """Dense ``uint8`` mask of shape (height, width).

        ``cache=False`` decodes without keeping the mask on the region (a caller that only
        copies it need not hold a full-resolution array per region for the region's life).
        """
        cached = self._cache.get("mask")
        if cached is not None:
            return cached
        if self.kind == "mask":
            assert self.rle is not None
            mask = mask_utils.decode({"size": self.rle["size"], "counts": self.rle["counts"].encode()})
        elif self.kind == "box":
            mask = box_to_mask(self.box_xyxy(), self.height, self.width)
        else:
            mask = _points_to_mask(self)
        if cache:
            self._cache["mask"] = mask
        return mask

    def box_xyxy(self) -> tuple[float, float, float, float]:
        if self.kind == "box":
            assert self.box is not None
            return self.box
        if self.kind == "mask":
            return mask_to_box(self.to_mask())
        assert self.points is not None
        xs = [p[0] for p in self.points]
        ys = [p[1] for p in self.points]
        return (min(xs), min(ys), max(xs) + 1.0, max(ys) + 1.0)

    def area(self) -> int:
        if self.kind == "mask":
            assert self.rle is not None
            return int(mask_utils.area({"size": self.rle["size"], "counts": self.rle["counts"].encode()}))
        return int(self.to_mask().sum())

    def convert(self, kind: RegionKind) -> Region:
        """This region expressed as another kind (mask→box, box→mask, points/scribble→mask)."""
        if kind == self.kind:
            return self
        if kind == "mask":
            return Region.from_mask(self.to_mask())
        if kind == "box":
            return Region("box", self.height, self.width, box=self.box_xyxy())
        if kind == "points":
            # The centre of mass is the click a person would make on the region.
            ys, xs = np.nonzero(self.to_mask())
            if len(xs) == 0:
                raise RegionError("cannot place a point on an empty region")
            return Region("points", self.height, self.width, points=((float(xs.mean()), float(ys.mean())),))
        raise RegionError(f"cannot convert a {self.kind} region to a {kind}")

    # ------------------------------------------------------------------ serialisation
    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "height": self.height, "width": self.width}
        if self.rle is not None:
            out["rle"] = self.rle
        if self.box is not None:
            out["box"] = list(self.box)
        if self.points is not None:
            out["points"] = [list(p) for p in self.points]
        return out

    @staticmethod
    def from_json(obj: dict[str, Any]) -> Region:
        kind = obj["kind"]
        h, w = int(obj["height"]), int(obj["width"])
        if kind == "mask":
            return Region.from_rle(obj["rle"], h, w)
        if kind == "box":
            return Region.from_box(obj["box"], h, w)
        if kind == "points":
            return Region.from_points(obj["points"], h, w)
        if kind == "scribble":
            return Region.from_scribble(obj["points"], h, w)
        raise RegionError(f"unknown region kind {kind!r}")

    def digest_text(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------------- pure helpers
def mask_to_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Tight ``xyxy`` box of the nonzero pixels (x2/y2 exclusive, as pixel edges)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise RegionError("empty mask has no box")
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def box_to_mask(box: Sequence[float], height: int, width: int) -> np.ndarray:
    """Rectangle mask of the pixels whose centres fall inside the box."""
    x1, y1, x2, y2 = box
    mask = np.zeros((height, width), dtype=np.uint8)
    c0 = max(0, int(np.ceil(x1 - 0.5)))
    r0 = max(0, int(np.ceil(y1 - 0.5)))
    c1 = min(width, int(np.ceil(x2 - 0.5)))
    r1 = min(height, int(np.ceil(y2 - 0.5)))
    mask[r0:r1, c0:c1] = 1
    return mask


def degenerate_polygons(polygons: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the polygons pycocotools rasterises other than as written: an odd number
    of coordinates (the last is dropped) or fewer than 3 points (no pixel)."""
    return [k for k, p in enumerate(polygons) if len(p) < 6 or len(p) % 2]


def polygons_to_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    return Region.from_polygons(polygons, height, width).to_mask()


def _points_to_mask(region: Region, radius: int = 4) -> np.ndarray:
    # Points become small discs and scribbles thick strokes: the shape a person would draw.
    from PIL import Image, ImageDraw

    assert region.points is not None
    img = Image.new("L", (region.width, region.height), 0)
    draw = ImageDraw.Draw(img)
    pts = [(float(x), float(y)) for x, y in region.points]
    if region.kind == "scribble":
        draw.line(pts, fill=1, width=2 * radius + 1)
    for x, y in pts:
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=1)
    return np.asarray(img, dtype=np.uint8)


def _rle_to_json(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


# The largest image side a region may claim: dense masks of its image are allocated (box
# to mask, decoding), so a size from a hostile file must not ask for terabytes.
MAX_SIDE = 65_536


def _check_size(height: int, width: int) -> None:
    if not (isinstance(height, int) and isinstance(width, int)) or height <= 0 or width <= 0:
        raise RegionError(f"image size must be positive integers, got height={height!r} width={width!r}")
    if height > MAX_SIDE or width > MAX_SIDE:
        raise RegionError(f"image size {width}x{height} exceeds {MAX_SIDE} pixels a side")


def _check_finite(values: Sequence[float], what: str) -> None:
    for v in values:
        if not math.isfinite(float(v)):
            raise RegionError(f"{what} has a coordinate that is not a finite number ({v!r})")


def _check_polygon_coordinates(k: int, poly: Sequence[float], height: int, width: int) -> None:
    """Finite, and at most one image size beyond each edge (annotations stray a few pixels)."""
    _check_finite(poly, f"polygon {k}")
    xs, ys = poly[0::2], poly[1::2]
    if xs and (
        min(xs) < -width
        or max(xs) > 2 * width
        or min(ys, default=0) < -height
        or max(ys, default=0) > 2 * height
    ):
        raise RegionError(
            f"polygon {k} has coordinates far outside the {width}x{height} image "
            f"(x in [{min(xs):g}, {max(xs):g}], y in [{min(ys, default=0):g}, {max(ys, default=0):g}]; "
            f"allowed: one image size beyond each edge)"
        )


def _check_points(
    points: Sequence[Sequence[float]], height: int, width: int, minimum: int
) -> tuple[tuple[float, float], ...]:
    _check_size(height, width)
    if len(points) < minimum:
        raise RegionError(f"need at least {minimum} point(s), got {len(points)}")
    out = []
    for k, p in enumerate(points):
        if len(p) != 2:
            raise RegionError(f"point {k} is not an (x, y) pair: {p!r}")
        _check_finite(p, f"point {k}")
        x, y = float(p[0]), float(p[1])
        if not (0 <= x < width and 0 <= y < height):
            raise RegionError(f"point {k} ({x}, {y}) lies outside the {width}x{height} image")
        out.append((x, y))
    return tuple(out)
