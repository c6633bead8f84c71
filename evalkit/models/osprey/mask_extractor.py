"""Osprey's mask extractor: one mask token and one position token per region.

Official computation (``osprey/model/layer.py``), reproduced here:

* mask token — for each feature level ``res2..res5`` the original-resolution mask is
  bilinearly resized (align_corners=False) to that level's grid, binarised ``> 0``, and the
  features are averaged inside it (``sum / (area + 1e-8)``); level ``i`` goes through its own
  Linear(C_i, E); each level's output is rounded to the feature dtype (the official code casts
  it back before summing); the four are summed and ``feat_linear`` maps E -> hidden;
* position token — the mask bilinearly resized to ``mask_shape``², kept soft, flattened,
  through ``mask_linear`` = 3-layer MLP with ReLU (keys ``mask_linear.layers.0/1/2``).

Everything runs in float32. The geometric part (:func:`prepare_masks`) depends only on the
masks, so it is computed once per region and can be reused (training precomputes it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# The official averaging guard: features summed inside the mask / (area + AREA_EPS), so an
# empty mask pools to zeros instead of NaN (osprey/model/layer.py).
AREA_EPS = 1e-8
POSITION_MLP_LAYERS = 3  # mask_linear: Linear-ReLU-Linear-ReLU-Linear


class MLP(nn.Module):
    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims_in, dims_out, strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return x


@dataclass
class PreparedMasks:
    """Mask geometry for Q regions: per level ``[Q, h*w]`` averaging weights, position input."""

    level_weights: list[torch.Tensor]
    position_input: torch.Tensor  # [Q, mask_shape**2], soft

    def to(self, device: torch.device | str) -> PreparedMasks:
        return PreparedMasks([w.to(device) for w in self.level_weights], self.position_input.to(device))

    def select(self, index: torch.Tensor) -> PreparedMasks:
        return PreparedMasks([w[index] for w in self.level_weights], self.position_input[index])

    @staticmethod
    def cat(parts: list[PreparedMasks]) -> PreparedMasks:
        levels = len(parts[0].level_weights)
        return PreparedMasks(
            [torch.cat([p.level_weights[i] for p in parts]) for i in range(levels)],
            torch.cat([p.position_input for p in parts]),
        )


def prepare_masks(masks: torch.Tensor, level_sizes: list[tuple[int, int]], mask_shape: int) -> PreparedMasks:
    """``masks``: ``[Q, H, W]`` binary masks of one image at its original resolution."""
    # Each mask is resized on its own, as in the official [1, Q, H, W] call; laid out as
    # [Q, 1, H, W] because torch's CPU bilinear kernel is ~100x slower with Q channels.
    m = masks.float().unsqueeze(1)
    weights = []
    for h, w in level_sizes:
        if m.shape[-2:] != (h, w):
            resized = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
        else:
            resized = m
        binary = (resized[:, 0] > 0).float()
        denorm = binary.sum(dim=(-1, -2), keepdim=True) + AREA_EPS
        weights.append((binary / denorm).flatten(1))
    soft = F.interpolate(m, size=(mask_shape, mask_shape), mode="bilinear", align_corners=False)
    return PreparedMasks(weights, soft[:, 0].flatten(1))


class MaskExtractor(nn.Module):
    def __init__(self, level_dims: tuple[int, ...], embed_dim: int, out_dim: int, mask_shape: int):
        super().__init__()
        self.mask_shape = mask_shape
        self.feat_linear = nn.Linear(embed_dim, out_dim)
        self.mask_linear = MLP(mask_shape * mask_shape, embed_dim, out_dim, POSITION_MLP_LAYERS)
        # Named like the official module so checkpoints load (res2..res5 = stages 0..3).
        self.res2 = nn.Linear(level_dims[0], embed_dim)
        self.res3 = nn.Linear(level_dims[1], embed_dim)
        self.res4 = nn.Linear(level_dims[2], embed_dim)
        self.res5 = nn.Linear(level_dims[3], embed_dim)

    def level_linears(self) -> list[nn.Linear]:
        return [self.res2, self.res3, self.res4, self.res5]

    def forward(
        self, feats: list[torch.Tensor], image_index: torch.Tensor, prepared: PreparedMasks
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask and position tokens ``[Q, out_dim]`` (float32) for regions of a batch.

        ``feats``: the trunk outputs ``[B, C_i, h_i, w_i]``; ``image_index[q]``: which image
        of the batch region ``q`` belongs to.
        """
        total: torch.Tensor | None = None
        for feat, weight, linear in zip(feats, prepared.level_weights, self.level_linears(), strict=True):
            flat = feat.float().flatten(2)  # [B, C, h*w]
            if feat.shape[0] == 1:
                pooled = weight @ flat[0].transpose(0, 1)
            else:
                pooled = torch.einsum("qk,qck->qc", weight, flat[image_index])
            level = linear(pooled).to(feat.dtype).float()
            total = level if total is None else total + level
        assert total is not None
        mask_tokens = self.feat_linear(total)
        pos_tokens = self.mask_linear(prepared.position_input)
        return mask_tokens, pos_tokens
