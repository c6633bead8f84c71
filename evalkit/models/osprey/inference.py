"""Generation with Osprey: the pieces both paths share, and the naive reference loop.

Shared: requests as :class:`Job` s, image and region encoding per batch
(:func:`encode_batch`), a request's input sequence as position entries (text token, image
token, region token) and their embeddings (:func:`embed_rows`, the official splicing), and
next-token choice (greedy, or seeded temperature / top-k / top-p sampling per row).

The naive path (:func:`generate_naive`) is the official loop: one ``generate`` per request
with the image re-encoded every call. The fast path is :mod:`evalkit.models.osprey.batched`;
greedy outputs of the two are token-identical (tested).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from evalkit.models.osprey.mask_extractor import PreparedMasks, prepare_masks
from evalkit.models.osprey.modeling import OspreyModel
from evalkit.models.osprey.prompting import IMAGE_SENTINEL, OspreyTokenizer
from evalkit.records import Request

# Position entry kinds: a text token id, the j-th image token, a region's mask / pos token.
TEXT, IMAGE, MASK, POS = 0, 1, 2, 3


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


@dataclass
class SamplingSettings:
    top_k: int = 50  # transformers' generate() defaults, which the released scripts used
    top_p: float = 1.0


@dataclass
class Encoded:
    """Vision outputs of the images of one batch."""

    image_tokens: torch.Tensor  # [n_images, N, hidden]
    mask_tokens: torch.Tensor  # [Q, hidden] float32
    pos_tokens: torch.Tensor  # [Q, hidden] float32
    image_row: dict[str, int]
    region_row: dict[tuple[str, str], int]


@dataclass
class Finished:
    job: Job
    token_ids: list[int]


# ---------------------------------------------------------------------- shared pieces
def region_key(rle: dict[str, Any] | None, fallback: str) -> str:
    if rle is None:
        return fallback
    return hashlib.sha1(f"{rle['size']}|{rle['counts']}".encode()).hexdigest()


def encode_batch(
    model: OspreyModel,
    images: dict[str, torch.Tensor],
    regions: dict[str, dict[str, torch.Tensor]],
) -> Encoded:
    """``images``: key -> preprocessed ``[3, S, S]``; ``regions``: key -> {region key: mask}."""
    keys = list(images)
    pixel = torch.stack([images[k] for k in keys])
    image_tokens, feats = model.encode_images(pixel)
    prepared: list[PreparedMasks] = []
    index: list[int] = []
    region_row: dict[tuple[str, str], int] = {}
    for row, key in enumerate(keys):
        masks = regions.get(key, {})
        if not masks:
            continue
        names = list(masks)
        stacked = torch.stack([masks[n] for n in names])
        prepared.append(prepare_masks(stacked, model.level_sizes(), model.config.vision.mask_shape))
        for name in names:
            region_row[(key, name)] = len(index)
            index.append(row)
    hidden = model.config.hidden_size
    if prepared:
        mask_tokens, pos_tokens = model.region_tokens(
            feats, torch.tensor(index, dtype=torch.long), PreparedMasks.cat(prepared)
        )
    else:
        mask_tokens = pos_tokens = torch.zeros(0, hidden, device=model.device)
    return Encoded(image_tokens, mask_tokens, pos_tokens, {k: i for i, k in enumerate(keys)}, region_row)


def position_entries(job: Job, tokenizer: OspreyTokenizer, n_image_tokens: int) -> list[tuple[int, int]]:
    """The job's input sequence as (kind, value) per position; image and regions expanded."""
    out: list[tuple[int, int]] = []
    region = 0
    for tid in job.ids:
        if tid == IMAGE_SENTINEL:
            out.extend((IMAGE, j) for j in range(n_image_tokens))
        elif tid == tokenizer.mask_id:
            out.append((MASK, region))
        elif tid == tokenizer.pos_id:
            out.append((POS, region))
            region += 1
        else:
            out.append((TEXT, tid))
    return out


Entries = Sequence[tuple[int, int]]


def embed_rows(
    model: OspreyModel, rows: Sequence[tuple[Entries, Job]], enc: Encoded
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded input embeddings ``[N, L, hidden]`` of ``rows`` and which are real.

    The official splicing: text ids through the embedding table, ``<image>`` expanded to
    the projected image tokens, ``<mask>``/``<pos>`` replaced by the region's tokens.
    """
    width = max((len(e) for e, _ in rows), default=0)
    hidden = model.config.hidden_size
    device = model.device
    out = torch.zeros(len(rows) * width, hidden, dtype=model.llm_dtype, device=device)
    valid = torch.zeros(len(rows), width, dtype=torch.bool)
    # (flat positions, source indices) per kind
    where: dict[int, tuple[list[int], list[int]]] = {k: ([], []) for k in (TEXT, IMAGE, MASK, POS)}
    n_image = enc.image_tokens.shape[1]
    for r, (entries, job) in enumerate(rows):
        start = r * width + width - len(entries)
        valid[r, width - len(entries) :] = True
        image_base = enc.image_row[job.image_key] * n_image if job.image_key in enc.image_row else 0
        for offset, (kind, value) in enumerate(entries):
            positions, sources = where[kind]
            positions.append(start + offset)
            if kind == TEXT:
                sources.append(value)
            elif kind == IMAGE:
                sources.append(image_base + value)
            else:
                sources.append(enc.region_row[(job.image_key, job.region_keys[value])])
    for kind, (positions, sources) in where.items():
        if not positions:
            continue
        index = torch.tensor(sources, device=device)
        if kind == TEXT:
            values = model.embed_text(index)
        else:
            table = {
                IMAGE: enc.image_tokens.reshape(-1, hidden),
                MASK: enc.mask_tokens,
                POS: enc.pos_tokens,
            }[kind]
            values = table[index].to(out.dtype)
        out[torch.tensor(positions, device=device)] = values
    return out.view(len(rows), width, hidden), valid.to(device)


def positions_of(valid: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """RoPE positions of left-padded rows whose first real token sits at ``start``."""
    real_before = valid.long().cumsum(dim=1) - 1
    return (start[:, None] + real_before).clamp(min=0)


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


# ---------------------------------------------------------------------- prefixes
def common_prefix(rows: Sequence[tuple[Entries, Job]]) -> int:
    """How many leading positions embed alike in every row (each row keeps >= 1 of its own).

    Positions compare as the embedding sees them: a region slot by the region itself (its
    key), anything else by its entry. Rows may share one entries list (same ids): the
    entries are compared once per distinct list, then only the rows' region slots.
    """
    first, first_job = rows[0]
    n = min(len(e) for e, _ in rows) - 1  # every row keeps >= 1 suffix token for its logits
    slots = [k for k, (kind, _) in enumerate(first) if kind in (MASK, POS)]
    agree: dict[int, int] = {id(first): len(first)}  # entries list -> common length with first
    for entries, job in rows[1:]:
        if id(entries) not in agree:
            m = min(len(entries), len(first))
            agree[id(entries)] = next((k for k in range(m) if entries[k] != first[k]), m)
        n = min(n, agree[id(entries)])
        # Up to n the entries agree, region indices included; the regions may not.
        for k in slots:
            if k >= n:
                break
            if job.region_keys[first[k][1]] != first_job.region_keys[first[k][1]]:
                n = k
                break
    return n


# ---------------------------------------------------------------------- naive path
def generate_naive(
    model: OspreyModel,
    tokenizer: OspreyTokenizer,
    job: Job,
    enc: Encoded,
    sampling: SamplingSettings,
) -> Finished:
    """The official loop for one request: full sequence, ``generate`` with KV cache."""
    from transformers import GenerationConfig

    entries = position_entries(job, tokenizer, enc.image_tokens.shape[1])
    embeds = embed_rows(model, [(entries, job)], enc)[0]
    do_sample = job.temperature > 0
    config = GenerationConfig(
        max_new_tokens=job.max_new_tokens,
        do_sample=do_sample,
        temperature=job.temperature if do_sample else None,
        top_k=sampling.top_k if do_sample else None,
        top_p=sampling.top_p if do_sample else None,
        num_beams=1,
        eos_token_id=tokenizer.eos_id,
        pad_token_id=tokenizer.eos_id,
        use_cache=True,
    )
    if do_sample:
        torch.manual_seed(job.seed)
    attention = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
    out = model.llm.generate(  # type: ignore[misc]
        inputs_embeds=embeds, attention_mask=attention, generation_config=config
    )
    return Finished(job, [int(t) for t in out[0].tolist()])
