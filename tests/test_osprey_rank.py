"""Likelihood ranking and token log-probabilities: the cascade path equals the naive path
(one full forward per choice) to 1e-5 in float32; multi-region prompts (1, 2, 10 regions)
decode token for token alike on both paths."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from evalkit.errors import ConfigError
from evalkit.models import Adapter, check_serves
from evalkit.models.osprey.adapter import OspreyAdapter
from evalkit.models.osprey.checkpoint import save_official
from evalkit.models.osprey.prompting import render_prompt
from evalkit.models.osprey.rank import choice_ids
from evalkit.records import Prediction, Request
from tests import osprey_helpers as helpers
from tests.osprey_helpers import CLS_PROMPT, TWO_REGION_PROMPT, box_region

CHOICES = ("red circle", "red square", "a", "house roof", "blue star", "red")
MAX_NEW = 6


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tok = helpers.tiny_tokenizer()
    model = helpers.tiny_model(tok, seed=1)
    with torch.no_grad():
        # Softer logits than tiny_model's (made for unambiguous greedy): per-token log p of a
        # few units, so 1e-5 is a test of the arithmetic, not of float32's last digit at -70.
        model.llm.lm_head.weight.mul_(0.1)
    directory = tmp_path_factory.mktemp("tiny-osprey-rank")
    tok.tokenizer.save(str(directory / "tok.json"))
    save_official(model, directory, directory / "tok.json")
    return directory


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return helpers.write_images(tmp_path_factory.mktemp("rank-images"), [(48, 80), (96, 64)], seed=3)


def _rank_requests(images: list[Path]) -> list[Request]:
    gen = {"max_new_tokens": MAX_NEW, "temperature": 0.0}
    out = []
    for k, (path, (h, w)) in enumerate(zip(images, [(48, 80), (96, 64)], strict=True)):
        for j, box in enumerate([(0, 20, 0, 30), (10, 40, 30, 60)]):
            rid = f"i{k}r{j}"
            out.append(Request(rid, rid, str(path), CLS_PROMPT, [box_region(h, w, *box)], gen, CHOICES))
    rid = "two"
    regions = [box_region(48, 80, 0, 20, 0, 30), box_region(48, 80, 20, 48, 40, 80)]
    out.append(Request(rid, rid, str(images[0]), TWO_REGION_PROMPT, regions, gen, CHOICES[:3]))
    return out


def _scores(checkpoint: Path, requests: list[Request], **args: str | int) -> dict[str, list[float]]:
    adapter = OspreyAdapter("test", checkpoint, device="cpu", **args)  # type: ignore[arg-type]
    preds = {p.request_id: p for p in adapter.generate(requests)}
    assert sorted(preds) == sorted(r.id for r in requests)
    out = {}
    for r in requests:
        p = preds[r.id]
        assert p.choice_logprobs is not None and p.choice_tokens is not None and p.text == ""
        assert len(p.choice_logprobs) == len(r.choices or ())
        out[r.id] = p.choice_logprobs
    return out


def test_the_choices_probe_what_the_test_claims() -> None:
    tok = helpers.tiny_tokenizer()
    ids = choice_ids(tok, render_prompt(CLS_PROMPT), CHOICES)
    assert len(ids[CHOICES.index("a")]) == 1  # a one-token choice
    assert ids[0][:3] == ids[1][:3] and ids[0] != ids[1]  # shared leading tokens
    assert ids[CHOICES.index("red")] == ids[0][:3]  # a choice that is another's prefix


def test_cascade_ranking_equals_one_forward_per_choice(checkpoint: Path, images: list[Path]) -> None:
    requests = _rank_requests(images)
    naive = _scores(checkpoint, requests, mode="naive")
    for batch_size in (1, 3, 32):
        cascade = _scores(checkpoint, requests, mode="cascade", batch_size=batch_size)
        for rid, values in naive.items():
            np.testing.assert_allclose(
                cascade[rid], values, atol=1e-5, rtol=0, err_msg=f"{rid} bs={batch_size}"
            )
    # The scores are sums of log p: negative, and a prefix choice scores at least its extension.
    flat = [v for values in naive.values() for v in values]
    assert all(v < 0 for v in flat)
    for values in naive.values():
        if len(values) == len(CHOICES):
            assert values[CHOICES.index("red")] >= values[0] and values[CHOICES.index("red")] >= values[1]


def test_ranking_restated_by_hand_for_one_choice(checkpoint: Path, images: list[Path]) -> None:
    """The naive path's arithmetic restated: prompt + choice, transformers' own forward."""
    request = _rank_requests(images)[0]
    adapter = OspreyAdapter("test", checkpoint, device="cpu", mode="naive")
    (pred,) = list(adapter.generate([request]))
    job = adapter.make_job(request)
    assert job.choice_ids is not None
    from evalkit.images import load_rgb
    from evalkit.models.osprey.preprocess import preprocess_image

    image = preprocess_image(load_rgb(str(images[0])), adapter.config.vision.image_size)
    mask = torch.from_numpy(np.ascontiguousarray(request.regions[0].to_mask(), dtype=np.uint8))
    ids = job.choice_ids[1]
    embeds = adapter.model.embed_inputs(
        torch.tensor(job.ids + ids)[None],
        image[None],
        [mask[None]],
        adapter.tokenizer.mask_id,
        adapter.tokenizer.pos_id,
    )
    with torch.no_grad():
        logits = adapter.model.llm(inputs_embeds=embeds).logits[0].float()
    total = 0.0
    n = embeds.shape[1]
    for j, tid in enumerate(ids):
        total += float(torch.log_softmax(logits[n - len(ids) - 1 + j], -1)[tid])
    assert pred.choice_logprobs is not None and pred.choice_tokens is not None
    assert abs(pred.choice_logprobs[1] - total) < 1e-5 and pred.choice_tokens[1] == len(ids)


def _generate(checkpoint: Path, requests: list[Request], **args: str | int) -> dict[str, Prediction]:
    adapter = OspreyAdapter("test", checkpoint, device="cpu", **args)  # type: ignore[arg-type]
    return {p.request_id: p for p in adapter.generate(requests)}


def _gen_requests(images: list[Path], n_regions: int, logprobs: bool = False) -> list[Request]:
    gen = {"max_new_tokens": MAX_NEW, "temperature": 0.0, **({"logprobs": True} if logprobs else {})}
    h, w = 96, 64
    boxes = [(6 * k, 6 * k + 20, (5 * k) % 40, (5 * k) % 40 + 24) for k in range(n_regions)]
    prompt = "<image>\nWhat are " + " and ".join(["<region>"] * n_regions) + "? Answer briefly."
    return [
        Request(f"n{n_regions}", "s", str(images[1]), prompt, [box_region(h, w, *b) for b in boxes], gen),
        Request(
            f"n{n_regions}b",
            "s",
            str(images[1]),
            prompt,
            [box_region(h, w, *b) for b in reversed(boxes)],
            gen,
        ),
    ]


@pytest.mark.parametrize("n_regions", [1, 2, 10])
def test_multi_region_prompts_decode_alike_on_both_paths(
    checkpoint: Path, images: list[Path], n_regions: int
) -> None:
    requests = _gen_requests(images, n_regions)
    naive = _generate(checkpoint, requests, mode="naive")
    cascade = _generate(checkpoint, requests, mode="cascade")
    for rid in naive:
        assert naive[rid].token_ids == cascade[rid].token_ids, rid
        assert naive[rid].prompt is not None and naive[rid].prompt.count("<mask><pos>") == n_regions  # type: ignore[union-attr]


def test_generated_token_logprobs_agree_and_only_when_asked(checkpoint: Path, images: list[Path]) -> None:
    asked = _gen_requests(images, 2, logprobs=True)
    naive = _generate(checkpoint, asked, mode="naive")
    cascade = _generate(checkpoint, asked, mode="cascade")
    for rid, p in naive.items():
        assert p.token_logprobs is not None and len(p.token_logprobs) == len(p.token_ids or [])
        np.testing.assert_allclose(cascade[rid].token_logprobs or [], p.token_logprobs, atol=1e-5, rtol=0)
        assert all(v <= 0 for v in p.token_logprobs)
    plain = _generate(checkpoint, _gen_requests(images, 2), mode="cascade")
    assert all(p.token_logprobs is None for p in plain.values())
    # Asking for log-probabilities changes no token.
    assert {k: p.token_ids for k, p in plain.items()} == {k: p.token_ids for k, p in cascade.items()}


def test_ranking_and_generation_in_one_batch_answer_as_apart(checkpoint: Path, images: list[Path]) -> None:
    ranked, generated = _rank_requests(images), _gen_requests(images, 2)
    together = _generate(checkpoint, ranked + generated, mode="cascade")
    alone = _generate(checkpoint, generated, mode="cascade")
    for rid, p in alone.items():
        assert together[rid].token_ids == p.token_ids
    scores = _scores(checkpoint, ranked, mode="cascade")
    for rid, values in scores.items():
        np.testing.assert_allclose(together[rid].choice_logprobs or [], values, atol=1e-6, rtol=0)


def test_a_request_the_adapter_cannot_serve_is_refused_before_model_work() -> None:
    class TextOnly(Adapter):
        name = "text-only"

        def fingerprint(self) -> dict[str, str]:
            return {}

        def generate(self, requests: Sequence[Request]) -> Iterator[Prediction]:
            raise AssertionError("never reached")

    rank = Request("r", "r", None, "<image>\nWhat is it?", [], {}, ("cat", "dog"))
    with pytest.raises(
        ConfigError, match="cannot serve task t: it needs rank but the adapter serves only generate"
    ):
        check_serves(TextOnly(), [rank], "t")
    logp = Request("g", "g", None, "<image>\nWhat is it?", [], {"logprobs": True})
    with pytest.raises(ConfigError, match="needs token_logprobs"):
        check_serves(TextOnly(), [logp], "t")
    check_serves(TextOnly(), [Request("p", "p", None, "x", [], {})], "t")


def test_a_ranking_request_keys_on_its_choices_and_a_generation_request_is_unchanged() -> None:
    plain = Request("r", "r", None, "x", [], {"temperature": 0.0})
    assert "choices" not in plain.payload()  # store keys of every existing run unchanged
    a = Request("r", "r", None, "x", [], {"temperature": 0.0}, ("cat", "dog"))
    b = Request("r", "r", None, "x", [], {"temperature": 0.0}, ("dog", "cat"))
    assert a.payload_digest() != b.payload_digest() != plain.payload_digest()
    pred = Prediction("r", "", choice_logprobs=[-1.5, -2.0], choice_tokens=[1, 2], token_logprobs=None)
    assert Prediction.from_json(pred.to_json()) == pred
