"""Generation with Osprey: a fast batched path and a naive reference-style path.

The fast path (:func:`generate_fast`) does, for a batch of requests spanning several images:

1. encode each image once (trunk + projector) and pool all regions of an image together;
2. per image, find the shared prefix of its requests' input sequences (system prompt,
   image tokens and the task's fixed text, up to the first position where two requests
   differ) and run it through the decoder once, batched over images (left-padded);
3. copy each image's prefix KV cache to the rows of its requests, run every request's own
   suffix in one batched forward, then decode all rows together, stopping each at its EOS
   (finished rows are dropped from the batch).

Padding never changes a row's numbers: pad keys are masked out and every real token keeps
its own RoPE position. The naive path (:func:`generate_naive`) is the official loop: one
``generate`` per request with the image re-encoded every call. Greedy outputs of the two
are token-identical (tested).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from evalkit.models.osprey.kv_cache import decoder_forward, text_prefix_cache
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
    meta: dict[str, Any] = field(default_factory=dict)


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
    return Encoded(
        image_tokens, mask_tokens, pos_tokens, {k: i for i, k in enumerate(keys)}, region_row
    )


def position_entries(
    job: Job, tokenizer: OspreyTokenizer, n_image_tokens: int
) -> list[tuple[int, int]]:
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


def embed_entries(
    model: OspreyModel, entries: Sequence[tuple[int, int]], job: Job, enc: Encoded
) -> torch.Tensor:
    """``[L, hidden]`` input embeddings in the decoder dtype (the official splicing)."""
    dtype = model.llm_dtype
    out = torch.empty(len(entries), model.config.hidden_size, dtype=dtype, device=model.device)
    if not entries:
        return out
    kinds = torch.tensor([k for k, _ in entries])
    values = torch.tensor([v for _, v in entries])
    text = (kinds == TEXT).nonzero().flatten()
    if text.numel():
        out[text.to(out.device)] = model.embed_text(values[text])
    image = (kinds == IMAGE).nonzero().flatten()
    if image.numel():
        row = enc.image_row[job.image_key]
        out[image.to(out.device)] = enc.image_tokens[row, values[image].to(out.device)].to(dtype)
    for kind, table in ((MASK, enc.mask_tokens), (POS, enc.pos_tokens)):
        where = (kinds == kind).nonzero().flatten()
        if where.numel():
            rows = [enc.region_row[(job.image_key, job.region_keys[int(v)])] for v in values[where]]
            out[where.to(out.device)] = table[torch.tensor(rows, device=out.device)].to(dtype)
    return out


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


# ---------------------------------------------------------------------- fast path
def comparable(entries: Sequence[tuple[int, int]], job: Job) -> list[tuple[int, int | str]]:
    """Entries as they determine the embedding: a region slot compares by the region itself."""
    return [(k, job.region_keys[v]) if k in (MASK, POS) else (k, v) for k, v in entries]


def common_prefix(seqs: Sequence[Sequence[tuple[int, int | str]]]) -> int:
    limit = min(len(s) for s in seqs) - 1  # every row keeps >= 1 suffix token for its logits
    first = seqs[0]
    n = 0
    while n < limit and all(s[n] == first[n] for s in seqs[1:]):
        n += 1
    return n


def generate_fast(
    model: OspreyModel,
    tokenizer: OspreyTokenizer,
    jobs: Sequence[Job],
    enc: Encoded,
    sampling: SamplingSettings,
) -> Iterator[Finished]:
    """Generates for ``jobs`` (whose images and regions are in ``enc``)."""
    device = model.device
    n_img = enc.image_tokens.shape[1]
    entries = [position_entries(job, tokenizer, n_img) for job in jobs]
    groups: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(job.image_key, []).append(i)
    group_keys = list(groups)
    prefix_len = {
        key: common_prefix([comparable(entries[i], jobs[i]) for i in groups[key]])
        for key in group_keys
    }

    # 0. the text every request starts with (BOS, system prompt, "USER:"): once per model.
    # Every job's prefix up to g is its image's prefix, so image representatives suffice.
    g = min(prefix_len.values())
    g = next((k for k in range(g) if entries[0][k][0] != TEXT), g)
    heads = [entries[groups[key][0]] for key in group_keys]
    g = next((k for k in range(g) if any(h[k] != heads[0][k] for h in heads[1:])), g)
    cache = text_prefix_cache(model, [v for _, v in entries[0][:g]])

    # 1. the rest of each image's shared prefix (image tokens, fixed text), one row per
    #    image, left-padded after the common text.
    hidden = model.config.hidden_size
    b_max = max(prefix_len[key] - g for key in group_keys)
    pre_embeds = torch.zeros(len(group_keys), b_max, hidden, dtype=model.llm_dtype, device=device)
    pre_valid = torch.zeros(len(group_keys), g + b_max, dtype=torch.bool, device=device)
    pre_valid[:, :g] = True
    pre_pos = torch.zeros(len(group_keys), b_max, dtype=torch.long, device=device)
    for row, key in enumerate(group_keys):
        p = prefix_len[key]
        first = groups[key][0]
        if p > g:
            pre_embeds[row, b_max - (p - g) :] = embed_entries(
                model, entries[first][g:p], jobs[first], enc
            )
        pre_valid[row, g + b_max - (p - g) :] = True
        pre_pos[row, b_max - (p - g) :] = torch.arange(g, p, device=device)
    if g > 0:
        cache.batch_select_indices(torch.zeros(len(group_keys), dtype=torch.long, device=device))
    if b_max > 0:
        decoder_forward(model, pre_embeds, pre_valid, pre_pos, cache)

    # 2. every request's own suffix, on a copy of its image's prefix cache.
    group_of = torch.tensor([group_keys.index(job.image_key) for job in jobs], device=device)
    cache.batch_select_indices(group_of)
    suffixes = [entries[i][prefix_len[job.image_key] :] for i, job in enumerate(jobs)]
    s_max = max(len(s) for s in suffixes)
    suf_embeds = torch.zeros(len(jobs), s_max, hidden, dtype=model.llm_dtype, device=device)
    suf_valid = torch.zeros(len(jobs), s_max, dtype=torch.bool, device=device)
    suf_pos = torch.zeros(len(jobs), s_max, dtype=torch.long, device=device)
    next_pos = torch.zeros(len(jobs), dtype=torch.long, device=device)
    for i, job in enumerate(jobs):
        p, s = prefix_len[job.image_key], len(suffixes[i])
        suf_embeds[i, s_max - s :] = embed_entries(model, suffixes[i], job, enc)
        suf_valid[i, s_max - s :] = True
        suf_pos[i, s_max - s :] = torch.arange(p, p + s, device=device)
        next_pos[i] = p + s
    valid = torch.cat([pre_valid[group_of], suf_valid], dim=1)
    last = decoder_forward(model, suf_embeds, valid, suf_pos, cache)[:, -1]

    # 3. decode all rows together; drop rows as they finish.
    active = list(range(len(jobs)))
    generated: list[list[int]] = [[] for _ in jobs]
    generators = [row_generator(job) for job in jobs]
    while active:
        logits = model.llm.lm_head(last).float()
        act_jobs = [jobs[i] for i in active]
        chosen = choose_next(logits, act_jobs, [generators[i] for i in active], sampling).tolist()
        keep: list[int] = []
        for slot, (i, tid) in enumerate(zip(active, chosen, strict=True)):
            generated[i].append(int(tid))
            if tid == tokenizer.eos_id or len(generated[i]) >= jobs[i].max_new_tokens:
                yield Finished(jobs[i], generated[i])
            else:
                keep.append(slot)
        if not keep:
            break
        if len(keep) < len(active):
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            valid, next_pos = valid[index], next_pos[index]
            chosen = [chosen[k] for k in keep]
            active = [active[k] for k in keep]
        step = model.embed_text(torch.tensor(chosen, device=device))[:, None]
        valid = torch.cat(
            [valid, torch.ones(len(active), 1, dtype=torch.bool, device=device)], dim=1
        )
        last = decoder_forward(model, step, valid, next_pos[:, None], cache)[:, -1]
        next_pos = next_pos + 1


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
    embeds = embed_entries(model, entries, job, enc)[None]
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
