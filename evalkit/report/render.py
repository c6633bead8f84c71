"""Drawing a sample's regions on its image, for the HTML gallery (PIL only)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from evalkit.regions import Region

REGION_COLOURS: tuple[tuple[int, int, int], ...] = (
    (0, 230, 255),
    (255, 60, 200),
    (255, 220, 0),
    (80, 255, 80),
    (255, 120, 0),
)
_DIM = 0.45  # brightness kept outside the regions, so the asked-about pixels stand out


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of the mask within ``width`` of its border (a cheap morphological edge)."""
    inner = mask.copy()
    for _ in range(width):
        shrunk = inner.copy()
        shrunk[1:, :] &= inner[:-1, :]
        shrunk[:-1, :] &= inner[1:, :]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        inner = shrunk
    return mask & ~inner


def draw_regions(image: Image.Image, regions: Sequence[Region]) -> Image.Image:
    """The image dimmed outside the regions, each region outlined in its colour and numbered."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    h, w = rgb.shape[:2]
    if not regions:
        return Image.fromarray(rgb.astype(np.uint8))
    inside = np.zeros((h, w), dtype=bool)
    masks = []
    for region in regions:
        mask = region.to_mask().astype(bool)
        if mask.shape != (h, w):  # region drawn for another size: fit it to the image
            mask = np.asarray(Image.fromarray(mask).resize((w, h), Image.Resampling.NEAREST), dtype=bool)
        masks.append(mask)
        inside |= mask
    rgb[~inside] *= _DIM
    width = max(2, round(min(h, w) / 120))
    for k, (region, mask) in enumerate(zip(regions, masks, strict=True)):
        colour = np.array(REGION_COLOURS[k % len(REGION_COLOURS)], dtype=np.float32)
        # Points and scribbles are drawn whole; boxes and masks by their outline.
        edge = mask if region.kind in ("points", "scribble") else _outline(mask, width)
        rgb[edge] = colour
    out = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
    if len(regions) > 1:
        draw = ImageDraw.Draw(out)
        for k, mask in enumerate(masks):
            ys, xs = np.nonzero(mask)
            if len(xs):
                x, y = int(xs.min()), int(ys.min())
                draw.rectangle((x, y, x + 12, y + 12), fill=(0, 0, 0))
                draw.text((x + 3, y + 1), str(k + 1), fill=(255, 255, 255))
    return out


def thumbnail_png(
    image_path: str | Path | None, regions: Sequence[Region], max_size: tuple[int, int] = (256, 192)
) -> str | None:
    """A base64 PNG of the image with its regions drawn, or None when the image is missing."""
    if image_path is None or not Path(image_path).is_file():
        return None
    with Image.open(image_path) as img:
        drawn = draw_regions(img, regions)
    drawn.thumbnail(max_size, Image.Resampling.LANCZOS)
    # A 64-colour palette keeps thumbnails small (hundreds of them sit in one page).
    small = drawn.quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    small.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")
