"""Batched generation and likelihood ranking through a transformers image-text-to-text model.

* **Prompt.** One user turn (:class:`~evalkit.models.hf_vlm.encodings.Encoded`) through the
  processor's chat template with the generation prompt; the tokenizer's own special tokens are
  added only when the rendered text does not already start with BOS (what
  ``ProcessorMixin.apply_chat_template(tokenize=True)`` does).
* **Generation.** Greedy requests go in left-padded batches through one ``generate``; each row
  stops at its first EOS (the checkpoint's ``generation_config.eos_token_id``) and at its own
  ``max_new_tokens``, so a row's tokens are those it would get alone (tested in float32).
  Sampled requests (``temperature > 0``) run one per ``generate`` after
  ``torch.manual_seed(seed)``: a request's sample does not depend on what it was batched with,
  so resumed and sharded runs draw the same. Top-k / top-p come from the checkpoint's
  ``generation_config.json`` unless the task sets ``top_p``. With ``logprobs: true`` each
  generated token's log-probability under the raw logits (before temperature / top-p).
* **Ranking.** A request with ``choices`` scores choice ``c`` by ``sum_j log p(c_j | prompt,
  c_<j)``: the chat template renders the answer turn (``continue_final_message``), the text
  after the prompt is the choice's continuation, and prompt + continuation rows run right-padded
  through one forward per ``batch_size`` choices, logits kept only from the prompt's last
  position on. Each row must tokenise with the prompt's tokens as its prefix.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from evalkit.errors import EvalkitError
from evalkit.models.hf_vlm.encodings import Encoded
from evalkit.records import Request

DEFAULT_MAX_NEW_TOKENS = 1024


@dataclass
class Job:
    request: Request
    encoded: Encoded
    rendered: str  # the chat template's output: what the prediction records as its prompt
    add_special_tokens: bool
    max_new_tokens: int
    temperature: float
    top_p: float | None
    seed: int
    want_logprobs: bool

    def batch_key(self) -> tuple[bool, bool, bool, bool]:
        """Jobs that can share a forward: same image presence, tokenisation, kind, outputs."""
        return (
            self.encoded.image is not None,
            self.add_special_tokens,
            self.request.choices is not None,
            self.want_logprobs,
        )

    @property
    def sampled(self) -> bool:
        return self.temperature > 0 and self.request.choices is None


@dataclass
class Finished:
    job: Job
    token_ids: list[int]
    token_logprobs: list[float] | None = None
    choice_logprobs: list[float] | None = None
    choice_tokens: list[int] | None = None


def render(processor: Any, encoded: Encoded) -> tuple[str, bool]:
    """(the rendered prompt, whether tokenising it adds the tokenizer's special tokens)."""
    if getattr(processor, "chat_template", None) is None:
        # No template (Kosmos-2): the text as is, the processor's image token where the
        # image goes (Kosmos-2's processor inserts its own image tokens: none here).
        image_token = getattr(processor, "image_token", None) or ""
        middle = image_token if encoded.image is not None else ""
        return encoded.before + middle + encoded.after, True
    messages = [{"role": "user", "content": encoded.content()}]
    rendered = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    bos = processor.tokenizer.bos_token
    return rendered, not (bos is not None and rendered.startswith(bos))


def job_for(request: Request, encoded: Encoded, processor: Any) -> Job:
    rendered, special = render(processor, encoded)
    gen = request.generation
    return Job(
        request=request,
        encoded=encoded,
        rendered=rendered,
        add_special_tokens=special,
        max_new_tokens=int(gen.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)),
        temperature=float(gen.get("temperature", 0.0)),
        top_p=float(gen["top_p"]) if gen.get("top_p") is not None else None,
        seed=int(gen.get("seed", 0)),
        want_logprobs=bool(gen.get("logprobs", False)),
    )


def model_inputs(
    model: Any, processor: Any, texts: Sequence[str], images: Sequence[Any], special: bool, side: str
) -> dict[str, torch.Tensor]:
    """The processor's tensors for ``texts`` (padded on ``side``) on the model's device; float
    tensors (pixels) in the model's dtype."""
    tokenizer = processor.tokenizer
    before, tokenizer.padding_side = tokenizer.padding_side, side
    try:
        kwargs: dict[str, Any] = {"text": list(texts), "return_tensors": "pt", "padding": True}
        if images:
            kwargs["images"] = list(images)
        features = processor(**kwargs, add_special_tokens=special)
    finally:
        tokenizer.padding_side = before
    out: dict[str, torch.Tensor] = {}
    for key, value in features.items():
        if isinstance(value, torch.Tensor):
            value = (
                value.to(model.device, model.dtype) if value.is_floating_point() else value.to(model.device)
            )
        out[key] = value
    return out


def _generation_config(model: Any, processor: Any, job: Job, max_new_tokens: int, want: bool) -> Any:
    config = copy.deepcopy(model.generation_config)
    config.max_new_tokens = max_new_tokens
    config.return_dict_in_generate = True
    config.output_logits = want
    if config.eos_token_id is None:
        config.eos_token_id = processor.tokenizer.eos_token_id
    if config.pad_token_id is None:
        config.pad_token_id = processor.tokenizer.pad_token_id
    if job.sampled:
        config.do_sample = True
        config.temperature = job.temperature
        if job.top_p is not None:
            config.top_p = job.top_p
    else:
        # Greedy whatever the checkpoint's sampling defaults (Qwen2-VL ships top_k=1 etc.).
        config.do_sample = False
        config.temperature, config.top_p, config.top_k = None, None, None
    return config


def _eos_ids(config: Any) -> set[int]:
    eos = config.eos_token_id
    if eos is None:
        return set()
    return {int(eos)} if isinstance(eos, int) else {int(e) for e in eos}


@torch.inference_mode()
def generate_batch(model: Any, processor: Any, jobs: Sequence[Job]) -> list[Finished]:
    """One ``generate`` for ``jobs`` (same :meth:`Job.batch_key`, all greedy or a single one)."""
    images = [j.encoded.image for j in jobs if j.encoded.image is not None]
    inputs = model_inputs(
        model, processor, [j.rendered for j in jobs], images, jobs[0].add_special_tokens, "left"
    )
    want = any(j.want_logprobs for j in jobs)
    config = _generation_config(model, processor, jobs[0], max(j.max_new_tokens for j in jobs), want)
    if jobs[0].sampled:
        torch.manual_seed(jobs[0].seed)
    out = model.generate(**inputs, generation_config=config)
    start = inputs["input_ids"].shape[1]
    new = out.sequences[:, start:].tolist()
    eos = _eos_ids(config)
    done = []
    for r, job in enumerate(jobs):
        tokens = new[r][: job.max_new_tokens]
        stop = next((k for k, t in enumerate(tokens) if t in eos), None)
        if stop is not None:
            tokens = tokens[: stop + 1]  # the EOS stays: it is what the model chose
        logprobs = None
        if job.want_logprobs:
            logprobs = [float(out.logits[k][r].float().log_softmax(-1)[t]) for k, t in enumerate(tokens)]
        done.append(Finished(job, tokens, token_logprobs=logprobs))
    return done


def choice_suffix(processor: Any, job: Job, choice: str) -> str:
    """The text the chat template puts after the prompt when the answer is ``choice``."""
    if getattr(processor, "chat_template", None) is None:
        return " " + choice
    messages = [
        {"role": "user", "content": job.encoded.content()},
        {"role": "assistant", "content": [{"type": "text", "text": choice}]},
    ]
    full = processor.apply_chat_template(messages, continue_final_message=True, tokenize=False)
    if not full.startswith(job.rendered) or len(full) == len(job.rendered):
        raise EvalkitError(
            f"request {job.request.id}: the chat template's answer turn for choice {choice!r} "
            "does not continue its generation prompt; this template cannot rank choices"
        )
    return full[len(job.rendered) :]


@torch.inference_mode()
def rank_job(model: Any, processor: Any, job: Job, rows_per_forward: int) -> Finished:
    """Summed log p of each choice of ``job`` after its prompt, and its token count."""
    choices = job.request.choices
    assert choices is not None
    image = [job.encoded.image] if job.encoded.image is not None else []
    special = job.add_special_tokens
    prompt = model_inputs(model, processor, [job.rendered], image, special, "right")["input_ids"][0].tolist()
    n_prompt = len(prompt)
    suffixes = [choice_suffix(processor, job, c) for c in choices]
    scores: list[float] = []
    counts: list[int] = []
    for start in range(0, len(choices), rows_per_forward):
        part = suffixes[start : start + rows_per_forward]
        texts = [job.rendered + s for s in part]
        inputs = model_inputs(model, processor, texts, image * len(part), special, "right")
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        width = ids.shape[1]
        logits = model(**inputs, logits_to_keep=width - n_prompt + 1).logits  # positions P-1 .. L-1
        logp = logits.float().log_softmax(-1)
        for r, choice in enumerate(choices[start : start + rows_per_forward]):
            row = ids[r][mask[r].bool()].tolist()
            if row[:n_prompt] != prompt or len(row) == n_prompt:
                raise EvalkitError(
                    f"request {job.request.id}: choice {choice!r} does not tokenise as a "
                    "continuation of the prompt"
                )
            targets = torch.tensor(row[n_prompt:], device=logp.device)
            picked = logp[r, : len(targets)].gather(1, targets[:, None])
            scores.append(float(picked.sum()))
            counts.append(len(targets))
    return Finished(job, [], choice_logprobs=scores, choice_tokens=counts)
