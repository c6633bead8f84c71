"""Set-of-Marks rendering: the regions of a request drawn on its image, numbered 1..N.

Follows MDVP-Bench's ``paint_util.py`` (what its GPT-4V judge saw), in Pillow instead of
OpenCV:

* the image is darkened, ``round(pixel * w)`` with ``w = 0.7`` when every region is a point
  and ``0.8`` otherwise (OpenCV's ``addWeighted`` with a black image, in float32);
* a box is a green rectangle, 2 px thick, from ``(int(x), int(y))`` to
  ``(int(x) + int(w), int(y) + int(h))``; its label sits with its baseline at
  ``(x + 4, y + 20)``;
* a point is a filled green disc of radius 4; its label's baseline is at ``(x + 5, y - 5)``,
  moved to ``x - 20`` near the right edge, ``y + 20`` near the top, ``y - 20`` near the bottom;
* a label is the white index number on a filled black rectangle the size of the text plus
  its descent;
* (not in MDVP) a mask is filled with translucent green and outlined, labelled like the box
  around it; a scribble is a 2 px green polyline, labelled like its first point.

Output is PNG bytes without metadata, identical for identical inputs on one Pillow build.
Pillow's bundled font replaces OpenCV's Hershey font (the glyphs differ slightly).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from evalkit.errors import DataError
from evalkit.regions import Region

GREEN = (0, 255, 0)
BLACK = (0, 0, 0)
WHITE = (255, 255, 255)
BOX_DARKEN = 0.8
POINT_DARKEN = 0.7
BOX_THICKNESS = 2
POINT_RADIUS = 4
MASK_ALPHA = 0.35
BOX_FONT_PX = 18  # about OpenCV's FONT_HERSHEY_SIMPLEX at scale 0.65
POINT_FONT_PX = 19  # ... and at 0.7


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def darken(image: Image.Image, weight: float) -> Image.Image:
    arr = np.asarray(image.convert("RGB"), dtype=np.float32)
    out = np.clip(np.rint(arr * np.float32(weight)), 0, 255).astype(np.uint8)
    return Image.fromarray(out, "RGB")


def _label(draw: ImageDraw.ImageDraw, text: str, x: int, y: int, size: int) -> None:
    """White ``text`` with its baseline-left at (x, y) on a black box of the text's size."""
    font = _font(size)
    left, top, right, _ = draw.textbbox((0, 0), text, font=font, anchor="ls")
    descent = font.getmetrics()[1] if isinstance(font, ImageFont.FreeTypeFont) else 2
    width, height = right - left, -top
    draw.rectangle((x, y - height - descent, x + width, y + descent), fill=BLACK)
    draw.text((x, y), text, fill=WHITE, font=font, anchor="ls")


def _point_label_xy(x: int, y: int, width: int, height: int) -> tuple[int, int]:
    tx, ty = x + 5, y - 5
    if tx + 20 > width:
        tx = x - 20
    if ty - 10 < 0:
        ty = y + 20
    if y + 10 > height:
        ty = y - 20
    return tx, ty


def _box_ints(region: Region) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = region.box_xyxy()
    # The reference truncates x, y, w, h separately; recover w, h without float noise.
    return int(x1), int(y1), int(round(x2 - x1, 6)), int(round(y2 - y1, 6))


def draw_marks(image: Image.Image, regions: Sequence[Region]) -> Image.Image:
    """A new RGB image with ``regions`` drawn and numbered from 1."""
    width, height = image.size
    for k, region in enumerate(regions, start=1):
        if (region.width, region.height) != (width, height):
            raise ValueError(
                f"region {k} was made for a {region.width}x{region.height} image, "
                f"the image is {width}x{height}"
            )
    all_points = bool(regions) and all(r.kind == "points" for r in regions)
    canvas = darken(image, POINT_DARKEN if all_points else BOX_DARKEN)
    for region in regions:
        if region.kind == "mask":
            canvas = _fill_mask(canvas, region.to_mask())
    draw = ImageDraw.Draw(canvas)
    for k, region in enumerate(regions, start=1):
        text = str(k)
        if region.kind in ("box", "mask"):
            x, y, w, h = _box_ints(region)
            if region.kind == "box":
                draw.rectangle((x, y, x + w, y + h), outline=GREEN, width=BOX_THICKNESS)
            _label(draw, text, x + 4, y + 20, BOX_FONT_PX)
        else:
            assert region.points is not None
            pts = [(int(px), int(py)) for px, py in region.points]
            if region.kind == "scribble":
                draw.line(pts, fill=GREEN, width=BOX_THICKNESS)
            else:
                r = POINT_RADIUS
                for px, py in pts:
                    draw.ellipse((px - r, py - r, px + r, py + r), fill=GREEN)
            tx, ty = _point_label_xy(pts[0][0], pts[0][1], width, height)
            _label(draw, text, tx, ty, POINT_FONT_PX)
    return canvas


def _fill_mask(canvas: Image.Image, mask: np.ndarray) -> Image.Image:
    arr = np.asarray(canvas, dtype=np.float32).copy()
    inside = mask.astype(bool)
    green = np.array(GREEN, dtype=np.float32)
    arr[inside] = np.rint(arr[inside] * np.float32(1 - MASK_ALPHA) + green * np.float32(MASK_ALPHA))
    # Outline: mask pixels with a 4-neighbour outside the mask.
    padded = np.pad(inside, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    arr[inside & ~interior] = green
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def marks_png(image_path: str | Path, regions: Sequence[Region]) -> bytes:
    """The image at ``image_path`` with ``regions`` drawn, as PNG bytes."""
    path = Path(image_path)
    if not path.is_file():
        raise DataError(path, "image not found")
    try:
        with Image.open(path) as img:
            img.load()
            marked = draw_marks(img, regions)
    except ValueError as exc:
        raise DataError(path, str(exc)) from exc
    except OSError as exc:
        raise DataError(path, f"cannot read image: {exc}") from exc
    return png_bytes(marked)
