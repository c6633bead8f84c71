"""The GLaMM model: CLIP -> projector (image tokens), region encoder (``<bbox>`` tokens), a
transformers ``LlamaForCausalLM``, and SAM, which turns each ``[SEG]`` hidden state into a mask.

:meth:`GLaMMModel.forward` is the reference computation of one prompt, top to bottom, as the
official ``GLaMMForCausalLM`` runs it (groundingLMM e74865f, ``model/GLaMM.py`` +
``model/llava/llava_with_region_arch.py`` ``prepare_inputs_labels_for_multimodal``): CLIP
patch tokens of layer ``mm_vision_select_layer`` through ``mm_projector`` replace the
``<image>`` sentinel, region-encoder embeddings replace each ``<bbox>`` token, the LLaMA
decoder runs, and :meth:`GLaMMModel.masks` decodes the masks of the ``[SEG]`` positions.
The generation path (:mod:`evalkit.models.glamm.generation`) uses the same pieces with a KV
cache.

**Which hidden state makes a mask.** ``_create_seg_token_mask`` marks ``input_ids[:, 1:] ==
[SEG]`` after 575 (= image tokens - 1) leading zeros: the hidden state taken for a ``[SEG]``
at position t is the one at t - 1 — the state whose logits chose ``[SEG]``.

Internal module names differ from the official ones only by prefix; :func:`to_internal_key`
and :func:`to_official_key` map between them (checkpoints are read and written in the
official layout):

=========================================================  ===========================
official key                                               internal key
=========================================================  ===========================
``model.vision_tower.vision_tower.vision_model.*``         ``clip.*``
``model.mm_projector.*``                                   ``mm_projector.*``
``model.region_encoder.*``                                 ``region_encoder.*``
``model.grounding_encoder.*`` (SAM)                        ``grounding_encoder.*``
``model.text_hidden_fcs.*``                                ``text_hidden_fcs.*``
``model.*`` (LLaMA decoder), ``lm_head.*``                 ``llm.model.*``, ``llm.lm_head.*``
=========================================================  ===========================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from evalkit.models.glamm.config import GLaMMConfig
from evalkit.models.glamm.region_encoder import RegionEncoder
from evalkit.models.glamm.sam_decoder import MaskDecoder, PromptEncoder, upscale_to_image
from evalkit.models.glamm.sam_encoder import ImageEncoderViT

IMAGE_SENTINEL = -200  # IMAGE_TOKEN_INDEX of the official code (tools/utils.py)
LOOKUP_FILLER_ID = 0  # a valid embedding row, looked up in place of the image sentinel
CLIP_PREFIX = "model.vision_tower.vision_tower."
CLIP_OWN_PREFIX = "vision_model."  # a CLIP checkpoint's vision keys (CLIPModel / CLIPVisionModel)
GLAMM_PARTS = ("mm_projector.", "region_encoder.", "grounding_encoder.", "text_hidden_fcs.")
LLM_PREFIX = "llm."


def to_internal_key(key: str) -> str | None:
    if key.startswith(CLIP_PREFIX):
        rest = key[len(CLIP_PREFIX) :]
        return "clip." + rest[len(CLIP_OWN_PREFIX) :] if rest.startswith(CLIP_OWN_PREFIX) else None
    if key.startswith("model."):
        rest = key[len("model.") :]
        if rest.startswith(GLAMM_PARTS):
            return rest
        return LLM_PREFIX + key
    if key.startswith("lm_head."):
        return LLM_PREFIX + key
    return None


def to_official_key(key: str) -> str:
    if key.startswith("clip."):
        return CLIP_PREFIX + CLIP_OWN_PREFIX + key[len("clip.") :]
    if key.startswith(GLAMM_PARTS):
        return "model." + key
    if key.startswith(LLM_PREFIX):
        return key[len(LLM_PREFIX) :]
    return key


def llama_config(config: GLaMMConfig, attn_implementation: str = "sdpa") -> Any:
    from transformers import LlamaConfig

    kwargs = dict(config.llama)
    for key in ("torch_dtype", "dtype", "use_cache"):
        kwargs.pop(key, None)
    llama = LlamaConfig(**kwargs)
    llama._attn_implementation = attn_implementation
    return llama


def clip_config(config: GLaMMConfig, attn_implementation: str = "sdpa") -> Any:
    from transformers import CLIPVisionConfig

    spec = config.vision.clip
    clip = CLIPVisionConfig(
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        image_size=spec.image_size,
        patch_size=spec.patch_size,
        hidden_act=spec.hidden_act,
        layer_norm_eps=spec.layer_norm_eps,
    )
    clip._attn_implementation = attn_implementation
    return clip


class GroundingEncoder(nn.Module):
    """SAM as GLaMM holds it (``model.grounding_encoder``)."""

    def __init__(self, config: GLaMMConfig):
        super().__init__()
        spec = config.vision.sam
        self.image_encoder = ImageEncoderViT(spec)
        self.prompt_encoder = PromptEncoder(spec)
        self.mask_decoder = MaskDecoder(spec)


@dataclass
class ImageFeatures:
    """What the global image encoder gives one batch of images."""

    tokens: torch.Tensor  # [B, N, hidden]: the decoder's image tokens
    region_levels: list[torch.Tensor]  # the region encoder's CLIP layers, [B, N, C] each


class GLaMMModel(nn.Module):
    def __init__(self, config: GLaMMConfig, attn_implementation: str = "sdpa"):
        super().__init__()
        from transformers import CLIPVisionModel, LlamaForCausalLM

        self.config = config
        hidden = config.hidden_size
        self.llm = LlamaForCausalLM(llama_config(config, attn_implementation))
        self.clip = CLIPVisionModel(clip_config(config, attn_implementation))
        self.mm_projector = nn.Sequential(
            nn.Linear(config.mm_hidden_size, hidden), nn.GELU(), nn.Linear(hidden, hidden)
        )
        clip = config.vision.clip
        self.region_encoder = RegionEncoder(clip.hidden_size, clip.patch_size, hidden, config.vision.region)
        self.grounding_encoder = GroundingEncoder(config)
        self.text_hidden_fcs = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Linear(hidden, hidden),
                    nn.ReLU(inplace=True),
                    nn.Linear(hidden, config.out_dim),
                    nn.Dropout(0.0),
                )
            ]
        )

    def rebuild_buffers(self) -> GLaMMModel:
        """The non-persistent buffers (RoPE inverse frequencies, CLIP position ids), in no
        checkpoint, rebuilt after construction on the meta device."""
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

        device = self.device if self.device.type != "meta" else torch.device("cpu")
        self.llm.model.rotary_emb = LlamaRotaryEmbedding(config=self.llm.config).to(device)
        embeddings = self.clip.embeddings
        positions = torch.arange(embeddings.num_positions, device=device).expand((1, -1))
        embeddings.register_buffer("position_ids", positions, persistent=False)
        return self

    @property
    def device(self) -> torch.device:
        return self.llm.model.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.llm.model.embed_tokens.weight.dtype

    # ------------------------------------------------------------------ pieces
    def encode_images(self, images: torch.Tensor) -> ImageFeatures:
        """CLIP ``[B, 3, S, S]`` -> image tokens and the region encoder's layers.

        ``CLIPVisionTower.feature_select``: layer ``mm_vision_select_layer`` (-2) without CLS,
        then ``mm_projector``; the region encoder reads ``hidden_states[-2::-3][::-1][-4:]``
        (layers 14, 17, 20, 23 of ViT-L's 25 states), CLS dropped.
        """
        images = images.to(device=self.device, dtype=self.dtype)
        out = self.clip(pixel_values=images, output_hidden_states=True)
        states = out.hidden_states
        select = self.config.mm_vision_select_layer
        tokens = self.mm_projector(states[select][:, 1:].to(images.dtype))
        levels = list(states[select::-3][::-1][-self.config.vision.region.num_levels :])
        return ImageFeatures(tokens, [level[:, 1:].to(images.dtype) for level in levels])

    def region_maps(self, features: ImageFeatures) -> list[torch.Tensor]:
        """The region encoder's fused maps of the images of ``features`` (per image, not per
        box: an image's requests share them)."""
        return self.region_encoder.fuse(features.region_levels)

    def region_tokens(self, maps: list[torch.Tensor], boxes: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """One ``[n_i, hidden]`` stack per image of ``maps``: its boxes' ``<bbox>`` embeddings
        (``boxes[i]`` ``[n_i, 4]`` normalised ``x1y1x2y2``)."""
        boxes = [b.to(device=self.device, dtype=self.dtype) for b in boxes]
        return self.region_encoder.extract(maps, boxes)

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.llm.model.embed_tokens(ids.to(self.device))

    def embed_inputs(
        self,
        input_ids: torch.Tensor,
        image_tokens: torch.Tensor,
        bbox_tokens: torch.Tensor | None,
        bbox_token_id: int,
    ) -> torch.Tensor:
        """The decoder input ``[L + N - 1, hidden]`` of one prompt.

        ``input_ids`` ``[L]`` holds one :data:`IMAGE_SENTINEL` where ``<image>`` was; its
        place takes the N image tokens ``image_tokens`` ``[N, hidden]``. Every other id is
        looked up, and the k-th ``<bbox>`` embedding is then replaced by ``bbox_tokens[k]``
        (the reference multiplies the text embeddings by 0 there and adds the region
        embedding). A prompt without ``<image>`` reads no image.
        """
        input_ids = input_ids.to(self.device)
        is_image = input_ids == IMAGE_SENTINEL
        text = self.embed_text(torch.where(is_image, LOOKUP_FILLER_ID, input_ids))
        if int(is_image.sum()) > 1:
            raise ValueError("a GLaMM prompt takes one <image>")
        if bool(is_image.any()):
            at = int(is_image.nonzero()[0, 0])
            embeds = torch.cat([text[:at], image_tokens.to(text.dtype), text[at + 1 :]])
            ids = torch.cat(
                [
                    input_ids[:at],
                    input_ids.new_full((image_tokens.shape[0],), IMAGE_SENTINEL),
                    input_ids[at + 1 :],
                ]
            )
        else:
            embeds, ids = text, input_ids
        is_bbox = ids == bbox_token_id
        n_bbox = int(is_bbox.sum())
        if n_bbox:
            if bbox_tokens is None or bbox_tokens.shape[0] != n_bbox:
                given = 0 if bbox_tokens is None else bbox_tokens.shape[0]
                raise ValueError(f"the prompt has {n_bbox} <bbox> token(s) but {given} box(es)")
            embeds = embeds.clone()
            embeds[is_bbox] = bbox_tokens.to(embeds.dtype)
        return embeds

    def encode_sam(self, images: torch.Tensor) -> torch.Tensor:
        """SAM's image embedding ``[B, C, S/16, S/16]`` of normalised, padded ``[B, 3, S, S]``."""
        return self.grounding_encoder.image_encoder(images.to(device=self.device, dtype=self.dtype))

    def masks(
        self,
        seg_hidden: torch.Tensor,
        sam_embedding: torch.Tensor,
        resized: tuple[int, int],
        original: tuple[int, int],
    ) -> torch.Tensor:
        """Mask logits ``[n, H, W]`` (float32, original size) of n ``[SEG]`` hidden states
        ``[n, hidden]`` on one image (``sam_embedding`` ``[1, C, h, w]``).

        ``_generate_and_postprocess_masks``: ``text_hidden_fcs`` -> a one-token sparse prompt
        each -> the mask decoder (single mask) -> ``postprocess_masks``.
        """
        prompt = self.text_hidden_fcs[0](seg_hidden.to(device=self.device, dtype=self.dtype))
        encoder = self.grounding_encoder
        sparse, dense = encoder.prompt_encoder.text_prompts(prompt[:, None, :])
        low_res = encoder.mask_decoder(sam_embedding, encoder.prompt_encoder.dense_pe(), sparse, dense)
        return upscale_to_image(low_res, self.config.vision.sam.image_size, resized, original)

    # ------------------------------------------------------------------ reference path
    def forward(
        self,
        input_ids: torch.Tensor,
        clip_image: torch.Tensor,
        boxes: torch.Tensor | None,
        bbox_token_id: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Final hidden states and next-token logits ``[L + N - 1, *]`` of one unpadded prompt.

        CLIP -> ``mm_projector`` (image tokens) and region encoder (``<bbox>`` tokens) ->
        spliced embeddings (:meth:`embed_inputs`) -> LLaMA decoder (final norm) -> ``lm_head``:
        the official forward of one sequence without cache, as ``evaluate`` runs it.
        """
        features = self.encode_images(clip_image[None])
        bbox_tokens = None
        if boxes is not None and len(boxes):
            bbox_tokens = self.region_tokens(self.region_maps(features), [boxes])[0]
        embeds = self.embed_inputs(input_ids, features.tokens[0], bbox_tokens, bbox_token_id)
        hidden = self.llm.model(inputs_embeds=embeds[None]).last_hidden_state[0]
        return hidden, self.llm.lm_head(hidden)

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        return {to_official_key(k): v for k, v in self.state_dict().items()}
