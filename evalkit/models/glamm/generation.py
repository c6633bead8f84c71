"""Generating a GLaMM answer and its masks for one request.

The official ``evaluate`` calls ``generate(num_beams=1, output_hidden_states=True)`` with
``use_cache`` off (``GLaMMModel`` sets ``config.use_cache = False``): every step re-runs the
whole sequence, and the ``[SEG]`` hidden states are read from the last step's full forward
(``output_hidden_states[-1]``), at the position before each ``[SEG]``. Here the decoder runs
once over the prompt and then one token at a time with a KV cache; the state kept for a
``[SEG]`` is the final-norm hidden state whose logits chose it — the same position, equal up
to floating-point summation order (tested against :meth:`GLaMMModel.forward`).

Decoding is greedy when the temperature is 0 (the released setting: no ``do_sample``);
otherwise temperature + top-p sampling with a generator seeded by (seed, request id), so an
answer never depends on batching or order. Generation stops at EOS (not kept) or after
``max_new_tokens``; like the official output ids, the generated ids end with the EOS when
one was chosen (its log-probability too), and the text is decoded without it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from evalkit.models.glamm.modeling import GLaMMModel
from evalkit.records import Request


@dataclass
class Job:
    """One request, tokenised, with its normalised boxes."""

    request: Request
    rendered: str
    ids: list[int]
    image_key: str
    boxes: torch.Tensor | None  # [n, 4] x1y1x2y2 in [0, 1], prompt order
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int
    want_logprobs: bool
    want_masks: bool


@dataclass
class Generated:
    job: Job
    token_ids: list[int]  # generated ids, the EOS included when chosen
    token_logprobs: list[float] | None
    seg_hidden: torch.Tensor  # [n_seg, hidden]: the state that chose each generated [SEG]


def row_generator(job: Job) -> torch.Generator | None:
    """Sampling depends only on (seed, request id)."""
    if job.temperature <= 0:
        return None
    digest = hashlib.sha256(f"{job.seed}|{job.request.id}".encode()).digest()
    gen = torch.Generator()
    gen.manual_seed(int.from_bytes(digest[:8], "little"))
    return gen


def choose_next(logits: torch.Tensor, job: Job, generator: torch.Generator | None) -> int:
    """Greedy for temperature 0; else softmax(logits / T) restricted to the top-p nucleus."""
    if generator is None:
        return int(logits.argmax())
    scores = logits.float() / job.temperature
    if job.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=False)
        drop = ordered.softmax(-1).cumsum(-1) <= (1 - job.top_p)
        drop[-1] = False
        scores = scores.masked_fill(drop.scatter(0, order, drop), float("-inf"))
    return int(torch.multinomial(scores.softmax(-1).cpu(), 1, generator=generator).item())


@torch.inference_mode()
def generate(
    model: GLaMMModel,
    job: Job,
    image_tokens: torch.Tensor,
    bbox_tokens: torch.Tensor | None,
    bbox_token_id: int,
    seg_token_id: int,
    eos_token_id: int,
) -> Generated:
    """Decode one answer: ``image_tokens`` ``[N, hidden]`` of the request's image,
    ``bbox_tokens`` ``[n, hidden]`` of its boxes (prompt order)."""
    from transformers import DynamicCache

    embeds = model.embed_inputs(torch.tensor(job.ids), image_tokens, bbox_tokens, bbox_token_id)
    cache = DynamicCache(config=model.llm.config)
    hidden = model.llm.model(inputs_embeds=embeds[None], cache=cache, use_cache=True).last_hidden_state
    generator = row_generator(job)
    tokens: list[int] = []
    logprobs: list[float] | None = [] if job.want_logprobs else None
    seg_states: list[torch.Tensor] = []
    state = hidden[0, -1]
    while len(tokens) < job.max_new_tokens:
        logits = model.llm.lm_head(state)
        token = choose_next(logits, job, generator)
        if logprobs is not None:
            logprobs.append(float(logits.float().log_softmax(-1)[token]))
        tokens.append(token)
        if token == eos_token_id:
            break
        if token == seg_token_id:
            seg_states.append(state)
        if len(tokens) == job.max_new_tokens:
            break
        step = model.embed_text(torch.tensor([[token]]))
        state = model.llm.model(inputs_embeds=step, cache=cache, use_cache=True).last_hidden_state[0, -1]
    seg = torch.stack(seg_states) if seg_states else embeds.new_zeros(0, embeds.shape[-1])
    return Generated(job, tokens, logprobs, seg)


@torch.inference_mode()
def generate_batch(
    model: GLaMMModel,
    jobs: list[Job],
    embeds: list[torch.Tensor],
    seg_token_id: int,
    eos_token_id: int,
) -> list[Generated]:
    """Decode several answers together: ``embeds[i]`` is job i's decoder input
    (:meth:`GLaMMModel.embed_inputs`). The prompts are left-padded (masked, with positions
    counted from each prompt's first token), so every row computes what :func:`generate`
    computes alone, up to floating-point summation order; a row that has finished waits
    for the others."""
    from transformers import DynamicCache

    rows, length = len(jobs), max(e.shape[0] for e in embeds)
    batch = embeds[0].new_zeros(rows, length, embeds[0].shape[-1])
    attention = torch.zeros(rows, length, dtype=torch.long, device=batch.device)
    for i, e in enumerate(embeds):
        batch[i, length - e.shape[0] :] = e
        attention[i, length - e.shape[0] :] = 1
    positions = (attention.cumsum(1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.llm.config)
    out = model.llm.model(
        inputs_embeds=batch, attention_mask=attention, position_ids=positions, cache=cache, use_cache=True
    )
    states = out.last_hidden_state[:, -1]
    next_position = positions[:, -1:] + 1
    generators = [row_generator(job) for job in jobs]
    tokens: list[list[int]] = [[] for _ in jobs]
    logprobs: list[list[float] | None] = [[] if job.want_logprobs else None for job in jobs]
    seg_states: list[list[torch.Tensor]] = [[] for _ in jobs]
    active = [job.max_new_tokens > 0 for job in jobs]
    while any(active):
        logits = model.llm.lm_head(states)
        scores = logits.float().log_softmax(-1) if any(lp is not None for lp in logprobs) else None
        chosen = []
        for i, job in enumerate(jobs):
            if not active[i]:
                chosen.append(eos_token_id)
                continue
            token = choose_next(logits[i], job, generators[i])
            row_logprobs = logprobs[i]
            if row_logprobs is not None and scores is not None:
                row_logprobs.append(float(scores[i, token]))
            tokens[i].append(token)
            if token == seg_token_id:
                seg_states[i].append(states[i])
            if token == eos_token_id or len(tokens[i]) >= job.max_new_tokens:
                active[i] = False
            chosen.append(token)
        if not any(active):
            break
        attention = torch.cat([attention, attention.new_ones(rows, 1)], dim=1)
        step = model.embed_text(torch.tensor(chosen)[:, None])
        out = model.llm.model(
            inputs_embeds=step,
            attention_mask=attention,
            position_ids=next_position,
            cache=cache,
            use_cache=True,
        )
        states = out.last_hidden_state[:, -1]
        next_position = next_position + 1
    width = batch.shape[-1]
    return [
        Generated(
            job,
            tokens[i],
            logprobs[i],
            torch.stack(seg_states[i]) if seg_states[i] else batch.new_zeros(0, width),
        )
        for i, job in enumerate(jobs)
    ]
