"""Osprey generation: the cascade path gives the naive path's tokens exactly."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from evalkit.models.osprey.adapter import OspreyAdapter, plan_batches
from evalkit.models.osprey.checkpoint import save_official
from evalkit.models.osprey.prompting import render_prompt
from evalkit.records import Request
from tests.osprey_helpers import (
    CLS_PROMPT,
    TWO_REGION_PROMPT,
    box_region,
    tiny_model,
    tiny_tokenizer,
    write_images,
)

MAX_NEW = 7


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, requests: list[Request]) -> Path:
    tok = tiny_tokenizer()
    model = tiny_model(tok)
    directory = tmp_path_factory.mktemp("tiny-osprey")
    tok.tokenizer.save(str(directory / "tok.json"))
    save_official(model, directory, directory / "tok.json")
    # Make </s> take the place of a token that some rows emit mid-answer, so that rows
    # stop at different steps.
    first = run(directory, requests, mode="cascade")
    n = len(first)
    for step in range(2, MAX_NEW):
        counts = Counter(v[step] for v in first.values())
        rare = [t for t, c in counts.items() if c < n and t != tok.eos_id]
        if rare:
            break
    with torch.no_grad():
        w = model.llm.lm_head.weight
        w[tok.eos_id] = 1.01 * w[rare[0]]
    save_official(model, directory, directory / "tok.json")
    return directory


@pytest.fixture(scope="module")
def requests(tmp_path_factory: pytest.TempPathFactory) -> list[Request]:
    sizes = [(48, 80), (96, 64), (70, 70)]
    paths = write_images(tmp_path_factory.mktemp("images"), sizes)
    out: list[Request] = []

    def add(k: int, prompt: str, regions: list, gen: dict | None = None) -> None:
        rid = f"r{len(out)}"
        out.append(
            Request(
                rid,
                rid,
                str(paths[k]),
                prompt,
                regions,
                gen or {"max_new_tokens": MAX_NEW, "temperature": 0.0},
            )
        )

    h, w = sizes[0]
    for box in [(0, 20, 0, 30), (10, 40, 30, 79), (0, 48, 0, 80)]:
        add(0, CLS_PROMPT, [box_region(h, w, *box)])
    add(0, "<image>\nIs there a red circle in the image?", [])
    h, w = sizes[1]
    add(1, CLS_PROMPT, [box_region(h, w, 0, 50, 0, 30)])
    add(1, TWO_REGION_PROMPT, [box_region(h, w, 0, 50, 0, 30), box_region(h, w, 60, 96, 10, 64)])
    add(1, CLS_PROMPT, [box_region(h, w, 60, 96, 10, 64)])
    add(1, CLS_PROMPT, [box_region(h, w, 60, 96, 10, 64)], {"max_new_tokens": 3, "temperature": 0.0})
    h, w = sizes[2]
    add(2, TWO_REGION_PROMPT, [box_region(h, w, 5, 30, 5, 30), box_region(h, w, 40, 70, 40, 70)])
    return out


def run(checkpoint: Path, requests: list[Request], **args: str | int) -> dict[str, list[int]]:
    adapter = OspreyAdapter("test", checkpoint, device="cpu", **args)  # type: ignore[arg-type]
    preds = list(adapter.generate(requests))
    assert sorted(p.request_id for p in preds) == sorted(r.id for r in requests)
    by_id = {r.id: r for r in requests}
    for p in preds:
        request = by_id[p.request_id]
        assert p.token_ids is not None and p.prompt == render_prompt(request.prompt)
        assert p.prompt.count("<mask><pos>") == len(request.regions)
        assert p.text == adapter.tokenizer.decode(p.token_ids)
    # The adapter copies each mask and keeps no full-resolution mask on the regions.
    assert not any("mask" in region._cache for r in requests for region in r.regions)
    return {p.request_id: list(p.token_ids or []) for p in preds}


@pytest.mark.slow
def test_cascade_path_is_token_identical_to_naive(checkpoint: Path, requests: list[Request]) -> None:
    naive = run(checkpoint, requests, mode="naive")
    eos = tiny_tokenizer().eos_id
    lengths = [len(v) for v in naive.values()]
    # The test means something only if some rows stop early and some run to the limit.
    assert any(v[-1] == eos and len(v) < MAX_NEW for v in naive.values()), naive
    assert MAX_NEW in lengths and len(naive["r7"]) <= 3
    for batch_size in (1, 3, 32):
        cascade = run(checkpoint, requests, mode="cascade", batch_size=batch_size)
        assert cascade == naive, f"batch_size={batch_size}"


def test_batches_group_requests_by_image(checkpoint: Path, requests: list[Request]) -> None:
    adapter = OspreyAdapter("test", checkpoint, device="cpu")
    jobs = [adapter.make_job(r) for r in requests]
    batches = plan_batches(jobs, 3)
    assert [[j.request.id for j in b] for b in batches] == [
        ["r0", "r1", "r2"],
        ["r3"],
        ["r4", "r5", "r6"],
        ["r7", "r8"],
    ]
    assert [len(b) for b in plan_batches(jobs, 32)] == [9]


def test_seeded_sampling_does_not_depend_on_batching(checkpoint: Path, requests: list[Request]) -> None:
    sampled = [
        Request(
            r.id,
            r.sample_id,
            r.image_path,
            r.prompt,
            r.regions,
            {"max_new_tokens": MAX_NEW, "temperature": 1.5, "seed": 3},
        )
        for r in requests
    ]
    one = run(checkpoint, sampled, batch_size=1)
    many = run(checkpoint, sampled, batch_size=32)
    assert one == many
    greedy = run(checkpoint, requests, batch_size=32)
    assert one != {k: v[: len(one[k])] for k, v in greedy.items()}  # it does sample


def test_region_count_must_match_placeholders(checkpoint: Path, requests: list[Request]) -> None:
    from evalkit.errors import EvalkitError

    adapter = OspreyAdapter("test", checkpoint, device="cpu")
    bad = Request("x", "x", requests[0].image_path, TWO_REGION_PROMPT, requests[0].regions, {})
    with pytest.raises(EvalkitError, match="2 <region> placeholder"):
        list(adapter.generate([bad]))
