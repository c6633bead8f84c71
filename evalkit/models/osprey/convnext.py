"""The ConvNeXt trunk of Osprey's CLIP vision tower, in plain torch.

Parameter names follow timm's ``ConvNeXt`` (what open_clip wraps as ``visual.trunk``), so the
official ``open_clip_pytorch_model.bin`` and Osprey checkpoints load key for key:

* ``stem.0`` conv 4x4 stride 4, ``stem.1`` LayerNorm2d;
* ``stages.N.downsample.0`` LayerNorm2d + ``stages.N.downsample.1`` conv 2x2 stride 2
  (stages 1..3; stage 0 has no downsample);
* ``stages.N.blocks.M.{conv_dw, norm, mlp.fc1, mlp.fc2, gamma}``: depthwise 7x7 conv,
  channels-last LayerNorm, MLP x4 with exact GELU, layer scale.

``norm_pre`` is the identity in this configuration and the classifier ``head`` is never
used by Osprey, so neither has parameters here. Every LayerNorm uses eps 1e-6 (timm's).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-6
RGB_CHANNELS = 3
STEM_PATCH = 4  # stem conv kernel = stride: res2 has stride 4
DOWNSAMPLE = 2  # each later stage halves the grid: strides 8, 16, 32
DEPTHWISE_KERNEL = 7
MLP_RATIO = 4
LAYER_SCALE_INIT = 1e-6  # timm's default; a checkpoint overwrites it


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dimension of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, layer_scale_init: float = LAYER_SCALE_INIT):
        super().__init__()
        self.conv_dw = nn.Conv2d(
            dim, dim, kernel_size=DEPTHWISE_KERNEL, padding=DEPTHWISE_KERNEL // 2, groups=dim
        )
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, MLP_RATIO * dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.conv_dw(x).permute(0, 2, 3, 1)
        x = self.mlp(self.norm(x)) * self.gamma
        return x.permute(0, 3, 1, 2) + shortcut


class ConvNeXtStage(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, depth: int, downsample: bool):
        super().__init__()
        self.downsample: nn.Module
        if downsample:
            self.downsample = nn.Sequential(
                LayerNorm2d(in_dim, eps=LN_EPS),
                nn.Conv2d(in_dim, out_dim, kernel_size=DOWNSAMPLE, stride=DOWNSAMPLE),
            )
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(*[ConvNeXtBlock(out_dim) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class ConvNeXtTrunk(nn.Module):
    """Returns the four stage outputs ``res2..res5`` (strides 4, 8, 16, 32)."""

    def __init__(self, depths: tuple[int, ...], dims: tuple[int, ...]):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(RGB_CHANNELS, dims[0], kernel_size=STEM_PATCH, stride=STEM_PATCH),
            LayerNorm2d(dims[0], eps=LN_EPS),
        )
        stages = []
        prev = dims[0]
        for i, (depth, dim) in enumerate(zip(depths, dims, strict=True)):
            stages.append(ConvNeXtStage(prev, dim, depth, downsample=i > 0))
            prev = dim
        self.stages = nn.ModuleList(stages)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        stem_conv: nn.Conv2d = self.stem[0]  # type: ignore[assignment]
        x = self.stem(images.to(stem_conv.weight.dtype))
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats
