"""The cascade path: many requests over several images, decoded together.

For a batch of requests (:func:`generate_cascade`; :func:`prefill` is steps 1-3, which
likelihood ranking, :mod:`evalkit.models.osprey.rank`, shares):

1. the text every request starts with (BOS, system prompt, ``USER:``) goes through the
   decoder once per model and is kept (:class:`TextPrefixCache`);
2. each image's shared prefix — the rest of what all its requests have in common: image
   tokens and the task's fixed text, up to the first position where two of them differ —
   runs once, one row per image, over the text prefix;
3. every request's own suffix (from its first ``<mask>`` on) runs in one batched forward
   over its image's prefix, which is attended to in place, never copied per request
   (:mod:`evalkit.models.osprey.cascade_decoder`);
4. all rows decode together, greedy or seeded sampling per row, each stopping at its EOS
   or its token limit; finished rows leave the batch.

Padding never changes a row's numbers: pad keys are masked out and every real token keeps
its own RoPE position, so greedy outputs equal the one-request-at-a-time reference loop's
(:mod:`evalkit.models.osprey.generate_naive`; tested).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from evalkit.models.osprey.cascade_decoder import Grouping, RowKV, SharedKV, decode_forward
from evalkit.models.osprey.generation import (
    Finished,
    Job,
    SamplingSettings,
    choose_next,
    row_generator,
)
from evalkit.models.osprey.mask_extractor import PreparedMasks, prepare_masks
from evalkit.models.osprey.modeling import OspreyModel
from evalkit.models.osprey.prompting import IMAGE_SENTINEL, OspreyTokenizer

# Position entry kinds: a text token id, the j-th image token, a region's mask / pos token.
TEXT, IMAGE, MASK, POS = 0, 1, 2, 3
# Room reserved in each row's own KV buffers for the first generated tokens, so short
# answers never regrow them (longer ones grow by doubling, see RowKV).
DECODE_RESERVE_TOKENS = 64


# ---------------------------------------------------------------------- inputs
@dataclass
class Encoded:
    """Vision outputs of the images of one batch."""

    image_tokens: torch.Tensor  # [n_images, N, hidden]
    mask_tokens: torch.Tensor  # [Q, hidden] float32
    pos_tokens: torch.Tensor  # [Q, hidden] float32
    image_row: dict[str, int]
    region_row: dict[tuple[str, str], int]


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


# ---------------------------------------------------------------------- prefixes and decoding
class TextPrefixCache:
    """Keys/values of the text every request starts with (BOS, system prompt, ``USER:``),
    computed once per model and text. It holds the last text only: one template at a time
    is the common case, and memory stays flat."""

    def __init__(self) -> None:
        self.ids: tuple[int, ...] | None = None
        self.kv: SharedKV | None = None

    def get(self, model: OspreyModel, ids: list[int]) -> SharedKV | None:
        if not ids:
            return None
        if self.kv is None or self.ids != tuple(ids):
            own = RowKV(1, model.device)
            embeds = model.embed_text(torch.tensor(ids))[None]
            valid = torch.ones(1, len(ids), dtype=torch.bool, device=model.device)
            positions = torch.arange(len(ids), device=model.device)[None]
            decode_forward(model.llm, embeds, positions, valid, own, None, None, "none")
            self.ids = tuple(ids)
            self.kv = SharedKV(
                [k.clone() for k in own.keys_view()],
                [v.clone() for v in own.values_view()],
                own.valid.clone(),
            )
        return self.kv


@dataclass
class Prefilled:
    """Every job's prompt run through the decoder (steps 1-3): its image's shared prefix,
    its own suffix's keys/values, and the last position's hidden state."""

    prefix: SharedKV | None  # one group per image
    grouping: Grouping  # job -> its image's group
    own: RowKV  # each job's own suffix
    hidden: torch.Tensor  # [jobs, 1, hidden]: the last prompt position
    next_pos: torch.Tensor  # [jobs]: the RoPE position of the first answer token
    n_groups: int


def prefill(
    model: OspreyModel,
    tokenizer: OspreyTokenizer,
    jobs: Sequence[Job],
    enc: Encoded,
    text_cache: TextPrefixCache,
    reserve: int,
) -> Prefilled:
    """Steps 1-3 for ``jobs``: ``reserve`` is the room kept in each row's own KV for the
    tokens appended after it (generated tokens; 0 when nothing is appended)."""
    device = model.device
    n_image_tokens = enc.image_tokens.shape[1]
    # A task asks the same question of many regions: one entries list per distinct prompt
    # (shared, never modified), which also lets common_prefix compare each list once.
    by_ids: dict[tuple[tuple[int, ...], int], Entries] = {}
    entries: list[Entries] = []
    for job in jobs:
        key = (tuple(job.ids), n_image_tokens)
        if key not in by_ids:
            by_ids[key] = position_entries(job, tokenizer, n_image_tokens)
        entries.append(by_ids[key])
    groups: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(job.image_key, []).append(i)
    group_keys = list(groups)
    prefix_len = {key: common_prefix([(entries[i], jobs[i]) for i in groups[key]]) for key in group_keys}

    # 1. the text every request starts with: once per model. Every job's prefix up to
    #    text_len is its image's prefix, so image representatives suffice.
    text_len = min(prefix_len.values())
    text_len = next((k for k in range(text_len) if entries[0][k][0] != TEXT), text_len)
    heads = [entries[groups[key][0]] for key in group_keys]
    text_len = next((k for k in range(text_len) if any(h[k] != heads[0][k] for h in heads[1:])), text_len)
    text = text_cache.get(model, [v for _, v in entries[0][:text_len]])

    # 2. the rest of each image's shared prefix, one row per image over the text prefix.
    firsts = [groups[key][0] for key in group_keys]
    rows = [(entries[i][text_len : prefix_len[jobs[i].image_key]], jobs[i]) for i in firsts]
    embeds, valid = embed_rows(model, rows, enc)
    starts = torch.full((len(rows),), text_len, dtype=torch.long, device=device)
    image_kv = RowKV(len(rows), device)
    everyone = Grouping.build(torch.zeros(len(rows), dtype=torch.long, device=device), 1)
    if embeds.shape[1]:
        decode_forward(
            model.llm, embeds, positions_of(valid, starts), valid, image_kv, text, everyone, "none"
        )
    prefix: SharedKV | None = None
    if text is None and embeds.shape[1]:
        prefix = SharedKV(image_kv.keys_view(), image_kv.values_view(), image_kv.valid)
    elif text is not None:
        prefix = text.extend(len(rows), image_kv if embeds.shape[1] else None)
        del image_kv  # copied into ``prefix``

    # 3. every request's own suffix, over its image's prefix.
    group_index = {key: n for n, key in enumerate(group_keys)}
    group_of = torch.tensor([group_index[job.image_key] for job in jobs], device=device)
    grouping = Grouping.build(group_of, len(group_keys))
    own_rows = [(entries[i][prefix_len[job.image_key] :], job) for i, job in enumerate(jobs)]
    embeds, valid = embed_rows(model, own_rows, enc)
    starts = torch.tensor([prefix_len[job.image_key] for job in jobs], device=device)
    positions = positions_of(valid, starts)
    own = RowKV(len(jobs), device, reserve=reserve)
    hidden = decode_forward(model.llm, embeds, positions, valid, own, prefix, grouping, "last")
    assert hidden is not None
    return Prefilled(prefix, grouping, own, hidden, positions[:, -1] + 1, len(group_keys))


def generate_cascade(
    model: OspreyModel,
    tokenizer: OspreyTokenizer,
    jobs: Sequence[Job],
    enc: Encoded,
    sampling: SamplingSettings,
    text_cache: TextPrefixCache | None = None,
) -> Iterator[Finished]:
    """Generates for ``jobs`` (whose images and regions are in ``enc``); ``text_cache``
    keeps the common text prefix across calls (a fresh one when not given)."""
    device = model.device
    text_cache = text_cache if text_cache is not None else TextPrefixCache()
    reserve = min(DECODE_RESERVE_TOKENS, max(job.max_new_tokens for job in jobs))
    filled = prefill(model, tokenizer, jobs, enc, text_cache, reserve)
    prefix, grouping, own, n_groups = filled.prefix, filled.grouping, filled.own, filled.n_groups
    hidden, next_pos = filled.hidden, filled.next_pos

    # 4. decode all rows together; drop rows as they finish.
    active = list(range(len(jobs)))
    generated: list[list[int]] = [[] for _ in jobs]
    logprobs: list[list[float]] = [[] for _ in jobs]
    any_logprobs = any(job.want_logprobs for job in jobs)
    generators = [row_generator(job) for job in jobs]
    step_valid = torch.ones(len(jobs), 1, dtype=torch.bool, device=device)
    while True:
        logits = model.llm.lm_head(hidden[:, -1]).float()
        chosen = choose_next(
            logits, [jobs[i] for i in active], [generators[i] for i in active], sampling
        ).tolist()
        if any_logprobs:
            picked = logits.log_softmax(-1).gather(1, torch.tensor(chosen, device=device)[:, None])
            for i, value in zip(active, picked[:, 0].tolist(), strict=True):
                logprobs[i].append(float(value))
        keep: list[int] = []
        for slot, (i, tid) in enumerate(zip(active, chosen, strict=True)):
            generated[i].append(int(tid))
            if tid == tokenizer.eos_id or len(generated[i]) >= jobs[i].max_new_tokens:
                yield Finished(jobs[i], generated[i], logprobs[i] if jobs[i].want_logprobs else None)
            else:
                keep.append(slot)
        if not keep:
            return
        if len(keep) < len(active):
            index = torch.tensor(keep, device=device)
            own.select(index)
            grouping = Grouping.build(grouping.group_of[index], n_groups)
            next_pos, step_valid = next_pos[index], step_valid[index]
            chosen = [chosen[k] for k in keep]
            active = [active[k] for k in keep]
        step = model.embed_text(torch.tensor(chosen, device=device))[:, None]
        stepped = decode_forward(model.llm, step, next_pos[:, None], step_valid, own, prefix, grouping, "all")
        assert stepped is not None
        hidden = stepped
        next_pos = next_pos + 1
