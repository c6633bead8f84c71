"""The fast path: many requests over several images, decoded together.

For a batch of requests (:func:`generate_fast`):

1. the text every request starts with (BOS, system prompt, ``USER:``) goes through the
   decoder once per model and is kept (:func:`text_prefix`);
2. each image's shared prefix — the rest of what all its requests have in common: image
   tokens and the task's fixed text, up to the first position where two of them differ —
   runs once, one row per image, over the text prefix;
3. every request's own suffix (from its first ``<mask>`` on) runs in one batched forward
   over its image's prefix, which is attended to in place, never copied per request
   (:mod:`evalkit.models.osprey.decoder`);
4. all rows decode together, greedy or seeded sampling per row, each stopping at its EOS
   or its token limit; finished rows leave the batch.

Padding never changes a row's numbers: pad keys are masked out and every real token keeps
its own RoPE position, so greedy outputs equal the one-request-at-a-time reference loop's
(tested).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from evalkit.models.osprey.decoder import Grouping, RowKV, SharedKV, decode_forward
from evalkit.models.osprey.inference import (
    TEXT,
    Encoded,
    Entries,
    Finished,
    Job,
    SamplingSettings,
    choose_next,
    common_prefix,
    embed_rows,
    position_entries,
    positions_of,
    row_generator,
)
from evalkit.models.osprey.modeling import OspreyModel
from evalkit.models.osprey.prompting import OspreyTokenizer


def text_prefix(model: OspreyModel, ids: list[int]) -> SharedKV | None:
    """Keys/values of the text every request starts with; computed once per model and text."""
    if not ids:
        return None
    store: dict[tuple[int, ...], SharedKV] = model.__dict__.setdefault("_text_prefix_kv", {})
    key = tuple(ids)
    if key not in store:
        own = RowKV(1, model.device)
        embeds = model.embed_text(torch.tensor(ids))[None]
        valid = torch.ones(1, len(ids), dtype=torch.bool, device=model.device)
        positions = torch.arange(len(ids), device=model.device)[None]
        decode_forward(model.llm, embeds, positions, valid, own, None, None, "none")
        store.clear()  # one template at a time is the common case; keep memory flat
        store[key] = SharedKV(
            [k.clone() for k in own.keys_view()],
            [v.clone() for v in own.values_view()],
            own.valid.clone(),
        )
    return store[key]


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
    # A task asks the same question of many regions: one entries list per distinct prompt
    # (shared, never modified), which also lets common_prefix compare each list once.
    by_ids: dict[tuple[tuple[int, ...], int], Entries] = {}
    entries: list[Entries] = []
    for job in jobs:
        key = (tuple(job.ids), n_img)
        if key not in by_ids:
            by_ids[key] = position_entries(job, tokenizer, n_img)
        entries.append(by_ids[key])
    groups: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(job.image_key, []).append(i)
    group_keys = list(groups)
    prefix_len = {key: common_prefix([(entries[i], jobs[i]) for i in groups[key]]) for key in group_keys}

    # 1. the text every request starts with: once per model. Every job's prefix up to g is
    #    its image's prefix, so image representatives suffice.
    g = min(prefix_len.values())
    g = next((k for k in range(g) if entries[0][k][0] != TEXT), g)
    heads = [entries[groups[key][0]] for key in group_keys]
    g = next((k for k in range(g) if any(h[k] != heads[0][k] for h in heads[1:])), g)
    text = text_prefix(model, [v for _, v in entries[0][:g]])

    # 2. the rest of each image's shared prefix, one row per image over the text prefix.
    firsts = [groups[key][0] for key in group_keys]
    rows = [(entries[i][g : prefix_len[jobs[i].image_key]], jobs[i]) for i in firsts]
    embeds, valid = embed_rows(model, rows, enc)
    starts = torch.full((len(rows),), g, dtype=torch.long, device=device)
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
    next_pos = positions[:, -1] + 1
    own = RowKV(len(jobs), device, reserve=min(64, max(job.max_new_tokens for job in jobs)))
    hidden = decode_forward(model.llm, embeds, positions, valid, own, prefix, grouping, "last")
    assert hidden is not None

    # 4. decode all rows together; drop rows as they finish.
    active = list(range(len(jobs)))
    generated: list[list[int]] = [[] for _ in jobs]
    generators = [row_generator(job) for job in jobs]
    step_valid = torch.ones(len(jobs), 1, dtype=torch.bool, device=device)
    while True:
        logits = model.llm.lm_head(hidden[:, -1]).float()
        chosen = choose_next(
            logits, [jobs[i] for i in active], [generators[i] for i in active], sampling
        ).tolist()
        keep: list[int] = []
        for slot, (i, tid) in enumerate(zip(active, chosen, strict=True)):
            generated[i].append(int(tid))
            if tid == tokenizer.eos_id or len(generated[i]) >= jobs[i].max_new_tokens:
                yield Finished(jobs[i], generated[i])
            else:
                keep.append(slot)
        if not keep:
            return
        if len(keep) < len(active):
            index = torch.tensor(keep, device=device)
            own.select(index)
            grouping = Grouping.build(grouping.group_of[index], len(group_keys))
            next_pos, step_valid = next_pos[index], step_valid[index]
            chosen = [chosen[k] for k in keep]
            active = [active[k] for k in keep]
        step = model.embed_text(torch.tensor(chosen, device=device))[:, None]
        hidden = decode_forward(model.llm, step, next_pos[:, None], step_valid, own, prefix, grouping, "all")
        assert hidden is not None
        next_pos = next_pos + 1
