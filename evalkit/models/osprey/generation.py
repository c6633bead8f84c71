"""What both generation paths share: requests as :class:`Job` s, their results, and the
choice of the next token (greedy, or seeded temperature / top-k / top-p sampling per row).

The two paths: :mod:`evalkit.models.osprey.generate_naive` (the reference loop, one
``generate`` per request) and :mod:`evalkit.models.osprey.generate_cascade` (many requests
decoded together over shared prefixes); greedy outputs of the two are token-identical
(tested).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from evalkit.records import Request

# transformers' generate() defaults (top_k=50, top_p=1.0): what the released eval scripts
# sampled with when a checkpoint's generation_config.json does not say otherwise.
GENERATE_DEFAULT_TOP_K = 50
GENERATE_DEFAULT_TOP_P = 1.0


@dataclass
class Job:
    """One request, tokenised, with its image and region keys."""

    request: Request
    rendered: str
    ids: list[int]
    image_key: str
    region_keys: list[str]
    max_new_tokens: int
    temperature: float
    seed: int
    # A ranking request: each choice's token ids, teacher-forced after the prompt.
    choice_ids: list[list[int]] | None = None
    want_logprobs: bool = False  # generation: also the generated tokens' log p


@dataclass
class SamplingSettings:
    """Sampling filters; the defaults are transformers' ``generate()`` defaults, which the
    released eval scripts ran with (Osprey deb0e57, ``osprey/eval/*.py``)."""

    top_k: int = GENERATE_DEFAULT_TOP_K
    top_p: float = GENERATE_DEFAULT_TOP_P


@dataclass
class Finished:
    job: Job
    token_ids: list[int]
    token_logprobs: list[float] | None = None
    choice_logprobs: list[float] | None = None  # ranking: summed log p per choice


def region_key(rle: dict[str, Any] | None, fallback: str) -> str:
    if rle is None:
        return fallback
    return hashlib.sha1(f"{rle['size']}|{rle['counts']}".encode()).hexdigest()


def choose_next(
    logits: torch.Tensor,
    jobs: Sequence[Job],
    generators: Sequence[torch.Generator | None],
    sampling: SamplingSettings,
) -> torch.Tensor:
    """Greedy for rows with temperature 0; else temperature, top-k, top-p, seeded per row."""
    out = logits.argmax(dim=-1)
    for row, (job, gen) in enumerate(zip(jobs, generators, strict=True)):
        if job.temperature <= 0 or gen is None:
            continue
        scores = logits[row].float() / job.temperature
        if sampling.top_k > 0:
            kth = torch.topk(scores, min(sampling.top_k, scores.numel())).values[-1]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if sampling.top_p < 1.0:
            sorted_scores, order = torch.sort(scores, descending=False)
            cumulative = sorted_scores.softmax(-1).cumsum(-1)
            drop = cumulative <= (1 - sampling.top_p)
            drop[-1] = False
            scores = scores.masked_fill(drop.scatter(0, order, drop), float("-inf"))
        probs = scores.softmax(-1).cpu()
        out[row] = int(torch.multinomial(probs, 1, generator=gen).item())
    return out


def row_generator(job: Job) -> torch.Generator | None:
    """Sampling depends only on (seed, request id), never on how requests were batched."""
    if job.temperature <= 0:
        return None
    digest = hashlib.sha256(f"{job.seed}|{job.request.id}".encode()).digest()
    gen = torch.Generator()
    gen.manual_seed(int.from_bytes(digest[:8], "little"))
    return gen
