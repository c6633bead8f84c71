"""GLaMM's region encoder: ``<bbox>`` embeddings from four CLIP layers (``MLVLROIQueryModule``).

groundingLMM e74865f ``model/layers.py``, in plain torch with the official module names
(``model.region_encoder.mlvl_fuse.*``, ``.roi_align.*``), without mmcv / mmdet:

1. four CLIP layers' patch tokens as ``[B, C, g, g]`` maps, bilinearly resized
   (``align_corners=True``, in float32, then cast to bfloat16 — the released code's
   "temporary fix", kept: the features the model was trained on) to 8g, 4g, 2g and g;
2. ``MLVLFuseModule``: each map with two coordinate channels through a 1x1 convolution, then
   five rounds of a shared 3x3 conv + GroupNorm + ReLU over each level, where a level keeps
   half its channels and takes a quarter from the next coarser and a quarter from the next
   finer level (bilinearly resized, ``align_corners=True``);
3. ``MlvlRoIExtractor``: RoIAlign (14x14, 2x2 samples per bin, ``aligned=True``: mmcv's
   defaults) of every box on every level at strides ``patch/8 .. patch`` — the boxes
   normalised to [0, 1] times :attr:`RegionSpec.roi_box_scale` (224 in the release) —, a
   3x3 conv per level, summed, ReLU, flattened through ``flatten_linear``, plus an MLP of
   the normalised box, then ``updims`` to the decoder width.

mmcv's ``ConvModule(conv, GroupNorm, ReLU)`` has no conv bias when a norm follows and names
its parts ``conv`` / ``gn``; :class:`ConvGNReLU` keeps those names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from evalkit.models.glamm.config import RegionSpec

COORD_CHANNELS = 2  # the x, y channels MLVLFuseModule concatenates to each level


def bilinear_weights(coords: torch.Tensor, size: int) -> torch.Tensor:
    """``[K, P]`` sample coordinates along one axis of length ``size`` -> ``[K, P, size]``
    interpolation weights, with mmcv's ``bilinear_interpolate`` rules: a coordinate outside
    ``[-1, size]`` samples zero, one in ``[-1, 0]`` is clamped to 0, one past ``size - 1``
    reads the last cell."""
    valid = (coords >= -1.0) & (coords <= size)
    c = coords.clamp(min=0.0)
    low = c.floor().long()
    last = low >= size - 1
    low = torch.where(last, torch.full_like(low, size - 1), low)
    high = torch.where(last, low, low + 1)
    c = torch.where(last, low.to(c.dtype), c)
    frac = c - low.to(c.dtype)
    weights = torch.zeros(*coords.shape, size, dtype=coords.dtype, device=coords.device)
    weights.scatter_add_(-1, low[..., None], (1 - frac)[..., None])
    weights.scatter_add_(-1, high[..., None], frac[..., None])
    return weights * valid[..., None].to(weights.dtype)


def roi_align(
    features: torch.Tensor,
    rois: torch.Tensor,
    output_size: int,
    spatial_scale: float,
    sampling_ratio: int,
) -> torch.Tensor:
    """mmcv ``RoIAlign(aligned=True, pool_mode='avg')`` (= torchvision ``roi_align`` with
    ``aligned=True``): ``features`` ``[B, C, H, W]``, ``rois`` ``[K, 5]`` rows
    ``(batch index, x1, y1, x2, y2)`` in input pixels -> ``[K, C, out, out]``.

    Each output bin averages ``sampling_ratio``² bilinear samples; bilinear sampling is
    separable in y and x, so the samples of a box are ``Wy @ F @ Wxᵀ`` with the
    per-axis weight matrices of :func:`bilinear_weights`.
    """
    _, _, height, width = features.shape
    boxes = rois[:, 1:] * spatial_scale - 0.5  # aligned: pixel centres at +0.5
    starts_x, starts_y = boxes[:, 0], boxes[:, 1]
    bin_w = (boxes[:, 2] - boxes[:, 0]) / output_size
    bin_h = (boxes[:, 3] - boxes[:, 1]) / output_size
    # Sample j of bin p sits at start + p * bin + (j + 0.5) * bin / ratio.
    steps = (
        torch.arange(output_size * sampling_ratio, device=rois.device, dtype=rois.dtype) + 0.5
    ) / sampling_ratio
    xs = starts_x[:, None] + steps[None, :] * bin_w[:, None]
    ys = starts_y[:, None] + steps[None, :] * bin_h[:, None]
    wy = bilinear_weights(ys, height)  # [K, out * r, H]
    wx = bilinear_weights(xs, width)  # [K, out * r, W]
    k, c = rois.shape[0], features.shape[1]
    samples = features.new_zeros(k, c, ys.shape[1], xs.shape[1])
    image_of = rois[:, 0].long()
    for image in image_of.unique().tolist():
        rows = (image_of == image).nonzero()[:, 0]
        along_y = torch.einsum("kyh,chw->kcyw", wy[rows], features[image])
        samples[rows] = torch.einsum("kcyw,kxw->kcyx", along_y, wx[rows])
    r = sampling_ratio
    return samples.view(k, c, output_size, r, output_size, r).mean(dim=(3, 5))


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear ``align_corners=True`` in float32, back to ``x``'s dtype (as the reference)."""
    return F.interpolate(x.to(torch.float32), size=size, mode="bilinear", align_corners=True).to(x.dtype)


class ConvGNReLU(nn.Module):
    """mmcv ``ConvModule(C, C, 3, padding=1, norm_cfg=GN)``: conv (no bias), GroupNorm, ReLU."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.gn = nn.GroupNorm(groups, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.gn(self.conv(x)))


class MLVLFuseModule(nn.Module):
    def __init__(self, channels: int, levels: int, fuses: int, groups: int):
        super().__init__()
        self.shuffle = channels // 4
        self.keep = channels - 2 * self.shuffle
        self.levels = levels
        self.input_conv = nn.ModuleList(
            nn.Conv2d(channels + COORD_CHANNELS, channels, 1) for _ in range(levels)
        )
        self.fuse_convs = nn.ModuleList(ConvGNReLU(channels, groups) for _ in range(fuses))

    @staticmethod
    def coordinates(shape: torch.Size, device: torch.device) -> torch.Tensor:
        """``[B, 2, H, W]``: x then y, each ``linspace(-1, 1)`` over the map."""
        b, _, h, w = shape
        y, x = torch.meshgrid(
            torch.linspace(-1, 1, h, device=device), torch.linspace(-1, 1, w, device=device), indexing="ij"
        )
        return torch.cat([x.expand(b, 1, -1, -1), y.expand(b, 1, -1, -1)], dim=1)

    def exchange(self, levels: list[torch.Tensor], conv: nn.Module) -> list[torch.Tensor]:
        """One fuse round: level l keeps its first half, takes the last quarter of level l+1
        and the third quarter of level l-1 (clamped at the ends), then ``conv``."""
        out = []
        for lvl, target in enumerate(levels):
            coarser = levels[min(lvl + 1, self.levels - 1)]
            finer = levels[max(lvl - 1, 0)]
            size = (target.shape[-2], target.shape[-1])
            from_coarser = resize(coarser[:, self.keep + self.shuffle :], size)
            from_finer = resize(finer[:, self.keep : self.keep + self.shuffle], size)
            out.append(conv(torch.cat([target[:, : self.keep], from_coarser, from_finer], dim=1)))
        return out

    def forward(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        levels = [
            conv(torch.cat([x, self.coordinates(x.shape, x.device).to(x.dtype)], dim=1))
            for conv, x in zip(self.input_conv, levels, strict=True)
        ]
        for conv in self.fuse_convs:
            levels = self.exchange(levels, conv)
        return levels


class MlvlRoIExtractor(nn.Module):
    def __init__(self, channels: int, levels: int, spec: RegionSpec, strides: Sequence[float], out_dim: int):
        super().__init__()
        self.spec = spec
        self.strides = list(strides)
        self.pconvs = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, stride=1, padding=1) for _ in range(levels)
        )
        q = spec.query_dim
        self.pos_embedd = nn.Sequential(
            nn.Linear(4, spec.pos_hidden),
            nn.ReLU(inplace=True),
            nn.LayerNorm(spec.pos_hidden),
            nn.Linear(spec.pos_hidden, q),
            nn.ReLU(inplace=True),
            nn.LayerNorm(q),
        )
        self.updims = nn.Linear(q, out_dim)
        self.flatten_linear = nn.Linear(channels * spec.roi_size**2, q)

    def forward(self, levels: list[torch.Tensor], boxes: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``boxes[i]``: image i's ``[n_i, 4]`` normalised ``x1y1x2y2`` -> ``[n_i, out_dim]`` each."""
        dtype = levels[0].dtype
        normalised = torch.cat(list(boxes), dim=0).to(dtype)
        pos = self.pos_embedd(normalised)
        image_index = torch.cat(
            [torch.full((len(b),), i, dtype=normalised.dtype) for i, b in enumerate(boxes)]
        )
        rois = torch.cat(
            [image_index.to(normalised.device)[:, None], normalised * self.spec.roi_box_scale], dim=1
        )
        pooled = [
            roi_align(
                level.float(), rois.float(), self.spec.roi_size, 1.0 / stride, self.spec.sampling_ratio
            ).to(dtype)
            for level, stride in zip(levels, self.strides, strict=True)
        ]
        fused = F.relu(sum(conv(p) for conv, p in zip(self.pconvs, pooled, strict=True)))
        queries = self.updims(self.flatten_linear(fused.flatten(1)) + pos)
        return list(torch.split(queries, [len(b) for b in boxes]))


class RegionEncoder(nn.Module):
    """``MLVLROIQueryModule``: CLIP layers + boxes -> one embedding per ``<bbox>``."""

    def __init__(self, channels: int, patch_size: int, out_dim: int, spec: RegionSpec):
        super().__init__()
        levels = spec.num_levels
        self.mlvl_fuse = MLVLFuseModule(channels, levels, spec.num_fuse, spec.gn_groups)
        # featmap_strides [14/8, 14/4, 14/2, 14]: the finest map is the patch grid x 8.
        strides = [patch_size / 2 ** (levels - 1 - lvl) for lvl in range(levels)]
        self.roi_align = MlvlRoIExtractor(channels, levels, spec, strides, out_dim)

    def fuse(self, layer_tokens: list[torch.Tensor]) -> list[torch.Tensor]:
        """The fused feature maps of a batch of images (steps 1-2; they depend on the image
        only, so an image's requests share them). ``layer_tokens``: the pooled CLIP layers'
        patch tokens ``[B, g*g, C]``, shallowest first."""
        b, n, c = layer_tokens[0].shape
        g = math.isqrt(n)
        levels = len(layer_tokens)
        maps = []
        for lvl, tokens in enumerate(layer_tokens):
            grid = tokens.reshape(b, g, g, c).permute(0, 3, 1, 2)
            # Level l is resized to g * 2^(L-1-l): the shallowest layer to the finest map.
            size = (g * 2 ** (levels - 1 - lvl),) * 2
            resized = F.interpolate(grid.to(torch.float32), size=size, mode="bilinear", align_corners=True)
            maps.append(resized.to(torch.bfloat16).to(tokens.dtype))
        return self.mlvl_fuse(maps)

    def extract(self, levels: list[torch.Tensor], boxes: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Step 3: ``boxes[i]`` (image i's ``[n_i, 4]`` normalised ``x1y1x2y2``) -> its
        ``[n_i, out_dim]`` ``<bbox>`` embeddings."""
        return self.roi_align(levels, boxes)

    def forward(self, layer_tokens: list[torch.Tensor], boxes: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return self.extract(self.fuse(layer_tokens), boxes)
