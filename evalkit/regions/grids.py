"""Coordinates on a model's own grid: Qwen2.5-VL's resized pixels, Kosmos-2's patch indices,
Florence-2's location bins.

Like :mod:`evalkit.regions.coords`, pure functions from pixel coordinates of the original image
(boxes ``xyxy`` with exclusive ``x2/y2`` edges, points ``(x, y)``) to what a model reads, each
restating its reference's arithmetic (tests compare them with the reference implementations
shipped in transformers where those run here):

* Qwen2.5-VL — technical report (arXiv 2502.13923) §2.1 "Native Dynamic Resolution": boxes and
  points are given in absolute coordinates of the image *as the model sees it*, after
  ``smart_resize`` (transformers ``models/qwen2_vl/image_processing_qwen2_vl.py``
  ``smart_resize``; the same function in qwen-vl-utils). The cookbook's grounding answers
  write ``{"bbox_2d": [x1, y1, x2, y2]}`` and ``{"point_2d": [x, y]}``; evalkit sends a region
  in the same form. The rounding to ints is not stated: ``round`` is evalkit's default.
* Kosmos-2 — transformers ``models/kosmos2/processing_kosmos2.py``
  ``coordinate_to_patch_index`` (from microsoft/unilm ``kosmos-2``): a [0, 1] box to the
  indices of its upper-left and lower-right cells on a 32×32 grid, written
  ``<object><patch_index_XXXX><patch_index_YYYY></object>`` after ``<phrase>…</phrase>``.
* Florence-2 — transformers ``models/florence2/processing_florence2.py``
  ``Florence2PostProcessor.quantize`` (1000 × 1000 bins): ``floor(x / (W / 1000))`` clamped
  to [0, 999], written ``<loc_N>`` four times for a box, twice for a point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from evalkit.regions.region import RegionError

# Qwen2-VL / Qwen2.5-VL image processor defaults (preprocessor_config.json of the released
# checkpoints): 14 px patches merged 2x2, so sides are multiples of 28.
QWEN_FACTOR = 28
QWEN_MIN_PIXELS = 56 * 56
QWEN_MAX_PIXELS = 28 * 28 * 1280
KOSMOS2_PATCHES_PER_SIDE = 32
FLORENCE2_BINS = 1000


# ---------------------------------------------------------------------- Qwen2.5-VL
def qwen_smart_resize(
    height: int,
    width: int,
    factor: int = QWEN_FACTOR,
    min_pixels: int = QWEN_MIN_PIXELS,
    max_pixels: int = QWEN_MAX_PIXELS,
) -> tuple[int, int]:
    """``(height, width)`` the Qwen2-VL image processor resizes an image to.

    Sides rounded to multiples of ``factor``; then, outside ``[min_pixels, max_pixels]``,
    scaled by ``beta = sqrt(H W / max_pixels)`` (floored to the factor) or
    ``sqrt(min_pixels / (H W))`` (ceiled), as ``smart_resize``.

    >>> qwen_smart_resize(480, 640)
    (476, 644)
    """
    if max(height, width) / min(height, width) > 200:
        raise RegionError(f"Qwen2-VL takes aspect ratios up to 200, got {width}x{height}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def qwen2_5_vl_box(
    box_xyxy: Sequence[float], width: int, height: int, resized: tuple[int, int]
) -> tuple[int, int, int, int]:
    """A pixel ``xyxy`` box in Qwen2.5-VL's absolute coordinates of the resized image.

    ``resized`` is ``(height, width)`` from :func:`qwen_smart_resize`; ``x' = round(x * W' / W)``.

    >>> qwen2_5_vl_box([100, 50, 300, 150], 640, 480, qwen_smart_resize(480, 640))
    (101, 50, 302, 149)
    """
    if len(box_xyxy) != 4:
        raise RegionError(f"a box is [x1, y1, x2, y2], got {list(box_xyxy)}")
    rh, rw = resized
    x1, y1, x2, y2 = box_xyxy
    return (round(x1 * rw / width), round(y1 * rh / height), round(x2 * rw / width), round(y2 * rh / height))


def qwen2_5_vl_point(
    point_xy: Sequence[float], width: int, height: int, resized: tuple[int, int]
) -> tuple[int, int]:
    """A pixel point in Qwen2.5-VL's absolute coordinates of the resized image.

    >>> qwen2_5_vl_point([320, 240], 640, 480, qwen_smart_resize(480, 640))
    (322, 238)
    """
    rh, rw = resized
    x, y = point_xy
    return (round(x * rw / width), round(y * rh / height))


# ---------------------------------------------------------------------- Kosmos-2
def kosmos2_patch_indices(
    box_xyxy: Sequence[float], width: int, height: int, per_side: int = KOSMOS2_PATCHES_PER_SIDE
) -> tuple[int, int]:
    """A pixel ``xyxy`` box as Kosmos-2's two patch indices (upper-left, lower-right cell).

    On the [0, 1] box: ``ul = floor(x1 n) + n floor(y1 n)``,
    ``lr = ceil(x2 n - 1) + n ceil(y2 n - 1)`` with ``n = 32`` (``coordinate_to_patch_index``).

    >>> kosmos2_patch_indices([0, 0, 640, 480], 640, 480)
    (0, 1023)
    """
    if len(box_xyxy) != 4:
        raise RegionError(f"a box is [x1, y1, x2, y2], got {list(box_xyxy)}")
    x1, y1, x2, y2 = box_xyxy[0] / width, box_xyxy[1] / height, box_xyxy[2] / width, box_xyxy[3] / height
    if not (x2 > x1 and y2 > y1):
        raise RegionError(f"Kosmos-2 needs a box with x2 > x1 and y2 > y1, got {list(box_xyxy)}")
    ul_x, ul_y = math.floor(x1 * per_side), math.floor(y1 * per_side)
    lr_x, lr_y = math.ceil(x2 * per_side - 1), math.ceil(y2 * per_side - 1)
    return ul_y * per_side + ul_x, lr_y * per_side + lr_x


def kosmos2_text(box_xyxy: Sequence[float], width: int, height: int, phrase: str) -> str:
    """Kosmos-2's grounded phrase: ``<phrase>…</phrase><object><patch_index_…>…</object>``.

    >>> kosmos2_text([0, 0, 20, 15], 640, 480, "it")
    '<phrase>it</phrase><object><patch_index_0000><patch_index_0000></object>'
    """
    ul, lr = kosmos2_patch_indices(box_xyxy, width, height)
    return f"<phrase>{phrase}</phrase><object><patch_index_{ul:04d}><patch_index_{lr:04d}></object>"


# ---------------------------------------------------------------------- Florence-2
def florence2_bins(coords_xy: Sequence[float], width: int, height: int) -> tuple[int, ...]:
    """Pixel ``x, y[, x, y]`` as Florence-2's location bins: ``floor(x / (W / 1000))`` in [0, 999].

    >>> florence2_bins([100, 50, 640, 480], 640, 480)
    (156, 104, 999, 999)
    """
    if len(coords_xy) not in (2, 4):
        raise RegionError(f"a location is 2 or 4 numbers, got {len(coords_xy)}")
    per_w, per_h = width / FLORENCE2_BINS, height / FLORENCE2_BINS
    out = []
    for k, value in enumerate(coords_xy):
        per = per_w if k % 2 == 0 else per_h
        out.append(min(FLORENCE2_BINS - 1, max(0, math.floor(value / per))))
    return tuple(out)


def florence2_text(coords_xy: Sequence[float], width: int, height: int) -> str:
    """``<loc_x1><loc_y1><loc_x2><loc_y2>`` (or two for a point).

    >>> florence2_text([100, 50, 640, 480], 640, 480)
    '<loc_156><loc_104><loc_999><loc_999>'
    """
    return "".join(f"<loc_{v}>" for v in florence2_bins(coords_xy, width, height))
