"""SAM's image encoder (the ViT of ``segment_anything``), GLaMM's grounding image encoder.

Plain torch with the official module names, so ``model.grounding_encoder.image_encoder.*``
keys load as they are (groundingLMM e74865f ``model/SAM/modeling/image_encoder.py``, the
Segment Anything code): patch embedding, absolute position embedding, blocks with windowed
or global attention and decomposed relative positions, and a convolutional neck down to the
prompt width. The output is ``[B, prompt_dim, S/16, S/16]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from evalkit.models.glamm.config import SamSpec

VIT_LAYER_NORM_EPS = 1e-6  # partial(nn.LayerNorm, eps=1e-6) in build_sam
MLP_RATIO = 4


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of ``[B, C, H, W]`` (``common.LayerNorm2d``)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class MLPBlock(nn.Module):
    def __init__(self, dim: int, hidden: int, act: type[nn.Module] = nn.GELU):
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)  # [B, H, W, C]


def relative_positions(q_size: int, k_size: int, table: torch.Tensor) -> torch.Tensor:
    """``get_rel_pos``: the ``[q, k, C]`` embeddings of every (query, key) offset along one axis,
    the table resized linearly when its length is not ``2 * max(q, k) - 1``."""
    length = 2 * max(q_size, k_size) - 1
    if table.shape[0] != length:
        table = F.interpolate(
            table.reshape(1, table.shape[0], -1).permute(0, 2, 1), size=length, mode="linear"
        )
        table = table.reshape(-1, length).permute(1, 0)
    q = torch.arange(q_size)[:, None] * max(k_size / q_size, 1.0)
    k = torch.arange(k_size)[None, :] * max(q_size / k_size, 1.0)
    offsets = (q - k) + (k_size - 1) * max(q_size / k_size, 1.0)
    return table[offsets.long()]


class Attention(nn.Module):
    """Multi-head attention over an ``[B, H, W, C]`` grid with decomposed relative positions."""

    def __init__(self, dim: int, heads: int, grid: int):
        super().__init__()
        self.heads = heads
        head_dim = dim // heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * grid - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * grid - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * self.heads, h * w, -1).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        # add_decomposed_rel_pos: a height term and a width term per (query, key) pair.
        rel_h = relative_positions(h, h, self.rel_pos_h)
        rel_w = relative_positions(w, w, self.rel_pos_w)
        grid_q = q.reshape(b * self.heads, h, w, -1)
        by_row = torch.einsum("bhwc,hkc->bhwk", grid_q, rel_h)
        by_col = torch.einsum("bhwc,wkc->bhwk", grid_q, rel_w)
        attn = (attn.view(-1, h, w, h, w) + by_row[..., :, None] + by_col[..., None, :]).view(
            -1, h * w, h * w
        )
        out = (attn.softmax(dim=-1) @ v).view(b, self.heads, h, w, -1).permute(0, 2, 3, 1, 4)
        return self.proj(out.reshape(b, h, w, -1))


def window_partition(x: torch.Tensor, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """``[B, H, W, C]`` -> ``[B * windows, size, size, C]``, zero-padded to whole windows."""
    b, h, w, c = x.shape
    pad_h, pad_w = (size - h % size) % size, (size - w % size) % size
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // size, size, wp // size, size, c).permute(0, 1, 3, 2, 4, 5)
    return x.contiguous().view(-1, size, size, c), (hp, wp)


def window_unpartition(
    windows: torch.Tensor, size: int, padded: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    hp, wp = padded
    h, w = hw
    b = windows.shape[0] // (hp * wp // size // size)
    x = windows.view(b, hp // size, wp // size, size, size, -1).permute(0, 1, 3, 2, 4, 5)
    x = x.contiguous().view(b, hp, wp, -1)
    return x[:, :h, :w, :].contiguous() if (hp > h or wp > w) else x


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, grid: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=VIT_LAYER_NORM_EPS)
        self.attn = Attention(dim, heads, window if window > 0 else grid)
        self.norm2 = nn.LayerNorm(dim, eps=VIT_LAYER_NORM_EPS)
        self.mlp = MLPBlock(dim, dim * MLP_RATIO)
        self.window = window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window > 0:
            hw = (x.shape[1], x.shape[2])
            x, padded = window_partition(x, self.window)
            x = window_unpartition(self.attn(x), self.window, padded, hw)
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class ImageEncoderViT(nn.Module):
    def __init__(self, spec: SamSpec):
        super().__init__()
        self.img_size = spec.image_size
        grid = spec.grid
        self.patch_embed = PatchEmbed(spec.patch_size, spec.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, spec.embed_dim))
        self.blocks = nn.ModuleList(
            Block(
                spec.embed_dim,
                spec.num_heads,
                0 if i in spec.global_attn_indexes else spec.window_size,
                grid,
            )
            for i in range(spec.depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(spec.embed_dim, spec.prompt_dim, kernel_size=1, bias=False),
            LayerNorm2d(spec.prompt_dim),
            nn.Conv2d(spec.prompt_dim, spec.prompt_dim, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(spec.prompt_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` (normalised, padded) -> ``[B, prompt_dim, S/16, S/16]``."""
        x = self.patch_embed(x) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))
