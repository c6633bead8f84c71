"""The GLaMM adapter end to end on a tiny random checkpoint in the official layout: text,
masks at the image's size with their phrases, box regions, bad input, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from evalkit.errors import EvalkitError
from evalkit.models import MODELS, build_adapter
from evalkit.models.glamm import generation
from evalkit.models.glamm.adapter import GLaMMAdapter, mask_outputs
from evalkit.models.glamm.generation import Job
from evalkit.outputs import check_masks
from evalkit.records import Prediction, Request
from evalkit.regions import Region
from tests.glamm_helpers import GCG_PROMPT, REGCAP_PROMPT, scene_image, write_checkpoint

REPO = Path(__file__).resolve().parents[1]
ANSWER = "<p> a red circle </p> [SEG] next to [SEG] ."


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("glamm-tiny-random")
    write_checkpoint(directory, seed=2)
    return directory


@pytest.fixture(scope="module")
def adapter(checkpoint: Path) -> GLaMMAdapter:
    built = build_adapter("glamm", {"path": str(checkpoint)})
    assert isinstance(built, GLaMMAdapter)
    return built


@pytest.fixture
def scripted(adapter: GLaMMAdapter, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The decoder's choices replaced by the ids of :data:`ANSWER` then EOS; everything else
    (hidden states, [SEG] states, SAM, RLE) runs for real."""
    tok = adapter.tokenizer
    script = [*tok.encode_text(ANSWER, add_bos=False), tok.eos_id]
    steps: dict[str, int] = {}

    def choose(logits: torch.Tensor, job: Job, gen: torch.Generator | None) -> int:
        k = steps.get(job.request.id, 0)
        steps[job.request.id] = k + 1
        return script[k]

    monkeypatch.setattr(generation, "choose_next", choose)
    yield script


def test_glamm_names_are_registered() -> None:
    assert {"glamm", "glamm-tiny"} <= set(MODELS.names())
    assert GLaMMAdapter.serves == {"generate", "token_logprobs", "masks"}
    assert GLaMMAdapter.region_kinds == {"box"}


def test_an_answer_with_masks_and_their_phrases(
    adapter: GLaMMAdapter, scripted: list[int], tmp_path: Path
) -> None:
    image = scene_image(tmp_path / "scene.png", width=90, height=70)
    request = Request("gcg/1", "gcg/1", str(image), GCG_PROMPT, [], {"max_new_tokens": 32, "masks": True})
    (pred,) = list(adapter.generate([request]))
    assert pred.error is None and pred.text == ANSWER
    assert pred.token_ids == scripted and pred.token_logprobs is None
    assert pred.prompt is not None and pred.prompt.endswith("corresponding parts of the answer. ASSISTANT:")
    assert pred.masks is not None and len(pred.masks) == 2
    first, second = pred.masks
    assert first.phrase == "a red circle" and first.span is not None
    assert ANSWER[first.span[0] : first.span[1]] == "a red circle"
    assert second.phrase is None and second.span == (ANSWER.index("[SEG] ."), ANSWER.index("[SEG] .") + 5)
    for m in pred.masks:
        assert m.rle["size"] == [70, 90]
        decoded = mask_utils.decode({"size": m.rle["size"], "counts": m.rle["counts"].encode()})
        assert decoded.shape == (70, 90) and set(np.unique(decoded)) <= {0, 1}
    check_masks(pred, 70, 90, tmp_path / "predictions.jsonl", "line 1")  # a predictions file takes them
    assert Prediction.from_json(pred.to_json()).masks == pred.masks


def test_masks_are_the_sam_logits_above_zero(
    adapter: GLaMMAdapter, scripted: list[int], tmp_path: Path
) -> None:
    image = scene_image(tmp_path / "scene.png", width=90, height=70)
    request = Request("gcg/1", "gcg/1", str(image), GCG_PROMPT, [], {"max_new_tokens": 32, "masks": True})
    (pred,) = list(adapter.generate([request]))
    model, tok = adapter.model, adapter.tokenizer
    prepared = adapter.prepare(str(image))
    with torch.no_grad():
        full = torch.tensor(tok.encode_prompt(pred.prompt or "") + scripted[:-1])
        hidden, _ = model(full, prepared.clip, None, tok.bbox_id)
        answer_start = len(full) - len(scripted[:-1]) + model.config.vision.clip.image_tokens - 1
        seg_at = [answer_start + k - 1 for k, t in enumerate(scripted) if t == tok.seg_id]
        embedding = model.encode_sam(prepared.sam[None])
        logits = model.masks(hidden[seg_at], embedding, prepared.resized, prepared.original)
    assert pred.masks is not None
    for m, expected in zip(pred.masks, logits, strict=True):
        got = mask_utils.decode({"size": m.rle["size"], "counts": m.rle["counts"].encode()})
        # Equal but where a logit is within float noise of 0 (cached vs full decoder pass).
        disagree = got != (expected > 0).numpy()
        assert bool((expected.abs().numpy()[disagree] < 1e-4).all())


def test_no_masks_unless_asked_and_logprobs_when_asked(
    adapter: GLaMMAdapter, scripted: list[int], tmp_path: Path
) -> None:
    image = scene_image(tmp_path / "scene.png")
    request = Request("r", "r", str(image), GCG_PROMPT, [], {"max_new_tokens": 32, "logprobs": True})
    (pred,) = list(adapter.generate([request]))
    assert pred.masks is None and pred.text == ANSWER
    assert pred.token_logprobs is not None and len(pred.token_logprobs) == len(pred.token_ids or [])
    assert all(lp <= 0 for lp in pred.token_logprobs)


def test_boxes_go_to_the_region_encoder_normalised(
    adapter: GLaMMAdapter, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    image = scene_image(tmp_path / "scene.png", width=90, height=70)
    seen: list[torch.Tensor] = []
    real = adapter.model.region_tokens

    def spy(maps: list[torch.Tensor], boxes: list[torch.Tensor]) -> list[torch.Tensor]:
        seen.extend(boxes)
        return real(maps, boxes)

    monkeypatch.setattr(adapter.model, "region_tokens", spy)
    region = Region.from_box([20, 10, 60, 40], 70, 90)
    request = Request("c", "c", str(image), REGCAP_PROMPT, [region], {"max_new_tokens": 3})
    (pred,) = list(adapter.generate([request]))
    assert pred.error is None and len(pred.token_ids or []) <= 3
    (boxes,) = seen
    assert torch.allclose(boxes, torch.tensor([[20 / 90, 10 / 70, 60 / 90, 40 / 70]]), atol=1e-7)
    assert pred.prompt is not None and "marked by <bbox>?" in pred.prompt


def test_bad_requests(adapter: GLaMMAdapter, tmp_path: Path) -> None:
    image = scene_image(tmp_path / "scene.png")
    region = Region.from_box([1, 1, 5, 5], 70, 90)
    with pytest.raises(EvalkitError, match="1 <region> placeholder\\(s\\) but 2 region\\(s\\)"):
        list(adapter.generate([Request("x", "x", str(image), REGCAP_PROMPT, [region, region], {})]))
    missing = Request("m", "m", str(tmp_path / "nope.png"), GCG_PROMPT, [], {"max_new_tokens": 2})
    (pred,) = list(adapter.generate([missing]))
    assert pred.error is not None and "nope.png" in pred.error


def test_mask_phrases_when_the_text_does_not_match_the_masks() -> None:
    rle = {"size": [2, 2], "counts": "04"}
    # An empty phrase grounds nothing: the [SEG] keeps its own span.
    (m,) = mask_outputs("<p></p> [SEG]", [rle])
    assert m.phrase is None and m.span == (8, 13)
    # Two masks but one [SEG] in the text: no phrase is guessed.
    assert [x.span for x in mask_outputs("<p>a</p> [SEG]", [rle, rle])] == [None, None]


@pytest.mark.slow
def test_evalkit_run_glamm_on_shapes_cls_gives_box_regions(checkpoint: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "evalkit",
        "run",
        "--model",
        "glamm",
        "--model-args",
        f"path={checkpoint}",
    ]
    command += ["--task", "shapes_cls", "--limit", "3", "--gen", "max_new_tokens=4", "--output", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all("<bbox>" in r["prompt"] for r in rows)
    results = json.loads((out / "results.json").read_text())
    assert results["model"] == "glamm" and results["n"] == 3
    # shapes regions are masks: the engine gave GLaMM their tight boxes and recorded it.
    assert all(r["meta"]["region_conversions"] == ["region 0: mask -> box"] for r in rows)


def test_a_batch_answers_as_one_request_at_a_time(
    checkpoint: Path, adapter: GLaMMAdapter, tmp_path: Path
) -> None:
    one_by_one = build_adapter("glamm", {"path": str(checkpoint), "batch_size": "1"})
    images = [scene_image(tmp_path / f"s{k}.png", width=90 - 10 * k, height=70, seed=k) for k in range(2)]
    region = Region.from_box([20, 10, 60, 40], 70, 90)
    generation_settings = {"max_new_tokens": 12, "masks": True, "logprobs": True}
    requests = [
        Request("a", "a", str(images[0]), GCG_PROMPT, [], generation_settings),
        Request("b", "b", str(images[1]), GCG_PROMPT, [], generation_settings),
        Request("c", "c", str(images[0]), REGCAP_PROMPT, [region], generation_settings),
    ]
    batched = {p.request_id: p for p in adapter.generate(requests)}
    single = {p.request_id: p for p in one_by_one.generate(requests)}
    assert set(batched) == {"a", "b", "c"}
    for rid, pred in single.items():
        assert batched[rid].token_ids == pred.token_ids and batched[rid].text == pred.text
        assert batched[rid].token_logprobs == pytest.approx(pred.token_logprobs, abs=1e-4)
        assert [m.phrase for m in batched[rid].masks or []] == [m.phrase for m in pred.masks or []]
