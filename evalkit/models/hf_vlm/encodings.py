"""Region encodings: how a request's regions reach a model that reads only an image and text.

* ``crop`` — the image replaced by the region's box, widened on each side by ``margin`` times
  the box's width / height (clamped to the image; Osprey's and RegionGPT's LLaVA-1.5 rows
  "adopt the box-based cropped image region as its input" and state no margin: 0 is the
  default). ``<region>`` becomes :data:`CROP_TEXT`. One region per request.
* ``som`` — the regions drawn and numbered on the image (:func:`evalkit.render.draw_marks`, the
  ``api`` adapter's Set-of-Marks); the i-th ``<region>`` becomes ``region i``.
* ``text`` — the image as it is; each ``<region>`` written in the family's coordinate format
  (:mod:`evalkit.models.region_text`).

Each returns an :class:`Encoded`: the chat turn's parts (text around the image, in the prompt's
order) and ``meta``, the record of what was done that every prediction carries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from evalkit.errors import ConfigError
from evalkit.models.api import RENDER_VERSION
from evalkit.models.region_text import (
    TextFormat,
    View,
    fill_regions,
    mark_names,
    region_texts,
    split_image,
)
from evalkit.records import Request
from evalkit.regions import Region, RegionError, grids
from evalkit.render import draw_marks

ENCODINGS = ("crop", "som", "text")
CROP_TEXT = "the object in the image"
ALL_KINDS = frozenset({"mask", "box", "points", "scribble"})
# A crop needs an extent: points and scribbles reach it as the masks the engine draws them as.
CROP_KINDS = frozenset({"mask", "box"})


@dataclass
class Encoded:
    """One user turn: ``before`` + the image + ``after`` (no image: ``before`` only)."""

    before: str
    image: Image.Image | None
    after: str
    meta: dict[str, Any] = field(default_factory=dict)

    def content(self) -> list[dict[str, Any]]:
        """The turn as chat-template content parts."""
        parts: list[dict[str, Any]] = []
        if self.before:
            parts.append({"type": "text", "text": self.before})
        if self.image is not None:
            parts.append({"type": "image"})
        if self.after:
            parts.append({"type": "text", "text": self.after})
        return parts

    @property
    def text(self) -> str:
        return self.before + self.after


def _turn(prompt: str, image: Image.Image | None, meta: dict[str, Any]) -> Encoded:
    """``prompt`` (regions already written) split at its ``<image>`` line; an image and no
    placeholder puts the image first, as LLaVA's and Qwen's templates do."""
    split = split_image(prompt)
    if split is None:
        return Encoded("", image, prompt, meta) if image is not None else Encoded(prompt, None, "", meta)
    before, after = split
    return Encoded(before, image, after, meta)


def crop_box(region: Region, margin: float) -> tuple[int, int, int, int]:
    """Integer ``xyxy`` crop of ``region``'s box widened by ``margin`` x its size on each side.

    ``x1 = max(0, floor(x1 - m w))``, ``x2 = min(W, ceil(x2 + m w))`` (and likewise for y).

    >>> crop_box(Region.from_box([10, 20, 30, 60], 100, 100), 0.25)
    (5, 10, 35, 70)
    """
    x1, y1, x2, y2 = region.box_xyxy()
    dx, dy = margin * (x2 - x1), margin * (y2 - y1)
    left, top = max(0, math.floor(x1 - dx)), max(0, math.floor(y1 - dy))
    right, bottom = min(region.width, math.ceil(x2 + dx)), min(region.height, math.ceil(y2 + dy))
    if right <= left or bottom <= top:
        raise RegionError(f"the region's box {[x1, y1, x2, y2]} crops to nothing")
    return left, top, right, bottom


def encode_crop(request: Request, image: Image.Image | None, margin: float) -> Encoded:
    if not request.regions:
        return _turn(request.prompt, image, {"region_encoding": "crop"})
    if len(request.regions) != 1:
        raise ConfigError(
            f"request {request.id}: region=crop shows one region per request, this one has "
            f"{len(request.regions)}: use region=som or region=text"
        )
    if image is None:
        raise ConfigError(f"request {request.id}: region=crop needs an image")
    box = crop_box(request.regions[0], margin)
    prompt = fill_regions(request.prompt, [CROP_TEXT])
    meta = {"region_encoding": "crop", "crop_box": list(box), "crop_margin": margin}
    return _turn(prompt, image.crop(box), meta)


def encode_som(request: Request, image: Image.Image | None) -> Encoded:
    meta: dict[str, Any] = {"region_encoding": "som", "render": RENDER_VERSION}
    if not request.regions:
        return _turn(request.prompt, image, meta)
    if image is None:
        raise ConfigError(f"request {request.id}: regions without an image to draw them on")
    prompt = fill_regions(request.prompt, mark_names(len(request.regions)))
    return _turn(prompt, draw_marks(image, request.regions), meta)


def encode_text(request: Request, image: Image.Image | None, fmt: TextFormat, view: View | None) -> Encoded:
    meta: dict[str, Any] = {"region_encoding": "text", "coords": fmt.name}
    if not request.regions:
        return _turn(request.prompt, image, meta)
    if view is None:
        raise ConfigError(f"request {request.id}: region=text needs the image the regions lie on")
    prompt = fill_regions(request.prompt, region_texts(fmt, request.regions, view))
    return _turn(prompt, image, meta)


def view_of(image: Image.Image, image_processor: Any, fmt: TextFormat | None) -> View:
    """The image as the model sees it; the resized size only where the format needs it."""
    resized = None
    if fmt is not None and fmt.name == "qwen2_5_vl":
        resized = qwen_resized(image_processor, image.height, image.width)
    return View(image.width, image.height, resized)


def qwen_resized(image_processor: Any, height: int, width: int) -> tuple[int, int]:
    """``(height, width)`` a Qwen2-VL-style image processor resizes to, from its own settings."""
    size = getattr(image_processor, "size", None) or {}
    factor = int(getattr(image_processor, "patch_size", 14)) * int(getattr(image_processor, "merge_size", 2))
    return grids.qwen_smart_resize(
        height,
        width,
        factor=factor,
        min_pixels=int(size.get("shortest_edge", grids.QWEN_MIN_PIXELS)),
        max_pixels=int(size.get("longest_edge", grids.QWEN_MAX_PIXELS)),
    )


def encoding_kinds(encoding: str, fmt: TextFormat | None) -> frozenset[str]:
    """The region kinds the adapter takes under ``encoding`` (the engine converts the rest)."""
    if encoding == "crop":
        return CROP_KINDS
    if encoding == "text":
        assert fmt is not None
        return fmt.kinds
    return ALL_KINDS


def encode(
    request: Request,
    image: Image.Image | None,
    encoding: str,
    margin: float,
    fmt: TextFormat | None,
    image_processor: Any,
) -> Encoded:
    """``request`` under ``encoding`` (one of :data:`ENCODINGS`)."""
    if encoding == "crop":
        return encode_crop(request, image, margin)
    if encoding == "som":
        return encode_som(request, image)
    assert fmt is not None
    view = view_of(image, image_processor, fmt) if image is not None else None
    return encode_text(request, image, fmt, view)


def check_regions(regions: Sequence[Region], image: Image.Image) -> None:
    """Regions annotated on another size than the decoded image's are an error (the engine's
    header check already caught most; a crop or coordinates would silently be wrong)."""
    for k, region in enumerate(regions):
        if (region.width, region.height) != image.size:
            raise RegionError(
                f"region {k} was made for a {region.width}x{region.height} image, "
                f"the image is {image.width}x{image.height}"
            )
