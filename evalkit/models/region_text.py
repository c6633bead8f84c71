"""Regions written into a prompt's text: the ``<region>`` rewriting adapters share.

A task prompt has ``<image>`` and ``<region>`` placeholders (the i-th ``<region>`` is the
request's i-th region). An adapter that sends the image as its own message part drops the
``<image>`` line (:func:`split_image`) and writes each region as text (:func:`fill_regions`):
``region i`` for Set-of-Marks (mark ``i`` drawn on the image), or the region's coordinates in
a model family's own convention (:data:`TEXT_FORMATS`, arithmetic in
:mod:`evalkit.regions.coords` and :mod:`evalkit.regions.grids`).

Text formats, by name (``coords=NAME`` of the ``hf-vlm`` and ``api`` adapters):

=============  ==========================================================  ================
name           a box / a point                                             families
=============  ==========================================================  ================
``llava``      ``[x1, y1, x2, y2]``, 2-decimal floats on the padded square   LLaVA-1.5
``qwen2_vl``   ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``, ints [0,1000)  Qwen2-VL
``qwen2_5_vl`` ``{"bbox_2d": [x1, y1, x2, y2]}`` / ``{"point_2d": [x, y]}``  Qwen2.5-VL
               in pixels of the resized image
``ferret``     ``[x1, y1, x2, y2]`` / ``[x, y]``, ints in [0,1000)           Ferret
``shikra``     ``[x1,y1,x2,y2]`` / ``[x,y]``, 3-decimal floats on the        Shikra
               padded square
``kosmos2``    ``<phrase>the region</phrase><object><patch_index_…>…``       Kosmos-2
``florence2``  ``<loc_x1><loc_y1><loc_x2><loc_y2>`` / two ``<loc_>``         Florence-2
=============  ==========================================================  ================
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from evalkit.errors import ConfigError
from evalkit.records import IMAGE_PLACEHOLDER, REGION_PLACEHOLDER
from evalkit.regions import Region, RegionError, coords, grids

# Some Osprey prompts put a stray "." after the placeholder ("<image>.\n"): drop it too.
IMAGE_LINE = re.compile(re.escape(IMAGE_PLACEHOLDER) + r"\.?\n?")
KOSMOS2_PHRASE = "the region"


def split_image(prompt: str) -> tuple[str, str] | None:
    """The text before and after the first ``<image>`` line (its newline and stray ``.`` gone);
    None when the prompt has no ``<image>``. Later ``<image>`` lines are removed."""
    match = IMAGE_LINE.search(prompt)
    if match is None:
        return None
    return prompt[: match.start()], IMAGE_LINE.sub("", prompt[match.end() :])


def strip_image(prompt: str) -> str:
    """The prompt without its ``<image>`` lines."""
    return IMAGE_LINE.sub("", prompt)


def fill_regions(prompt: str, texts: Sequence[str]) -> str:
    """The i-th ``<region>`` replaced by ``texts[i]``; more placeholders than texts is an error."""
    parts = prompt.split(REGION_PLACEHOLDER)
    if len(parts) - 1 > len(texts):
        raise ConfigError(
            f"prompt has {len(parts) - 1} {REGION_PLACEHOLDER} placeholders for {len(texts)} region(s)"
        )
    out = parts[0]
    for text, tail in zip(texts, parts[1:], strict=False):
        out += text + tail
    return out


def mark_names(n: int) -> list[str]:
    """What Set-of-Marks calls its marks in the prompt: ``region 1`` ... ``region n``."""
    return [f"region {i}" for i in range(1, n + 1)]


@dataclass(frozen=True)
class View:
    """An image as the model sees it: original ``width``/``height`` and, for formats in pixels
    of the model's input (Qwen2.5-VL), the ``(height, width)`` it is resized to."""

    width: int
    height: int
    resized: tuple[int, int] | None = None


Writer = Callable[[Region, View], str]


@dataclass(frozen=True)
class TextFormat:
    name: str
    families: str  # who reads it, for messages and docs
    kinds: frozenset[str]  # region kinds it writes; the engine converts others (mask -> box)
    write: Writer


def _point(region: Region, name: str) -> tuple[float, float]:
    assert region.points is not None
    if len(region.points) != 1:
        raise RegionError(f"{name} writes one point per region, this region has {len(region.points)}")
    return region.points[0]


def _llava(region: Region, view: View) -> str:
    return coords.llava_text(coords.llava_box(region.box_xyxy(), view.width, view.height))


def _qwen2_vl(region: Region, view: View) -> str:
    return coords.qwen2_vl_box_text(region.box_xyxy(), view.width, view.height)


def _qwen2_5_vl(region: Region, view: View) -> str:
    resized = view.resized or grids.qwen_smart_resize(view.height, view.width)
    if region.kind == "points":
        x, y = grids.qwen2_5_vl_point(_point(region, "qwen2_5_vl"), view.width, view.height, resized)
        return json.dumps({"point_2d": [x, y]})
    box = grids.qwen2_5_vl_box(region.box_xyxy(), view.width, view.height, resized)
    return json.dumps({"bbox_2d": list(box)})


def _ferret(region: Region, view: View) -> str:
    if region.kind == "points":
        return coords.ferret_text(coords.ferret_point(_point(region, "ferret"), view.width, view.height))
    return coords.ferret_text(coords.ferret_box(region.box_xyxy(), view.width, view.height))


def _shikra(region: Region, view: View) -> str:
    if region.kind == "points":
        return coords.shikra_text(coords.shikra_point(_point(region, "shikra"), view.width, view.height))
    return coords.shikra_text(coords.shikra_box(region.box_xyxy(), view.width, view.height))


def _kosmos2(region: Region, view: View) -> str:
    return grids.kosmos2_text(region.box_xyxy(), view.width, view.height, KOSMOS2_PHRASE)


def _florence2(region: Region, view: View) -> str:
    if region.kind == "points":
        return grids.florence2_text(_point(region, "florence2"), view.width, view.height)
    return grids.florence2_text(region.box_xyxy(), view.width, view.height)


_BOX = frozenset({"box"})
_BOX_POINT = frozenset({"box", "points"})
TEXT_FORMATS: dict[str, TextFormat] = {
    f.name: f
    for f in (
        TextFormat("llava", "LLaVA-1.5", _BOX, _llava),
        TextFormat("qwen2_vl", "Qwen2-VL", _BOX, _qwen2_vl),
        TextFormat("qwen2_5_vl", "Qwen2.5-VL", _BOX_POINT, _qwen2_5_vl),
        TextFormat("ferret", "Ferret", _BOX_POINT, _ferret),
        TextFormat("shikra", "Shikra", _BOX_POINT, _shikra),
        TextFormat("kosmos2", "Kosmos-2", _BOX, _kosmos2),
        TextFormat("florence2", "Florence-2", _BOX_POINT, _florence2),
    )
}


def text_format(name: str, who: str) -> TextFormat:
    """The format called ``name``; an unknown name is one line listing the known ones."""
    if name not in TEXT_FORMATS:
        known = ", ".join(f"{f.name} ({f.families})" for f in TEXT_FORMATS.values())
        raise ConfigError(f"{who}: coords={name}: unknown text format; known: {known}")
    return TEXT_FORMATS[name]


def region_texts(fmt: TextFormat, regions: Sequence[Region], view: View) -> list[str]:
    """Each region written in ``fmt`` (regions already of a kind ``fmt`` writes)."""
    out = []
    for k, region in enumerate(regions):
        if region.kind not in fmt.kinds:
            raise RegionError(
                f"region {k}: {fmt.name} writes {', '.join(sorted(fmt.kinds))}, not {region.kind}"
            )
        out.append(fmt.write(region, view))
    return out


# A model type (config.json ``model_type``) or served model name -> its family's format.
# Longest patterns first: "qwen2.5-vl" must not match as "qwen2-vl" ("qwen2-vl" is no
# substring of it, but keep the order explicit).
_FAMILY_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"qwen2[._-]?5[._-]?vl"), "qwen2_5_vl"),
    (re.compile(r"qwen2[._-]?vl"), "qwen2_vl"),
    (re.compile(r"kosmos[._-]?2"), "kosmos2"),
    (re.compile(r"florence[._-]?2"), "florence2"),
    (re.compile(r"ferret"), "ferret"),
    (re.compile(r"shikra"), "shikra"),
    # LLaVA-1.5 only: config.json's model_type "llava" or a served "llava-1.5" / "llava-v1.5"
    # name (LLaVA-NeXT, OneVision... were not checked to share the format).
    (re.compile(r"^llava$|llava-v?1\.5"), "llava"),
)


def format_for_model(identifier: str) -> str | None:
    """The text format of the family ``identifier`` names (a ``model_type`` such as
    ``qwen2_5_vl`` or a served name such as ``Qwen/Qwen2-VL-7B-Instruct``), None if unknown.

    >>> format_for_model("Qwen/Qwen2.5-VL-7B-Instruct"), format_for_model("llava_next")
    ('qwen2_5_vl', None)
    """
    low = identifier.lower()
    for pattern, name in _FAMILY_PATTERNS:
        if pattern.search(low):
            return name
    return None


def no_format_error(who: str, identifier: str) -> ConfigError:
    """The one line for region=text on a model whose family has no known text convention."""
    known = ", ".join(f"{f.families} ({f.name})" for f in TEXT_FORMATS.values())
    return ConfigError(
        f"{who}: region=text: {identifier!r} has no known text convention for regions; "
        f"families with one: {known}; pass coords=NAME to choose one, or region=som / region=crop"
    )
