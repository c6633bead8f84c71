"""Likelihood ranking: each candidate answer's summed log-probability after the prompt.

A ranking request carries N choices; choice c scores ``sum_j log p(c_j | prompt, c_<j)``
(natural log, the model's own distribution, teacher-forced), with its token count beside it
for length normalisation. Two paths, equal to 1e-5 in float32 (tested):

* :func:`rank_naive` — the reference: one full forward of prompt + choice per choice;
* :func:`rank_cascade` — the prompt once per request over its image's shared prefix
  (:func:`~evalkit.models.osprey.generate_cascade.prefill`, the cascade path's steps 1-3),
  every choice's first token read from the prompt's last position, and the choices' later
  tokens run as rows over their request's prefix (image prefix + the request's own suffix),
  many choices per forward. Choices that share leading tokens are still scored row by row:
  the shared part is a few tokens against a prefix of hundreds.

The request-level prefix is the image prefix gathered per request and so copied; at most
``REQUESTS_PER_PREFIX`` requests hold one at a time (a 7B prefix of ~1,100 tokens is ~0.6 GB
in bf16).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from evalkit.models.osprey.cascade_decoder import Grouping, RowKV, SharedKV, decode_forward
from evalkit.models.osprey.generate_cascade import Encoded, TextPrefixCache, positions_of, prefill
from evalkit.models.osprey.generation import Finished, Job
from evalkit.models.osprey.modeling import OspreyModel
from evalkit.models.osprey.prompting import OspreyTokenizer

# Requests whose prompt keys/values are copied into one request-level prefix at a time.
REQUESTS_PER_PREFIX = 8
# Choice tokens per forward (rows x padded width; bounds the [rows, tokens, vocab] logits).
# Rows go in order of length, so a forward's rows are padded to about their own length:
# LVIS names are 1-39 tokens long, 7 on average.
TOKENS_PER_FORWARD = 16384


def choice_ids(tokenizer: OspreyTokenizer, rendered: str, choices: Sequence[str]) -> list[list[int]]:
    """Each choice's tokens as they follow the rendered prompt (``ASSISTANT: {choice}``,
    the answer form of the ``osprey_v1`` template): the tokens of prompt + " " + choice
    after those of the prompt. The prompt's tokens must be a prefix of the joined text's."""
    tail = rendered.rsplit("<image>", 1)[-1]
    base = tokenizer.encode_text(tail)
    out = []
    for choice in choices:
        joined = tokenizer.encode_text(f"{tail} {choice}")
        if joined[: len(base)] != base or len(joined) == len(base):
            raise ValueError(f"choice {choice!r} does not tokenise as a continuation of the prompt")
        out.append(joined[len(base) :])
    return out


def rank_naive(
    model: OspreyModel,
    tokenizer: OspreyTokenizer,
    job: Job,
    image: torch.Tensor,
    masks: Sequence[torch.Tensor],
) -> Finished:
    """The reference: prompt + choice through :meth:`OspreyModel.forward`, once per choice."""
    assert job.choice_ids is not None
    stacked = torch.stack(list(masks)) if masks else torch.zeros(0, *image.shape[-2:])
    scores = []
    for ids in job.choice_ids:
        logits = model(
            torch.tensor(job.ids + ids)[None], image[None], [stacked], tokenizer.mask_id, tokenizer.pos_id
        )
        logp = logits[0].float().log_softmax(-1)
        start = logp.shape[0] - len(ids) - 1  # the position that predicts the first choice token
        targets = torch.tensor(ids, device=logp.device)
        picked = logp[start : start + len(ids)].gather(1, targets[:, None])
        scores.append(float(picked.sum()))
    return Finished(job, [], choice_logprobs=scores)


def rank_cascade(
    model: OspreyModel,
    tokenizer: OspreyTokenizer,
    jobs: Sequence[Job],
    enc: Encoded,
    text_cache: TextPrefixCache | None = None,
) -> Iterator[Finished]:
    """Scores every choice of ``jobs`` (ranking jobs whose images and regions are in ``enc``)."""
    text_cache = text_cache if text_cache is not None else TextPrefixCache()
    filled = prefill(model, tokenizer, jobs, enc, text_cache, reserve=0)
    first = model.llm.lm_head(filled.hidden[:, -1]).float().log_softmax(-1)  # [jobs, vocab]
    for start in range(0, len(jobs), REQUESTS_PER_PREFIX):
        members = list(range(start, min(len(jobs), start + REQUESTS_PER_PREFIX)))
        prefix = _request_prefix(filled.prefix, filled.grouping, filled.own, members)
        scores = [_first_tokens(first[i], jobs[i]) for i in members]
        # (member slot, choice index) of every choice with tokens after its first
        rows = [
            (m, c)
            for m, i in enumerate(members)
            for c, ids in enumerate(jobs[i].choice_ids or [])
            if len(ids) > 1
        ]
        rows.sort(key=lambda mc: len((jobs[members[mc[0]]].choice_ids or [])[mc[1]]))
        for part in _chunks(rows, [len((jobs[members[m]].choice_ids or [])[c]) - 1 for m, c in rows]):
            slots = [m for m, _ in part]
            starts = filled.next_pos[torch.tensor([members[m] for m in slots], device=model.device)]
            row_jobs = [jobs[members[m]] for m in slots]
            tails = _choice_tails(model, row_jobs, [c for _, c in part], prefix, starts, slots)
            for (m, c), value in zip(part, tails, strict=True):
                scores[m][c] += value
        for m, i in enumerate(members):
            yield Finished(jobs[i], [], choice_logprobs=scores[m])


def _chunks(rows: list[tuple[int, int]], widths: list[int]) -> Iterator[list[tuple[int, int]]]:
    """Consecutive rows (sorted by width) whose padded size stays within the budget."""
    start = 0
    while start < len(rows):
        stop = start + 1
        while stop < len(rows) and (stop + 1 - start) * widths[stop] <= TOKENS_PER_FORWARD:
            stop += 1
        yield rows[start:stop]
        start = stop


def _first_tokens(logp: torch.Tensor, job: Job) -> list[float]:
    """log p of each choice's first token, from the prompt's last position."""
    assert job.choice_ids is not None
    firsts = torch.tensor([ids[0] for ids in job.choice_ids], device=logp.device)
    return [float(v) for v in logp[firsts].tolist()]


def _request_prefix(
    image_prefix: SharedKV | None, grouping: Grouping, own: RowKV, members: list[int]
) -> SharedKV:
    """One group per request: its image's prefix followed by its own suffix."""
    index = torch.tensor(members, device=own.valid.device)
    own_k = [k[index] for k in own.keys_view()]
    own_v = [v[index] for v in own.values_view()]
    own_valid = own.valid[index]
    if image_prefix is None:
        return SharedKV(own_k, own_v, own_valid)
    groups = grouping.group_of[index]
    return SharedKV(
        [torch.cat([k[groups], o], dim=2) for k, o in zip(image_prefix.keys, own_k, strict=True)],
        [torch.cat([v[groups], o], dim=2) for v, o in zip(image_prefix.values, own_v, strict=True)],
        torch.cat([image_prefix.valid[groups], own_valid], dim=1),
    )


def _choice_tails(
    model: OspreyModel,
    jobs: Sequence[Job],
    choices: Sequence[int],
    prefix: SharedKV,
    starts: torch.Tensor,
    groups: Sequence[int],
) -> list[float]:
    """Summed log p of each row's choice tokens after the first: the row feeds tokens
    ``0..n-2`` over its request's prefix and reads the predictions of ``1..n-1``."""
    device = model.device
    ids = [(job.choice_ids or [])[c] for job, c in zip(jobs, choices, strict=True)]
    width = max(len(t) - 1 for t in ids)
    tokens = torch.zeros(len(ids), width, dtype=torch.long)
    valid = torch.zeros(len(ids), width, dtype=torch.bool)
    for r, t in enumerate(ids):  # left-padded, as every cascade forward
        tokens[r, width - (len(t) - 1) :] = torch.tensor(t[:-1])
        valid[r, width - (len(t) - 1) :] = True
    tokens, valid = tokens.to(device), valid.to(device)
    embeds = model.embed_text(tokens.flatten()).view(len(ids), width, -1)
    grouping = Grouping.build(torch.tensor(list(groups), device=device), prefix.valid.shape[0])
    hidden = decode_forward(
        model.llm,
        embeds,
        positions_of(valid, starts),
        valid,
        RowKV(len(ids), device),
        prefix,
        grouping,
        "all",
    )
    assert hidden is not None
    logp = model.llm.lm_head(hidden).float().log_softmax(-1)  # [rows, width, vocab]
    targets = torch.zeros(len(ids), width, dtype=torch.long)
    for r, t in enumerate(ids):  # position k predicts the token fed at k + 1
        targets[r, width - (len(t) - 1) :] = torch.tensor(t[1:])
    picked = logp.gather(2, targets.to(device)[..., None])[..., 0]
    return [float(v) for v in picked.masked_fill(~valid, 0.0).sum(dim=1).tolist()]
