"""The Osprey model: ConvNeXt trunk -> projector (image tokens), mask extractor (region
tokens), and a transformers ``LlamaForCausalLM`` that reads the spliced embeddings.

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
from typing import Any

import torch
from torch import nn

from evalkit.models.osprey.config import OspreyConfig
from evalkit.models.osprey.convnext import ConvNeXtTrunk
from evalkit.models.osprey.mask_extractor import MaskExtractor, PreparedMasks

TRUNK_PREFIX = "model.vision_tower.vision_tower.visual.trunk."
PROJECTOR_PREFIX = "model.mm_projector."


def to_internal_key(key: str) -> str | None:
    if key.startswith(TRUNK_PREFIX):
        return "trunk." + key[len(TRUNK_PREFIX) :]
    if key.startswith("model.vision_tower."):
        return None  # the CLIP head and anything else of the tower: unused by Osprey
    if key.startswith(PROJECTOR_PREFIX):
        return "mm_projector." + key[len(PROJECTOR_PREFIX) :]
    if key.startswith("mask_extractor."):
        return key
    if key.startswith(("model.", "lm_head.")):
        return "llm." + key
    return None


def to_official_key(key: str) -> str:
    if key.startswith("trunk."):
        return TRUNK_PREFIX + key[len("trunk.") :]
    if key.startswith("mm_projector."):
        return PROJECTOR_PREFIX + key[len("mm_projector.") :]
    if key.startswith("llm."):
        return key[len("llm.") :]
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
        size = self.config.vision.image_size
        return [(size // s, size // s) for s in (4, 8, 16, 32)]

    def encode_images(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``[B, 3, S, S]`` -> image tokens ``[B, N, hidden]`` (vision dtype), trunk features."""
        images = images.to(self.device)
        if self.pixels_via is not None:
            images = images.to(self.pixels_via)
        feats = self.trunk(images.to(self.vision_dtype))
        res4 = feats[2].flatten(2).transpose(1, 2)  # [B, N, C] in row-major grid order
        return self.mm_projector(res4), feats

    def region_tokens(
        self, feats: list[torch.Tensor], image_index: torch.Tensor, prepared: PreparedMasks
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mask_extractor(feats, image_index.to(self.device), prepared.to(self.device))

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.llm.model.embed_tokens(ids.to(self.device))

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        return {to_official_key(k): v for k, v in self.state_dict().items()}
