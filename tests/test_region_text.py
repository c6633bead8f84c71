"""Regions written as text: each family's format on hand-checked boxes, the grid arithmetic
against the reference implementations transformers ships, and the api adapter's region=text."""

from __future__ import annotations

import base64
import io
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evalkit.errors import ConfigError
from evalkit.models import build_adapter
from evalkit.models.region_text import (
    TEXT_FORMATS,
    View,
    fill_regions,
    format_for_model,
    no_format_error,
    region_texts,
    split_image,
    text_format,
)
from evalkit.records import Request
from evalkit.regions import Region, RegionError, grids
from tests.fake_openai import FakeOpenAI, images_of, text_of
from tests.judged_helpers import FAST_API, KEY, judge_env  # noqa: F401 - fixture

BOX = Region.from_box([100, 50, 300, 150], 480, 640)  # on a 640x480 image
POINT = Region.from_points([[320, 240]], 480, 640)
VIEW = View(640, 480)

# Hand-computed for BOX on 640x480:
#   [0,1000) ints: 100/640*1000 = 156.25, 50/480*1000 = 104.2, 300/640 -> 468.75, 150/480 -> 312.5
#   padded square (side 640, y + 80): 100/640 = .15625, 130/640 = .203125, .46875, 230/640 = .359375
#   Qwen2.5-VL resize 480x640 -> 476x644: 100*644/640 = 100.6, 50*476/480 = 49.6, 301.9, 148.75
#   Kosmos-2 (32 cells): ul = floor(.15625*32) + 32 floor(.1042*32) = 5 + 96; lr = 14 + 32*9
EXPECTED_BOX = {
    "llava": "[0.16, 0.2, 0.47, 0.36]",
    "qwen2_vl": "<|box_start|>(156,104),(468,312)<|box_end|>",
    "qwen2_5_vl": '{"bbox_2d": [101, 50, 302, 149]}',
    "ferret": "[156, 104, 468, 312]",
    "shikra": "[0.156,0.203,0.469,0.359]",
    "kosmos2": "<phrase>the region</phrase><object><patch_index_0101><patch_index_0302></object>",
    "florence2": "<loc_156><loc_104><loc_468><loc_312>",
}
EXPECTED_POINT = {
    "qwen2_5_vl": '{"point_2d": [322, 238]}',
    "ferret": "[500, 500]",
    "shikra": "[0.500,0.500]",
    "florence2": "<loc_500><loc_500>",
}


@pytest.mark.parametrize("name", sorted(EXPECTED_BOX))
def test_each_format_writes_a_box_as_its_family_reads_it(name: str) -> None:
    assert region_texts(TEXT_FORMATS[name], [BOX], VIEW) == [EXPECTED_BOX[name]]


@pytest.mark.parametrize("name", sorted(EXPECTED_POINT))
def test_point_formats(name: str) -> None:
    assert region_texts(TEXT_FORMATS[name], [POINT], VIEW) == [EXPECTED_POINT[name]]


def test_box_only_formats_refuse_points_and_formats_cover_every_family() -> None:
    assert set(TEXT_FORMATS) == set(EXPECTED_BOX)
    for name in ("llava", "qwen2_vl", "kosmos2"):
        with pytest.raises(RegionError, match="writes box, not points"):
            region_texts(TEXT_FORMATS[name], [POINT], VIEW)
    two = Region.from_points([[1, 1], [5, 5]], 480, 640)
    with pytest.raises(RegionError, match="one point per region"):
        region_texts(TEXT_FORMATS["ferret"], [two], VIEW)


def test_prompt_rewriting() -> None:
    assert split_image("<image>.\nWhat is <region>?") == ("", "What is <region>?")
    assert split_image("Look: <image>\nnow <image>\nthis") == ("Look: ", "now this")
    assert split_image("no image here") is None
    assert fill_regions("<region> left of <region>", ["A", "B"]) == "A left of B"
    with pytest.raises(ConfigError, match="2 <region> placeholders for 1"):
        fill_regions("<region> and <region>", ["A"])


def test_family_names_and_the_one_line_for_a_family_without_a_format() -> None:
    assert format_for_model("qwen2_vl") == "qwen2_vl"
    assert format_for_model("Qwen/Qwen2-VL-7B-Instruct") == "qwen2_vl"
    assert format_for_model("qwen2_5_vl") == format_for_model("Qwen/Qwen2.5-VL-3B-Instruct") == "qwen2_5_vl"
    assert format_for_model("kosmos-2") == "kosmos2" and format_for_model("llava") == "llava"
    assert format_for_model("llava-hf/llava-1.5-7b-hf") == "llava"
    assert format_for_model("llava_next") is None and format_for_model("gpt-4o") is None
    message = str(no_format_error("hf-vlm", "idefics3"))
    assert "\n" not in message and "'idefics3' has no known text convention" in message
    for fmt in TEXT_FORMATS.values():
        assert f"{fmt.families} ({fmt.name})" in message
    with pytest.raises(ConfigError, match="coords=nope: unknown text format; known: llava"):
        text_format("nope", "api")


# ---------------------------------------------------------------------- the references
def test_qwen_smart_resize_equals_transformers() -> None:
    # the PIL backend's copy: the default module imports torchvision
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    rng = random.Random(0)
    sizes = [(480, 640), (28, 28), (10, 2000), (4000, 3000), (333, 517)]
    sizes += [(rng.randint(10, 3000), rng.randint(10, 3000)) for _ in range(200)]
    for h, w in sizes:
        if max(h, w) / min(h, w) > 200:
            continue
        for lo, hi in ((grids.QWEN_MIN_PIXELS, grids.QWEN_MAX_PIXELS), (28 * 28, 56 * 56)):
            assert grids.qwen_smart_resize(h, w, 28, lo, hi) == smart_resize(h, w, 28, lo, hi), (h, w)


def test_kosmos2_patch_indices_equal_transformers() -> None:
    from transformers.models.kosmos2.processing_kosmos2 import coordinate_to_patch_index

    rng = random.Random(1)
    for _ in range(500):
        w, h = rng.randint(20, 900), rng.randint(20, 900)
        x1, y1 = rng.uniform(0, w - 2), rng.uniform(0, h - 2)
        x2, y2 = rng.uniform(x1 + 1, w), rng.uniform(y1 + 1, h)
        ref = coordinate_to_patch_index((x1 / w, y1 / h, x2 / w, y2 / h), 32)
        assert grids.kosmos2_patch_indices([x1, y1, x2, y2], w, h) == ref


def test_florence2_bins_equal_transformers() -> None:
    import torch
    from transformers.models.florence2.processing_florence2 import Florence2PostProcessor

    post = Florence2PostProcessor.__new__(Florence2PostProcessor)
    post.quantize_bins = (1000, 1000)
    rng = random.Random(2)
    for _ in range(300):
        w, h = rng.randint(20, 2000), rng.randint(20, 2000)
        box = [
            float(rng.randint(0, w)),
            float(rng.randint(0, h)),
            float(rng.randint(0, w)),
            float(rng.randint(0, h)),
        ]
        ref = post.quantize(torch.tensor([box], dtype=torch.float64), (w, h))[0].tolist()
        assert list(grids.florence2_bins(box, w, h)) == ref, (box, w, h)


# ---------------------------------------------------------------------- the api adapter
def _image(path: Path) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path)
    return path


def test_api_region_text_needs_a_known_family_and_keeps_som_keys() -> None:
    som = build_adapter("api", {"base_url": "http://127.0.0.1:9/v1", "model": "m", "cache": "off"})
    assert set(som.fingerprint()) == {"base_url", "model", "render", "detail"}  # unchanged keys
    with pytest.raises(ConfigError, match="'gpt-4o' has no known text convention"):
        build_adapter("api", {"base_url": "http://x/v1", "model": "gpt-4o", "region": "text"})
    with pytest.raises(ConfigError, match="coords= applies to region=text"):
        build_adapter("api", {"base_url": "http://x/v1", "model": "m", "coords": "ferret"})
    forced = build_adapter(
        "api",
        {"base_url": "http://x/v1", "model": "gpt-4o", "region": "text", "coords": "ferret", "cache": "off"},
    )
    assert forced.fingerprint()["coords"] == "ferret" and "render" not in forced.fingerprint()
    assert forced.region_kinds == frozenset({"box", "points"})


@pytest.mark.usefixtures("judge_env")
def test_api_region_text_sends_coordinates_and_the_unmarked_image(tmp_path: Path) -> None:
    image = _image(tmp_path / "img.png")
    box = Region.from_box([8, 4, 40, 30], 48, 64)
    request = Request("r0", "r0", str(image), "<image>\nWhat is <region>?", [box], {"max_new_tokens": 8})
    with FakeOpenAI(fault_rate=0.0, api_key=KEY) as srv:
        args = {"base_url": srv.url, "model": "Qwen/Qwen2-VL-7B-Instruct", "region": "text", "cache": "off"}
        adapter = build_adapter("api", {**args, **dict(kv.split("=") for kv in FAST_API.split(","))})
        (prediction,) = list(adapter.generate([request]))
        (body,) = srv.bodies
    # 8/64*1000 = 125, 4/48*1000 = 83.3, 40/64 -> 625, 30/48 -> 625
    assert text_of(body["messages"]) == "What is <|box_start|>(125,83),(625,625)<|box_end|>?"
    (sent,) = images_of(body["messages"])
    png = base64.b64decode(sent["url"].split(",", 1)[1])
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), np.asarray(Image.open(image)))
    assert prediction.meta["region_encoding"] == "text" and prediction.meta["coords"] == "qwen2_vl"
    assert prediction.prompt == "What is <|box_start|>(125,83),(625,625)<|box_end|>?"
