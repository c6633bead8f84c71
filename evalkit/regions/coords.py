"""Coordinate conventions: how each model family is given points and boxes.

Pure functions from pixel coordinates of the original image (points ``(x, y)``, boxes ``xyxy``
with exclusive ``x2/y2`` edges, or COCO ``xywh`` where a reference takes that) to what a model
reads. Each restates its reference's arithmetic literally — the order of operations included,
since ``int(x * (1000 / W))`` and ``int(x * 1000 / W)`` differ for some ``x`` (Ferret, below).

References (commits as in ``shared/PROTOCOLS_WAVE2.md``, "Sources read"):

* SPHINX-V — AFeng-x/Draw-and-Understand ``28a1bd1``,
  ``accessory/data/conversation/transforms.py`` ``vp_normalize`` / ``Transform_Visual_Prompts``
  (lines 6-60; the same code in ``accessory/eval/infer_and_save.py``). PROTOCOLS_WAVE2.md §A.
* Ferret — apple/ml-ferret ``3c9e5c9``, ``ferret/eval/model_lvis.py`` ``LVISData_V1`` (lines
  90-104) and ``ferret/train/train.py`` ``regulate_box`` (line 651). PROTOCOLS_WAVE2.md §C.
* Shikra — shikras/shikra ``1204f10``, ``mllm/dataset/utils/transform.py``
  ``box_xyxy_expand2square`` / ``norm_box_xyxy`` / ``norm_point_xyxy`` and
  ``mllm/dataset/process_function/box_process_function.py`` ``PlainBoxFormatter``
  (precision 3): the image is padded to a square (``Expand2square``, every released config),
  boxes shifted by the padding, divided by the side, clamped to [0, 1], rounded to 3 places and
  written ``[x1,y1,x2,y2]`` — floats, no spaces; not Ferret's ints.
* LLaVA-1.5 — its instruction data (``llava_v1_5_mix665k.json``, the VG / RefCOCO region
  turns: "Please provide a short description for this region: [0.32, 0.8, 0.59, 1.0]."):
  ``[x1, y1, x2, y2]`` as Python prints ``round(v, 2)``, normalised on the square the image is
  padded to (``image_aspect_ratio: pad``, ``expand2square``), as users measured it in
  haotian-liu/LLaVA issue #606 (the data's conversion script is not released).
* GLaMM — mbzuai-oryx/groundingLMM ``e74865f``, ``eval/region_captioning/infer.py`` (boxes
  rescaled to 336 then divided by 336) and ``app.py`` ``region_enc_processor``. §O.
* GPT4RoI — jshilong/GPT4RoI ``00273ad``: ``x1y1x2y2 / [W, H, W, H]``. §O.
* Qwen2-VL — technical report, arXiv 2409.12191 §2.2.1 "Visual Grounding": "bounding box
  coordinates are normalized within [0, 1000) and represented as
  (X_top left, Y_top left),(X_bottom right, Y_bottom right)", between ``<|box_start|>`` and
  ``<|box_end|>``, the referred text between ``<|object_ref_start|>`` and
  ``<|object_ref_end|>``; its example ``<|box_start|>(176,106),(232,160)<|box_end|>`` has no
  spaces. The rounding is not stated: ``int(x / W * 1000)`` clamped to [0, 999] is evalkit's
  default (non-reference).
"""

from __future__ import annotations

from collections.abc import Sequence

from evalkit.regions.region import RegionError

SPHINX_V_MAX_PROMPTS = 10
SPHINX_V_POINT_PAD = (0.0, 0.0, -1.0, -1.0)
SPHINX_V_BOX_PAD = (0.0, 0.0, 0.0, 0.0)
FERRET_VOCAB = 1000  # ferret VOCAB_IMAGE_W = VOCAB_IMAGE_H = 1000
QWEN2_VL_SCALE = 1000


# ---------------------------------------------------------------------- SPHINX-V
def sphinx_v_padding(width: int, height: int) -> tuple[int, int, int]:
    """``(pad_x0, pad_y0, side)`` of SPHINX-V's pad-to-square (``Transform_Visual_Prompts``).

    ``pad_x0 = int((H - W) / 2)`` if ``H > W``, else ``pad_y0 = int((W - H) / 2)``;
    ``side = max(W, H)``. The image itself is pasted at the same offset (``PadToSquare``).

    >>> sphinx_v_padding(640, 480)
    (0, 80, 640)
    """
    if height > width:
        return int((height - width) / 2), 0, height
    return 0, int((width - height) / 2), width


def sphinx_v_point(point_xy: Sequence[float], width: int, height: int) -> list[float]:
    """A point as SPHINX-V's prompt encoder reads it: ``[x', y', -1, -1]`` on the padded square.

    ``x' = round((x + pad_x0) / S, 3)``, ``y' = round((y + pad_y0) / S, 3)`` (``vp_normalize``).

    >>> sphinx_v_point([320, 240], 640, 480)
    [0.5, 0.5, -1.0, -1.0]
    """
    if len(point_xy) != 2:
        raise RegionError(f"a SPHINX-V point is [x, y], got {list(point_xy)}")
    pad_x, pad_y, side = sphinx_v_padding(width, height)
    x, y = point_xy
    return [round((x + pad_x) / side, 3), round((y + pad_y) / side, 3), -1.0, -1.0]


def sphinx_v_box(box_xywh: Sequence[float], width: int, height: int) -> list[float]:
    """A COCO ``xywh`` pixel box as SPHINX-V reads it: padded-square-normalised ``xyxy``.

    ``[round((x+px)/S,3), round((y+py)/S,3), round((x+px+w)/S,3), round((y+py+h)/S,3)]``
    (``vp_normalize``; the input is ``xywh``, the output ``xyxy``).

    >>> sphinx_v_box([100, 50, 200, 100], 640, 480)  # PROTOCOLS_WAVE2.md §P item 7
    [0.156, 0.203, 0.469, 0.359]
    """
    if len(box_xywh) != 4:
        raise RegionError(f"a SPHINX-V box is [x, y, w, h], got {list(box_xywh)}")
    pad_x, pad_y, side = sphinx_v_padding(width, height)
    x, y, w, h = box_xywh
    x0, y0 = x + pad_x, y + pad_y
    return [round(x0 / side, 3), round(y0 / side, 3), round((x0 + w) / side, 3), round((y0 + h) / side, 3)]


def sphinx_v_prompts(prompts: Sequence[Sequence[float]], width: int, height: int) -> list[list[float]]:
    """All of a request's visual prompts, as ``Transform_Visual_Prompts`` returns them (10 rows).

    The type comes from the first prompt (2 numbers = points ``[x, y]``, 4 = boxes ``xywh``);
    more than 10 → the first 10 (the question text is not changed); fewer → padded with
    ``[0, 0, -1, -1]`` (points) or ``[0, 0, 0, 0]`` (boxes). The reference then makes a float32
    tensor of these; that rounding is the model's, not done here. Mixing points and boxes (the
    reference mis-normalises them silently) and an empty list (it crashes) raise RegionError.

    >>> sphinx_v_prompts([[320, 240]], 640, 480)[:2]
    [[0.5, 0.5, -1.0, -1.0], [0.0, 0.0, -1.0, -1.0]]
    """
    if len(prompts) == 0:
        raise RegionError("SPHINX-V needs at least one visual prompt")
    size = len(prompts[0])
    if size not in (2, 4):
        raise RegionError(f"a SPHINX-V prompt has 2 (point) or 4 (box) numbers, got {size}")
    if any(len(p) != size for p in prompts):
        raise RegionError("SPHINX-V takes points or boxes in one request, not both")
    normalise = sphinx_v_point if size == 2 else sphinx_v_box
    rows = [normalise(p, width, height) for p in prompts[:SPHINX_V_MAX_PROMPTS]]
    pad = SPHINX_V_POINT_PAD if size == 2 else SPHINX_V_BOX_PAD
    rows += [list(pad) for _ in range(SPHINX_V_MAX_PROMPTS - len(rows))]
    return rows


# ---------------------------------------------------------------------- Ferret / Shikra
def _clamp_vocab(values: Sequence[int], clamp: bool) -> tuple[int, ...]:
    if not clamp:
        return tuple(values)
    return tuple(min(FERRET_VOCAB - 1, max(0, v)) for v in values)


def ferret_point(point_xy: Sequence[float], width: int, height: int, clamp: bool = True) -> tuple[int, int]:
    """A pixel point as Ferret's text ints: ``int(x * ratio_w)``, ``ratio_w = 1000 * 1.0 / W``.

    ``model_lvis.py`` multiplies by the ratio; ``x * 1000 / W`` would differ for some points
    (``W=122, x=61``: the ratio gives 499, the other 500). ``clamp`` keeps the result in
    [0, 999] (a point is inside the image, so this only guards bad input); ``clamp=False`` is the
    reference literally.

    >>> ferret_point([320, 240], 640, 480)
    (500, 500)
    """
    ratio_w = FERRET_VOCAB * 1.0 / width
    ratio_h = FERRET_VOCAB * 1.0 / height
    x, y = point_xy
    out = _clamp_vocab((int(x * ratio_w), int(y * ratio_h)), clamp)
    return (out[0], out[1])


def ferret_box(
    box_xyxy: Sequence[float], width: int, height: int, clamp: bool = True
) -> tuple[int, int, int, int]:
    """A pixel ``xyxy`` box as Ferret's box-prompt ints: ``int(bbox_norm[k] * 1000)``.

    ``bbox_norm = [x1/W, y1/H, x2/W, y2/H]`` (the LVIS eval file's field, rebuilt from pixels).
    A box touching the right/bottom edge (``x2 == W``) gives 1000, outside Ferret's [0, 1000)
    vocabulary: ``model_lvis.py`` sends it as is, while training never saw it (``train.py``
    ``regulate_box`` clamps pixels to ``W - 1`` first, see :func:`ferret_regulate_box`).
    ``clamp=True`` (default) clamps the ints to [0, 999]; ``clamp=False`` is the eval literally.

    >>> ferret_box([0, 0, 640, 480], 640, 480), ferret_box([0, 0, 640, 480], 640, 480, clamp=False)
    ((0, 0, 999, 999), (0, 0, 1000, 1000))
    """
    if len(box_xyxy) != 4:
        raise RegionError(f"a box is [x1, y1, x2, y2], got {list(box_xyxy)}")
    x1, y1, x2, y2 = box_xyxy
    norm = (x1 / width, y1 / height, x2 / width, y2 / height)
    out = _clamp_vocab([int(v * FERRET_VOCAB) for v in norm], clamp)
    return (out[0], out[1], out[2], out[3])


def ferret_free_form_box(
    box_xyxy: Sequence[float], width: int, height: int, clamp: bool = True
) -> tuple[int, int, int, int]:
    """Ferret's free-form-shape box ints: ``int(free_shape_bbox_raw[k] * ratio)`` (pixel path).

    The same quantity as :func:`ferret_box` computed the other way round (``x * (1000 / W)``,
    as :func:`ferret_point`); ``clamp`` as there.

    >>> ferret_free_form_box([61, 0, 122, 10], 122, 10, clamp=False)  # 122 * (1000/122) < 1000
    (499, 0, 999, 1000)
    >>> ferret_box([61, 0, 122, 10], 122, 10, clamp=False)
    (500, 0, 1000, 1000)
    """
    if len(box_xyxy) != 4:
        raise RegionError(f"a box is [x1, y1, x2, y2], got {list(box_xyxy)}")
    ratio_w = FERRET_VOCAB * 1.0 / width
    ratio_h = FERRET_VOCAB * 1.0 / height
    x1, y1, x2, y2 = box_xyxy
    out = _clamp_vocab((int(x1 * ratio_w), int(y1 * ratio_h), int(x2 * ratio_w), int(y2 * ratio_h)), clamp)
    return (out[0], out[1], out[2], out[3])


def ferret_regulate_box(
    box_xyxy: Sequence[float], width: int, height: int
) -> tuple[float, float, float, float]:
    """Ferret training's ``regulate_box``: every coordinate clamped to ``[0, W-1]`` / ``[0, H-1]``.

    >>> ferret_regulate_box([-3, 5, 640, 480], 640, 480)
    (0.0, 5.0, 639.0, 479.0)
    """
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    return (
        max(0.0, min(x1, width - 1.0)),
        max(0.0, min(y1, height - 1.0)),
        max(0.0, min(x2, width - 1.0)),
        max(0.0, min(y2, height - 1.0)),
    )


def ferret_text(coords: Sequence[int]) -> str:
    """Ferret/Shikra text form: ``[x, y]`` or ``[x1, y1, x2, y2]`` (``'[{}, {}]'.format``).

    >>> ferret_text((156, 203, 468, 359))
    '[156, 203, 468, 359]'
    """
    if len(coords) not in (2, 4):
        raise RegionError(f"a location is 2 or 4 numbers, got {len(coords)}")
    return "[" + ", ".join(str(int(v)) for v in coords) + "]"


# ---------------------------------------------------------------------- Shikra
def shikra_box(box_xyxy: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    """A pixel ``xyxy`` box as Shikra reads it: on the ``Expand2square`` canvas, in [0, 1], 3 places.

    The shorter side is padded by ``(long - short) // 2`` before the box is normalised by the
    long side (``box_xyxy_expand2square`` then ``norm_box_xyxy``).

    >>> shikra_box([100, 50, 300, 150], 640, 480)
    (0.156, 0.203, 0.469, 0.359)
    """
    if len(box_xyxy) != 4:
        raise RegionError(f"a box is [x1, y1, x2, y2], got {list(box_xyxy)}")
    x1, y1, x2, y2 = box_xyxy
    side = max(width, height)
    if width > height:
        y1, y2 = y1 + (width - height) // 2, y2 + (width - height) // 2
    elif height > width:
        x1, x2 = x1 + (height - width) // 2, x2 + (height - width) // 2
    out = [round(max(0.0, min(v / side, 1.0)), 3) for v in (x1, y1, x2, y2)]
    return (out[0], out[1], out[2], out[3])


def shikra_point(point_xy: Sequence[float], width: int, height: int) -> tuple[float, float]:
    """A pixel point as Shikra reads it: shifted like a box, over the side, clamped (no rounding:
    ``norm_point_xyxy``; the text form's ``:.3f`` rounds it).

    >>> shikra_point([320, 240], 640, 480)
    (0.5, 0.5)
    """
    x, y = point_xy
    side = max(width, height)
    if width > height:
        y = y + (width - height) // 2
    elif height > width:
        x = x + (height - width) // 2
    return (max(0.0, min(x / side, 1.0)), max(0.0, min(y / side, 1.0)))


def shikra_text(coords: Sequence[float]) -> str:
    """Shikra's ``PlainBoxFormatter``: ``[x1,y1,x2,y2]`` / ``[x,y]`` with 3 decimals, no spaces.

    >>> shikra_text((0.156, 0.203, 0.469, 0.359))
    '[0.156,0.203,0.469,0.359]'
    """
    if len(coords) not in (2, 4):
        raise RegionError(f"a location is 2 or 4 numbers, got {len(coords)}")
    return "[" + ",".join(f"{v:.3f}" for v in coords) + "]"


# ---------------------------------------------------------------------- LLaVA-1.5
def llava_box(box_xyxy: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    """A pixel ``xyxy`` box as LLaVA-1.5's region text numbers: on the padded square, 2 places.

    Shifted like :func:`shikra_box` (``expand2square`` pastes at ``(long - short) // 2``),
    divided by the long side, clamped to [0, 1], ``round(v, 2)``.

    >>> llava_box([100, 50, 300, 150], 640, 480)
    (0.16, 0.2, 0.47, 0.36)
    """
    if len(box_xyxy) != 4:
        raise RegionError(f"a box is [x1, y1, x2, y2], got {list(box_xyxy)}")
    x1, y1, x2, y2 = box_xyxy
    side = max(width, height)
    if width > height:
        y1, y2 = y1 + (width - height) // 2, y2 + (width - height) // 2
    elif height > width:
        x1, x2 = x1 + (height - width) // 2, x2 + (height - width) // 2
    out = [round(max(0.0, min(v / side, 1.0)), 2) for v in (x1, y1, x2, y2)]
    return (out[0], out[1], out[2], out[3])


def llava_text(coords: Sequence[float]) -> str:
    """``[x1, y1, x2, y2]`` as a Python list of floats prints (``str``): ``1.0``, ``0.8``.

    >>> llava_text((0.32, 0.8, 0.59, 1.0))
    '[0.32, 0.8, 0.59, 1.0]'
    """
    if len(coords) != 4:
        raise RegionError(f"a LLaVA-1.5 box is 4 numbers, got {len(coords)}")
    return "[" + ", ".join(str(float(v)) for v in coords) + "]"


# ---------------------------------------------------------------------- GLaMM / GPT4RoI
def glamm_box(box_xyxy: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    """A pixel ``xyxy`` box as GLaMM's ``<bbox>`` input: [0, 1] floats, GLaMM's arithmetic.

    ``x * (336 / W) / 336`` in float64 (``eval/region_captioning/infer.py``) — equal to ``x / W``
    up to the last bit; the model then casts to bf16 (not done here). Relative to the full image,
    although GLaMM's CLIP view is centre-cropped (PROTOCOLS_WAVE2.md §O).

    >>> glamm_box([160, 120, 480, 240], 640, 480)
    (0.25, 0.25, 0.75, 0.5)
    """
    if len(box_xyxy) != 4:
        raise RegionError(f"a box is [x1, y1, x2, y2], got {list(box_xyxy)}")
    side = 336
    x_scale, y_scale = side / width, side / height
    x1, y1, x2, y2 = box_xyxy
    return (x1 * x_scale / side, y1 * y_scale / side, x2 * x_scale / side, y2 * y_scale / side)


def unit_box(box_xyxy: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    """A pixel ``xyxy`` box divided by ``[W, H, W, H]`` (GPT4RoI's region input).

    >>> unit_box([160, 120, 480, 240], 640, 480)
    (0.25, 0.25, 0.75, 0.5)
    """
    if len(box_xyxy) != 4:
        raise RegionError(f"a box is [x1, y1, x2, y2], got {list(box_xyxy)}")
    x1, y1, x2, y2 = box_xyxy
    return (x1 / width, y1 / height, x2 / width, y2 / height)


# ---------------------------------------------------------------------- Qwen2-VL
def qwen2_vl_box(box_xyxy: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """A pixel ``xyxy`` box as Qwen2-VL's ints in [0, 1000): ``int(x / W * 1000)``, clamped to 999.

    The report fixes the range, not the rounding: floor (``int``) and the clamp (``x2 == W``
    would give 1000, outside the stated half-open range) are evalkit's default.

    >>> qwen2_vl_box([0, 0, 640, 480], 640, 480)
    (0, 0, 999, 999)
    """
    if len(box_xyxy) != 4:
        raise RegionError(f"a box is [x1, y1, x2, y2], got {list(box_xyxy)}")
    x1, y1, x2, y2 = box_xyxy
    raw = (x1 / width, y1 / height, x2 / width, y2 / height)
    out = [min(QWEN2_VL_SCALE - 1, max(0, int(v * QWEN2_VL_SCALE))) for v in raw]
    return (out[0], out[1], out[2], out[3])


def qwen2_vl_box_text(box_xyxy: Sequence[float], width: int, height: int, ref: str | None = None) -> str:
    """Qwen2-VL's grounding text: ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``.

    With ``ref``, the referred phrase comes first between ``<|object_ref_start|>`` and
    ``<|object_ref_end|>`` (the report's referring-grounding example).

    >>> qwen2_vl_box_text([100, 50, 300, 150], 640, 480, ref="the dog")
    '<|object_ref_start|>the dog<|object_ref_end|><|box_start|>(156,104),(468,312)<|box_end|>'
    """
    x1, y1, x2, y2 = qwen2_vl_box(box_xyxy, width, height)
    box = f"<|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>"
    return box if ref is None else f"<|object_ref_start|>{ref}<|object_ref_end|>{box}"
