"""The hf-vlm adapter on tiny random LLaVA and Qwen2-VL checkpoints built offline
(tests/hf_vlm_helpers.py): region encodings on hand-checked boxes, batched greedy outputs equal
to one request at a time in float32, per-request stopping, log-probs and ranking scores equal
to a manual forward, the one-line errors, and evalkit run end to end on shapes_cls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from evalkit.engine.generate import adapt_regions
from evalkit.errors import ConfigError
from evalkit.models import build_adapter
from evalkit.models.hf_vlm.adapter import HfVlmAdapter
from evalkit.models.hf_vlm.generation import choice_suffix, model_inputs
from evalkit.records import Prediction, Request
from evalkit.regions import Region
from evalkit.render import draw_marks
from tests.hf_vlm_helpers import build_tiny_llava, build_tiny_qwen2_vl

REPO = Path(__file__).resolve().parents[1]
CLS = "<image>\nThis provides an overview of the picture.\nWhat is the category of <region>? Using only one word or phrase."
BOX = [8, 4, 40, 30]  # on the 64x48 image


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf_vlm")
    return {
        "llava": build_tiny_llava(root / "llava"),
        "qwen2_vl": build_tiny_qwen2_vl(root / "qwen2_vl"),
    }


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("hf_vlm_images")
    rng = np.random.default_rng(0)
    out = []
    for k, (h, w) in enumerate([(48, 64), (40, 40), (70, 50)]):
        path = root / f"img{k}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        out.append(path)
    return out


def adapter(path: Path, **args: str) -> HfVlmAdapter:
    built = build_adapter("hf-vlm", {"path": str(path), **args})
    assert isinstance(built, HfVlmAdapter)
    return built


def requests(images: Sequence[Path], logprobs: bool = False) -> list[Request]:
    """Prompts of different lengths over images of different sizes (left padding differs)."""
    out = []
    for k, image in enumerate([*images, *images]):
        with Image.open(image) as img:
            w, h = img.size
        region = Region.from_box([2 + k, 3, w - 5, h - 2 - k], h, w)
        prompt = CLS + " Answer now." * k
        gen: dict[str, Any] = {"max_new_tokens": 5 + k % 3, "temperature": 0.0, "logprobs": logprobs}
        out.append(Request(f"r{k}", f"r{k}", str(image), prompt, [region], gen))
    return out


def by_id(predictions: Sequence[Prediction]) -> dict[str, Prediction]:
    assert all(p.error is None for p in predictions)
    return {p.request_id: p for p in predictions}


# ---------------------------------------------------------------------- encodings
def test_crop_sends_the_widened_box_and_records_it(checkpoints: dict[str, Path], images: list[Path]) -> None:
    model = adapter(checkpoints["llava"], region="crop", margin="0.25")
    region = Region.from_box(BOX, 48, 64)
    job = model.make_job(Request("c", "c", str(images[0]), CLS, [region], {}))
    # dx = 0.25 * 32 = 8, dy = 0.25 * 26 = 6.5: x 8-8=0 .. 40+8=48, y floor(4-6.5)->0 .. ceil(36.5)=37
    assert job.encoded.meta == {"region_encoding": "crop", "crop_box": [0, 0, 48, 37], "crop_margin": 0.25}
    assert job.encoded.image is not None and job.encoded.image.size == (48, 37)
    original = np.asarray(Image.open(images[0]).convert("RGB"))
    assert np.array_equal(np.asarray(job.encoded.image), original[0:37, 0:48])
    assert job.rendered == (
        "USER: <image>\nThis provides an overview of the picture.\nWhat is the category of the object in "
        "the image? Using only one word or phrase. ASSISTANT:"
    )
    assert model.region_kinds == frozenset({"mask", "box"}) and model.fingerprint()["margin"] == 0.25
    two = Request("t", "t", str(images[0]), "<region> or <region>?", [region, region], {})
    with pytest.raises(ConfigError, match="region=crop shows one region per request, this one has 2"):
        model.make_job(two)


def test_som_draws_the_marks_like_the_api_adapter(checkpoints: dict[str, Path], images: list[Path]) -> None:
    model = adapter(checkpoints["llava"], region="som")
    regions = [Region.from_box(BOX, 48, 64), Region.from_points([[50, 40]], 48, 64)]
    job = model.make_job(
        Request("s", "s", str(images[0]), "<image>\nIs <region> left of <region>?", regions, {})
    )
    expected = draw_marks(Image.open(images[0]).convert("RGB"), regions)
    assert job.encoded.image is not None and np.array_equal(
        np.asarray(job.encoded.image), np.asarray(expected)
    )
    assert job.rendered == "USER: <image>\nIs region 1 left of region 2? ASSISTANT:"
    assert job.encoded.meta == {"region_encoding": "som", "render": "som-1"}


def test_text_writes_the_family_coordinates(checkpoints: dict[str, Path], images: list[Path]) -> None:
    qwen = adapter(checkpoints["qwen2_vl"])  # auto: Qwen2-VL has a text format
    assert (qwen.encoding, qwen.region_kinds) == ("text", frozenset({"box"}))
    mask = np.zeros((48, 64), dtype=np.uint8)
    mask[4:30, 8:40] = 1  # tight box [8, 4, 40, 30]
    request = Request("q", "q", str(images[0]), CLS, [Region.from_mask(mask)], {})
    adapted, notes = adapt_regions(qwen, request)  # the engine converts the mask to its box
    assert notes == ["region 0: mask -> box"]
    job = qwen.make_job(adapted)
    # 8/64*1000 = 125, 4/48*1000 = 83.3, 40/64 -> 625, 30/48 -> 625
    assert job.rendered == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>This provides an overview of the picture.\n"
        "What is the category of <|box_start|>(125,83),(625,625)<|box_end|>? Using only one word or "
        "phrase.<|im_end|>\n<|im_start|>assistant\n"
    )
    assert job.encoded.image is not None and job.encoded.image.size == (64, 48)  # as it is
    assert job.encoded.meta == {"region_encoding": "text", "coords": "qwen2_vl"}
    fp = qwen.fingerprint()
    assert fp["coords"] == "qwen2_vl" and fp["trust_remote_code"] is False
    assert fp["processor"] == "Qwen2VLProcessor without its video processor"
    # LLaVA-1.5's own format: padded square (side 64, y + 8): 8/64 = .125, 12/64 = .1875, .625, .59375
    llava = adapter(checkpoints["llava"], region="text")
    job = llava.make_job(Request("l", "l", str(images[0]), CLS, [Region.from_box(BOX, 48, 64)], {}))
    assert "What is the category of [0.12, 0.19, 0.62, 0.59]? Using" in job.rendered
    ferret = adapter(checkpoints["llava"], region="text", coords="ferret")
    job = ferret.make_job(Request("f", "f", str(images[0]), CLS, [Region.from_box(BOX, 48, 64)], {}))
    assert "What is the category of [125, 83, 625, 625]? Using" in job.rendered


def test_a_family_without_a_text_format_fails_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "idefics3"}))
    with pytest.raises(ConfigError) as err:
        build_adapter("hf-vlm", {"path": str(folder), "region": "text"})
    message = str(err.value)
    assert "\n" not in message and "'idefics3' has no known text convention for regions" in message
    assert "Qwen2-VL (qwen2_vl)" in message and "Qwen2.5-VL (qwen2_5_vl)" in message
    with pytest.raises(ConfigError, match="unknown model args"):
        build_adapter("hf-vlm", {"path": str(folder), "regions": "som"})
    with pytest.raises(ConfigError, match="is not a folder"):
        build_adapter("hf-vlm", {"path": str(tmp_path / "missing")})


# ---------------------------------------------------------------------- generation
@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_batched_greedy_equals_one_request_at_a_time(
    family: str, checkpoints: dict[str, Path], images: list[Path]
) -> None:
    reqs = requests(images, logprobs=True)
    batched = by_id(list(adapter(checkpoints[family], batch_size="6").generate(reqs)))
    single = by_id(list(adapter(checkpoints[family], batch_size="1").generate(reqs)))
    assert set(batched) == {r.id for r in reqs}
    for rid, one in single.items():
        assert batched[rid].token_ids == one.token_ids and batched[rid].text == one.text
        assert np.allclose(batched[rid].token_logprobs or [], one.token_logprobs or [], atol=1e-4)
    for r in reqs:  # each row stopped at its own max_new_tokens (no EOS in these)
        assert len(single[r.id].token_ids or []) == r.generation["max_new_tokens"]


def test_each_row_stops_at_its_first_eos(checkpoints: dict[str, Path], images: list[Path]) -> None:
    model = adapter(checkpoints["llava"], batch_size="6")
    reqs = requests(images)
    first = by_id(list(model.generate(reqs)))
    stop = (first["r0"].token_ids or [])[2]  # make r0's third token the end of sequence
    model.loaded.model.generation_config.eos_token_id = stop
    batched = by_id(list(model.generate(reqs)))
    for r in reqs:
        free = first[r.id].token_ids or []
        cut = free[: free.index(stop) + 1] if stop in free else free
        assert batched[r.id].token_ids == cut
    assert batched["r0"].token_ids == (first["r0"].token_ids or [])[:3]


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_token_logprobs_equal_a_teacher_forced_forward(
    family: str, checkpoints: dict[str, Path], images: list[Path]
) -> None:
    model = adapter(checkpoints[family], batch_size="6")
    reqs = requests(images, logprobs=True)[:3]
    got = by_id(list(model.generate(reqs)))
    lm, processor = model.loaded.model, model.loaded.processor
    for request in reqs:
        job = model.make_job(request)
        tokens = got[request.id].token_ids or []
        inputs = model_inputs(
            lm, processor, [job.rendered], [job.encoded.image], job.add_special_tokens, "left"
        )
        n = inputs["input_ids"].shape[1]
        inputs["input_ids"] = torch.cat([inputs["input_ids"], torch.tensor([tokens])], dim=1)
        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
        if "mm_token_type_ids" in inputs:
            inputs["mm_token_type_ids"] = torch.cat(
                [inputs["mm_token_type_ids"], torch.zeros(1, len(tokens), dtype=torch.long)], dim=1
            )
        with torch.no_grad():
            logp = lm(**inputs).logits[0].float().log_softmax(-1)
        manual = [float(logp[n - 1 + k, t]) for k, t in enumerate(tokens)]
        assert np.allclose(got[request.id].token_logprobs or [], manual, atol=1e-4)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_choice_scores_equal_a_manual_forward_per_choice(
    family: str, checkpoints: dict[str, Path], images: list[Path]
) -> None:
    model = adapter(checkpoints[family], batch_size="2")  # 3 choices: two forwards, one padded
    choices = ("red circle", "blue square triangle", "house")
    region = Region.from_box(BOX, 48, 64)
    request = Request("k", "k", str(images[0]), CLS, [region], {}, choices=choices)
    (got,) = list(model.generate([request]))
    assert got.text == "" and got.meta["region_encoding"] == model.encoding
    lm, processor = model.loaded.model, model.loaded.processor
    job = model.make_job(request)
    image = [job.encoded.image]
    prompt = model_inputs(lm, processor, [job.rendered], image, job.add_special_tokens, "right")["input_ids"]
    manual, counts = [], []
    for choice in choices:
        suffix = choice_suffix(processor, job, choice)
        inputs = model_inputs(lm, processor, [job.rendered + suffix], image, job.add_special_tokens, "right")
        ids = inputs["input_ids"][0]
        assert torch.equal(ids[: prompt.shape[1]], prompt[0])
        with torch.no_grad():
            logp = lm(**inputs).logits[0].float().log_softmax(-1)
        n = prompt.shape[1]
        manual.append(sum(float(logp[n - 1 + k, t]) for k, t in enumerate(ids[n:].tolist())))
        counts.append(len(ids) - n)
    assert np.allclose(got.choice_logprobs or [], manual, atol=1e-5)
    assert got.choice_tokens == counts and all(c >= 1 for c in counts)
    if family == "llava":  # LLaVA's answer turn follows "ASSISTANT:" after a space
        assert choice_suffix(processor, job, "house") == " house"


# ---------------------------------------------------------------------- end to end
@pytest.mark.slow
@pytest.mark.parametrize("region", ["text", "crop", "som"])
def test_evalkit_run_on_shapes_cls(region: str, checkpoints: dict[str, Path], tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "run"
    args = f"path={checkpoints['llava']},region={region},batch_size=4"
    proc = subprocess.run(
        [sys.executable, "-m", "evalkit", "run", "--model", "hf-vlm", "--model-args", args]
        + ["--task", "shapes_cls", "--limit", "6", "--output", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    for row in rows:
        assert row["meta"]["region_encoding"] == region and row["token_ids"]
        assert row["prompt"].startswith("USER: <image>\n") and row["prompt"].endswith("ASSISTANT:")
        assert "<region>" not in row["prompt"]
    if region == "text":
        assert all(row["meta"]["coords"] == "llava" for row in rows)
        assert all(row["meta"]["region_conversions"] == ["region 0: mask -> box"] for row in rows)
    if region == "crop":
        assert all(len(row["meta"]["crop_box"]) == 4 for row in rows)
    results = json.loads((out / "results.json").read_text())
    assert results["n"] == 6 and set(results["metrics"]) >= {"ss", "s_iou"}
    adapter_fp = results["provenance"]["adapter"]
    assert adapter_fp["region"] == region and adapter_fp["trust_remote_code"] is False
