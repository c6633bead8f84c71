"""SAM's prompt encoder and mask decoder, as GLaMM drives them with ``[SEG]`` embeddings.

Official module names (``model.grounding_encoder.prompt_encoder.*``, ``.mask_decoder.*``;
groundingLMM e74865f ``model/SAM/modeling/{prompt_encoder,mask_decoder,transformer}.py``).
GLaMM's prompt encoder takes one more prompt kind, ``text_embeds``: the projected hidden
state of each ``[SEG]`` token becomes a one-token sparse prompt, with no points, boxes or
mask, so the dense prompt is ``no_mask_embed`` everywhere. The point / box / mask-input
layers are kept (they are in every checkpoint) but GLaMM never calls them.

:func:`upscale_to_image` is ``Sam.postprocess_masks``: low-resolution logits bilinearly
resized to the padded square, the padding cropped, resized to the original image; a pixel
is in the mask where the logit is ``> 0``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evalkit.models.glamm.config import SamSpec
from evalkit.models.glamm.sam_encoder import LayerNorm2d, MLPBlock

NUM_POINT_EMBEDDINGS = 4  # positive/negative point + two box corners
ATTENTION_DOWNSAMPLE = 2  # token<->image attention works at half width


class PositionEmbeddingRandom(nn.Module):
    """Fourier features of ``[0, 1]`` coordinates with a fixed random Gaussian matrix."""

    positional_encoding_gaussian_matrix: torch.Tensor

    def __init__(self, features: int):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn((2, features)))

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        matrix = self.positional_encoding_gaussian_matrix
        coords = 2 * coords - 1
        coords = 2 * np.pi * (coords.to(matrix.dtype) @ matrix)
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """``[C, h, w]`` encoding of the cell centres of an ``h x w`` grid (in the buffer's
        dtype, as the official code computes it: bf16 in the released mix)."""
        h, w = size
        matrix = self.positional_encoding_gaussian_matrix
        grid = torch.ones((h, w), device=matrix.device, dtype=matrix.dtype)
        y = (grid.cumsum(dim=0) - 0.5) / h
        x = (grid.cumsum(dim=1) - 0.5) / w
        return self.encode(torch.stack([x, y], dim=-1)).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    def __init__(self, spec: SamSpec):
        super().__init__()
        dim = spec.prompt_dim
        self.embed_dim = dim
        self.image_embedding_size = (spec.grid, spec.grid)
        self.pe_layer = PositionEmbeddingRandom(dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, dim) for _ in range(NUM_POINT_EMBEDDINGS))
        self.not_a_point_embed = nn.Embedding(1, dim)
        chans = spec.mask_in_chans
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(chans // 4),
            nn.GELU(),
            nn.Conv2d(chans // 4, chans, kernel_size=2, stride=2),
            LayerNorm2d(chans),
            nn.GELU(),
            nn.Conv2d(chans, dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, dim)

    def dense_pe(self) -> torch.Tensor:
        """``get_dense_pe``: ``[1, C, h, w]``."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def text_prompts(self, text_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward(points=None, boxes=None, masks=None, text_embeds=...)`` for ``[N, 1, C]``:
        sparse ``[N, 1, C]`` (cast to the embeddings' dtype, as ``_generate_and_postprocess_masks``
        does) and dense ``[N, C, h, w]`` prompts."""
        n = text_embeds.shape[0]
        h, w = self.image_embedding_size
        dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(n, -1, h, w)
        return text_embeds, dense


class Attention(nn.Module):
    """Attention with the projections optionally downsampled to ``dim // downsample``."""

    def __init__(self, dim: int, heads: int, downsample: int = 1):
        super().__init__()
        self.heads = heads
        inner = dim // downsample
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(dim, inner)
        self.v_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split(self.q_proj(q)), self.split(self.k_proj(k)), self.split(self.v_proj(v))
        attn = (q @ k.permute(0, 1, 3, 2)) / math.sqrt(q.shape[-1])
        out = attn.softmax(dim=-1) @ v
        b, heads, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, heads * c))


class TwoWayAttentionBlock(nn.Module):
    """Tokens attend to themselves and to the image; then the image attends to the tokens."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, skip_first_layer_pe: bool):
        super().__init__()
        self.self_attn = Attention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = Attention(dim, heads, ATTENTION_DOWNSAMPLE)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_dim, nn.ReLU)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = Attention(dim, heads, ATTENTION_DOWNSAMPLE)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor, key_pe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, depth: int, dim: int, heads: int, mlp_dim: int):
        super().__init__()
        self.layers = nn.ModuleList(TwoWayAttentionBlock(dim, heads, mlp_dim, i == 0) for i in range(depth))
        self.final_attn_token_to_image = Attention(dim, heads, ATTENTION_DOWNSAMPLE)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(
        self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``image`` / ``image_pe`` ``[B, C, h, w]``, ``tokens`` ``[B, N, C]`` -> (tokens, image
        as ``[B, h*w, C]``)."""
        keys = image.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        attn = self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries + attn), keys


class MLP(nn.Module):
    def __init__(self, dim_in: int, hidden: int, dim_out: int, layers: int):
        super().__init__()
        dims = [dim_in] + [hidden] * (layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, [*dims[1:], dim_out], strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = F.relu(layer(x)) if i < len(self.layers) - 1 else layer(x)
        return x


class MaskDecoder(nn.Module):
    def __init__(self, spec: SamSpec):
        super().__init__()
        dim = spec.prompt_dim
        self.transformer = TwoWayTransformer(
            spec.decoder_depth, dim, spec.decoder_heads, spec.decoder_mlp_dim
        )
        self.iou_token = nn.Embedding(1, dim)
        self.num_mask_tokens = spec.num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(dim, spec.iou_head_hidden_dim, self.num_mask_tokens, 3)

    def forward(
        self,
        image_embedding: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
    ) -> torch.Tensor:
        """Single-mask logits ``[N, 1, 4h, 4w]`` for N prompts on one image ``[1, C, h, w]``
        (``multimask_output=False``: the first mask token's mask)."""
        tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([tokens.unsqueeze(0).expand(sparse.shape[0], -1, -1), sparse], dim=1)
        src = torch.repeat_interleave(image_embedding, tokens.shape[0], dim=0) + dense
        pos = torch.repeat_interleave(image_pe, tokens.shape[0], dim=0)
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos, tokens)
        mask_tokens = hs[:, 1 : 1 + self.num_mask_tokens, :]
        upscaled = self.output_upscaling(src.transpose(1, 2).view(b, c, h, w))
        hyper = torch.stack(
            [mlp(mask_tokens[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        b, c, h, w = upscaled.shape
        masks = (hyper @ upscaled.view(b, c, h * w)).view(b, self.num_mask_tokens, h, w)
        return masks[:, 0:1]


def upscale_to_image(
    low_res: torch.Tensor, padded_size: int, resized: tuple[int, int], original: tuple[int, int]
) -> torch.Tensor:
    """``Sam.postprocess_masks``: ``[N, 1, h, w]`` logits -> ``[N, H, W]`` float32 logits at the
    original size (``resized``: the image's size inside the padded square)."""
    masks = F.interpolate(low_res.float(), (padded_size, padded_size), mode="bilinear", align_corners=False)
    masks = masks[..., : resized[0], : resized[1]]
    return F.interpolate(masks, original, mode="bilinear", align_corners=False)[:, 0]
