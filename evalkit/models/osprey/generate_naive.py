"""The naive path: one request per ``generate``, the reference loop.

What the released eval scripts do for every region (Osprey deb0e57, ``osprey/eval/*.py``):
the vision tower runs again on the request's image, the prompt is spliced by the model's
reference path (:meth:`~evalkit.models.osprey.modeling.OspreyModel.embed_inputs`, the
official ``prepare_inputs_labels_for_multimodal``) and transformers' ``generate`` decodes
with its KV cache. Slow, and the yardstick :mod:`evalkit.models.osprey.generate_cascade`
is tested against.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from evalkit.models.osprey.generation import Finished, Job, SamplingSettings
from evalkit.models.osprey.modeling import OspreyModel
from evalkit.models.osprey.prompting import OspreyTokenizer


def generate_naive(
    model: OspreyModel,
    tokenizer: OspreyTokenizer,
    job: Job,
    image: torch.Tensor,
    masks: Sequence[torch.Tensor],
    sampling: SamplingSettings,
) -> Finished:
    """The official loop for one request: ``image`` ``[3, S, S]`` preprocessed, ``masks``
    the request's region masks ``[H, W]`` in prompt order; full sequence, ``generate``."""
    from transformers import GenerationConfig

    stacked = torch.stack(list(masks)) if masks else torch.zeros(0, *image.shape[-2:])
    embeds = model.embed_inputs(
        torch.tensor(job.ids)[None], image[None], [stacked], tokenizer.mask_id, tokenizer.pos_id
    )
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
    if not job.want_logprobs:
        out = model.llm.generate(inputs_embeds=embeds, attention_mask=attention, generation_config=config)
        return Finished(job, [int(t) for t in out[0].tolist()])
    # The raw logits of each step (before temperature / top-p), as the cascade path reports.
    config.output_logits, config.return_dict_in_generate = True, True
    result = model.llm.generate(inputs_embeds=embeds, attention_mask=attention, generation_config=config)
    tokens = [int(t) for t in result.sequences[0].tolist()]
    logprobs = [
        float(step[0].float().log_softmax(-1)[tid]) for step, tid in zip(result.logits, tokens, strict=True)
    ]
    return Finished(job, tokens, logprobs)
