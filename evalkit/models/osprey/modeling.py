"""The Osprey model: ConvNeXt trunk -> projector (image tokens), mask extractor (region
tokens), and a transformers ``LlamaForCausalLM`` that reads the spliced embeddings.

:meth:`OspreyModel.forward` is the reference computation of one batch of prompts, top to
bottom, as the official ``OspreyLlamaForCausalLM.forward`` does it (Osprey deb0e57,
``osprey/model/osprey_arch.py`` ``prepare_inputs_labels_for_multimodal``, then the LLaMA
decoder and ``lm_head``). The generation paths (``generate_naive``, ``generate_cascade``)
build on the same pieces: :meth:`~OspreyModel.encode_images`,
:meth:`~OspreyModel.region_tokens`, :meth:`~OspreyModel.embed_text`.

Internal module names differ from the official ones only by prefix; :func:`to_internal_key`
and :func:`to_official_key` map between them, so checkpoints are read and written in the
official layout:

=============================================  ==========================
official key                                   internal key
=============================================  ==========================
``model.vision_tower.vision_tower.visual.trunk.*``  ``trunk.*``
``model.mm_projector.*``                       ``mm_projector.*``
``mask_extractor.*``                           ``mask_extractor.*``
``model.*`` (LLaMA decoder), ``lm_head.*``     ``llm.model.*``, ``llm.lm_head.*``
=============================================  ==========================
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from evalkit.models.osprey.config import IMAGE_TOKEN_LEVEL, LEVEL_STRIDES, OspreyConfig
from evalkit.models.osprey.convnext import ConvNeXtTrunk
from evalkit.models.osprey.mask_extractor import MaskExtractor, PreparedMasks, prepare_masks
from evalkit.models.osprey.prompting import IMAGE_SENTINEL

TRUNK_PREFIX = "model.vision_tower.vision_tower.visual.trunk."
TOWER_PREFIX = "model.vision_tower."
PROJECTOR_PREFIX = "model.mm_projector."
MASK_EXTRACTOR_PREFIX = "mask_extractor."
LLM_PREFIX = "llm."
LOOKUP_FILLER_ID = 0  # a valid embedding row, looked up in place of a placeholder id


def to_internal_key(key: str) -> str | None:
    if key.startswith(TRUNK_PREFIX):
        return "trunk." + key[len(TRUNK_PREFIX) :]
    if key.startswith(TOWER_PREFIX):
        return None  # the CLIP head and anything else of the tower: unused by Osprey
    if key.startswith(PROJECTOR_PREFIX):
        return "mm_projector." + key[len(PROJECTOR_PREFIX) :]
    if key.startswith(MASK_EXTRACTOR_PREFIX):
        return key
    if key.startswith(("model.", "lm_head.")):
        return LLM_PREFIX + key
    return None


def to_official_key(key: str) -> str:
    if key.startswith("trunk."):
        return TRUNK_PREFIX + key[len("trunk.") :]
    if key.startswith("mm_projector."):
        return PROJECTOR_PREFIX + key[len("mm_projector.") :]
    if key.startswith(LLM_PREFIX):
        return key[len(LLM_PREFIX) :]
    return key


def build_projector(kind: str, mm_hidden: int, hidden: int) -> nn.Sequential:
    """``linear`` or ``mlp{N}x_gelu`` (keys ``0``, ``2``, ...: Linear, GELU, Linear...)."""
    if kind == "linear":
        return nn.Sequential(nn.Linear(mm_hidden, hidden))
    match = re.fullmatch(r"mlp(\d+)x_gelu", kind)
    if match is None:
        raise ValueError(f"unknown projector {kind!r}")
    layers: list[nn.Module] = [nn.Linear(mm_hidden, hidden)]
    for _ in range(int(match.group(1)) - 1):
        layers.extend([nn.GELU(), nn.Linear(hidden, hidden)])
    return nn.Sequential(*layers)


def llama_config(config: OspreyConfig, attn_implementation: str = "sdpa") -> Any:
    from transformers import LlamaConfig

    kwargs = dict(config.llama)
    kwargs.pop("torch_dtype", None)
    kwargs.pop("dtype", None)
    llama = LlamaConfig(**kwargs)
    llama._attn_implementation = attn_implementation
    return llama


class OspreyModel(nn.Module):
    def __init__(self, config: OspreyConfig, attn_implementation: str = "sdpa"):
        super().__init__()
        from transformers import LlamaForCausalLM

        self.config = config
        self.llm = LlamaForCausalLM(llama_config(config, attn_implementation))
        vision = config.vision
        self.trunk = ConvNeXtTrunk(vision.depths, vision.dims)
        self.mm_projector = build_projector(
            config.mm_projector_type, config.mm_hidden_size, config.hidden_size
        )
        self.mask_extractor = MaskExtractor(
            vision.dims, vision.mask_embed_dim, config.hidden_size, vision.mask_shape
        )
        self.pixels_via: torch.dtype | None = None  # see set_dtypes

    def init_rotary(self) -> OspreyModel:
        """Rebuilds the RoPE inverse frequencies (a non-persistent buffer, in no checkpoint)
        after construction on the meta device; on the device of the decoder's weights."""
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

        rotary = LlamaRotaryEmbedding(config=self.llm.config)
        if self.device.type != "meta":
            rotary = rotary.to(self.device)
        self.llm.model.rotary_emb = rotary
        return self

    # ------------------------------------------------------------------ dtypes
    @property
    def vision_dtype(self) -> torch.dtype:
        return self.trunk.stem[0].weight.dtype  # type: ignore[return-value]

    @property
    def llm_dtype(self) -> torch.dtype:
        return self.llm.model.embed_tokens.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.llm.model.embed_tokens.weight.device

    def set_dtypes(
        self, vision: torch.dtype, llm: torch.dtype, vision_via: torch.dtype | None = None
    ) -> OspreyModel:
        """Vision tower + projector in ``vision``, decoder in ``llm``, mask extractor in fp32.

        ``vision_via``: a dtype the tower and projector weights, and the images fed to the
        tower, are rounded through first. The released eval scripts set the tower to fp16
        and pass ``image.half()``; the first forward's ``self.model.bfloat16()`` then turns
        tower and projector into bf16, so every later forward runs a bf16 tower on fp16-
        rounded weights and pixels (``vision=bfloat16, vision_via=float16``).
        """
        for part in (self.trunk, self.mm_projector):
            if vision_via is not None:
                part.to(vision_via)
            part.to(vision)
        self.pixels_via = vision_via
        self.mask_extractor.float()
        self.llm.to(llm)  # type: ignore[arg-type]
        return self

    # ------------------------------------------------------------------ pieces
    def level_sizes(self) -> list[tuple[int, int]]:
        """The ``(h, w)`` grid of each trunk output res2..res5 (the mask extractor's levels)."""
        size = self.config.vision.image_size
        return [(size // stride, size // stride) for stride in LEVEL_STRIDES]

    def encode_images(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``[B, 3, S, S]`` -> image tokens ``[B, N, hidden]`` (vision dtype), trunk features.

        The official ``encode_images``: the tower's res4 map, flattened row-major, through
        ``mm_projector``; the four trunk levels go on to the mask extractor.
        """
        images = images.to(self.device)
        if self.pixels_via is not None:
            images = images.to(self.pixels_via)
        feats = self.trunk(images.to(self.vision_dtype))
        res4 = feats[IMAGE_TOKEN_LEVEL].flatten(2).transpose(1, 2)  # [B, N, C], row-major grid
        return self.mm_projector(res4), feats

    def region_tokens(
        self, feats: list[torch.Tensor], image_index: torch.Tensor, prepared: PreparedMasks
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask and position tokens ``[Q, hidden]`` (float32); region q is on image
        ``image_index[q]`` of ``feats``."""
        return self.mask_extractor(feats, image_index.to(self.device), prepared.to(self.device))

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.llm.model.embed_tokens(ids.to(self.device))

    # ------------------------------------------------------------------ reference path
    def embed_inputs(
        self,
        input_ids: torch.Tensor,
        images: torch.Tensor,
        masks: Sequence[torch.Tensor],
        mask_token_id: int,
        pos_token_id: int,
    ) -> torch.Tensor:
        """The decoder input ``[B, L + N - 1, hidden]`` (decoder dtype) of B prompts.

        ``input_ids``: ``[B, L]``, one :data:`IMAGE_SENTINEL` per row where ``<image>`` was
        and a ``<mask>``/``<pos>`` pair per region; ``images``: ``[B, 3, S, S]``
        preprocessed; ``masks[b]``: row b's region masks ``[Q_b, H, W]`` at the image's
        resolution, in prompt order. As the official ``prepare_inputs_labels_for_multimodal``:

        1. vision trunk -> ``mm_projector``: N image tokens per image;
        2. mask pooling over the four trunk levels (mask token) and the position MLP on the
           resized mask (position token), one pair per region;
        3. text through the embedding table, the sentinel replaced by the image's tokens,
           the k-th ``<mask>`` / ``<pos>`` by region k's mask / position token (cast to
           the text embeddings' dtype). The placeholder ids are never looked up: they lie
           past the embedding table in the official checkpoints.
        """
        input_ids = input_ids.to(self.device)
        rows, length = input_ids.shape
        image_tokens, feats = self.encode_images(images)
        n_image = image_tokens.shape[1]

        # Region tokens of every row, rows concatenated (the official mask extractor takes
        # one [Q, H, W] stack per image).
        mask_shape = self.config.vision.mask_shape
        per_row = [prepare_masks(m, self.level_sizes(), mask_shape) for m in masks if len(m)]
        image_index = torch.tensor([b for b, m in enumerate(masks) for _ in m], dtype=torch.long)
        mask_tokens = pos_tokens = torch.zeros(0, self.config.hidden_size, device=self.device)
        if per_row:
            mask_tokens, pos_tokens = self.region_tokens(feats, image_index, PreparedMasks.cat(per_row))

        is_text = (input_ids != IMAGE_SENTINEL) & (input_ids != mask_token_id) & (input_ids != pos_token_id)
        # A placeholder looks up a real row (LOOKUP_FILLER_ID) that is overwritten below.
        text = self.embed_text(torch.where(is_text, input_ids, LOOKUP_FILLER_ID))
        has_image = (input_ids == IMAGE_SENTINEL).sum(dim=1).tolist()
        if any(n > 1 for n in has_image) or len(set(has_image)) > 1:
            raise ValueError(f"every row needs the same single <image> (sentinels per row: {has_image})")
        # A prompt without <image> reads no image tokens (the official "not multimodal" case).
        width = length + (n_image - 1) * has_image[0] if rows else 0
        out = torch.zeros(rows, width, text.shape[-1], dtype=self.llm_dtype, device=self.device)
        first_region = 0
        for b in range(rows):
            # Where each input position lands once the sentinel becomes N image positions.
            spliced = torch.arange(length, device=self.device)
            if has_image[b]:
                at = int((input_ids[b] == IMAGE_SENTINEL).nonzero()[0, 0])
                spliced[at + 1 :] += n_image - 1
                out[b, at : at + n_image] = image_tokens[b].to(out.dtype)
            out[b, spliced[is_text[b]]] = text[b, is_text[b]]
            mask_at = spliced[input_ids[b] == mask_token_id]
            pos_at = spliced[input_ids[b] == pos_token_id]
            if not len(mask_at) == len(pos_at) == len(masks[b]):
                raise ValueError(
                    f"row {b}: {len(mask_at)} <mask>, {len(pos_at)} <pos>, {len(masks[b])} mask(s)"
                )
            regions = slice(first_region, first_region + len(mask_at))
            if len(mask_at):
                out[b, mask_at] = mask_tokens[regions].to(out.dtype)
                out[b, pos_at] = pos_tokens[regions].to(out.dtype)
            first_region = regions.stop
        return out

    def forward(
        self,
        input_ids: torch.Tensor,
        images: torch.Tensor,
        masks: Sequence[torch.Tensor],
        mask_token_id: int,
        pos_token_id: int,
    ) -> torch.Tensor:
        """Next-token logits ``[B, L + N - 1, vocab]`` of B unpadded prompts of one length.

        Vision trunk -> mask pooling + position MLP -> projector -> spliced embeddings
        (:meth:`embed_inputs`) -> LLaMA decoder -> ``lm_head``, the official forward
        without labels or KV cache.
        """
        embeds = self.embed_inputs(input_ids, images, masks, mask_token_id, pos_token_id)
        hidden = self.llm.model(inputs_embeds=embeds).last_hidden_state
        logits: torch.Tensor = self.llm.lm_head(hidden)
        return logits

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        return {to_official_key(k): v for k, v in self.state_dict().items()}
