"""Image preprocessing exactly as GLaMM's eval scripts do it (groundingLMM e74865f,
``eval/{gcg,region_captioning}/infer.py``), for both image encoders.

* **CLIP** (global view): ``CLIPImageProcessor.preprocess`` with the
  ``openai/clip-vit-large-patch14-336`` settings — PIL bicubic resize so the shortest edge is
  S (the long edge ``int(S * long / short)``), **centre crop** to S x S
  (``top = (h - S) // 2``, ``left = (w - S) // 2``), scale 1/255, CLIP normalisation.
  A box near the long sides can fall outside this view: GLaMM's boxes stay relative to the
  full image.
* **SAM** (grounding view): ``ResizeLongestSide(1024).apply_image`` — PIL bilinear resize to
  ``int(side * 1024 / long + 0.5)`` — then ``(x - mean) / std`` with SAM's pixel statistics
  and zero padding at the bottom and right to 1024 x 1024
  (``eval/utils.py`` ``grounding_image_ecoder_preprocess``).

The scripts read images with OpenCV (BGR -> RGB); evalkit decodes with PIL, the same pixels
for PNG and possibly a few JPEG levels apart (decoder versions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from evalkit.models.osprey.preprocess import CLIP_MEAN, CLIP_STD, shortest_edge_size

SAM_MEAN = torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1)
SAM_STD = torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1)


@dataclass
class PreparedImage:
    """One image as both encoders take it."""

    clip: torch.Tensor  # [3, S, S] float32
    sam: torch.Tensor  # [3, T, T] float32, padded
    resized: tuple[int, int]  # (h, w) of the image inside the SAM square
    original: tuple[int, int]  # (H, W)


def clip_view(image: Image.Image, size: int) -> torch.Tensor:
    """PIL RGB image -> ``[3, size, size]``: shortest edge ``size``, centre crop, normalised."""
    new_w, new_h = shortest_edge_size(image.width, image.height, size)
    if (new_w, new_h) != image.size:
        image = image.resize((new_w, new_h), resample=Image.Resampling.BICUBIC)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    crop = np.asarray(image, dtype=np.uint8)[top : top + size, left : left + size]
    arr = (crop.astype(np.float64) * (1.0 / 255.0)).astype(np.float32)
    arr = (arr - CLIP_MEAN) / CLIP_STD
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def longest_side_shape(height: int, width: int, side: int) -> tuple[int, int]:
    """``ResizeLongestSide.get_preprocess_shape``: (h, w) with the long side ``side``."""
    scale = side * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def sam_view(image: Image.Image, side: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """PIL RGB image -> (``[3, side, side]`` normalised and padded, its resized (h, w))."""
    new_h, new_w = longest_side_shape(image.height, image.width, side)
    if (new_w, new_h) != image.size:
        image = image.resize((new_w, new_h), resample=Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()
    x = (pixels - SAM_MEAN) / SAM_STD
    return F.pad(x, (0, side - new_w, 0, side - new_h)), (new_h, new_w)


def prepare_image(image: Image.Image, clip_size: int, sam_size: int) -> PreparedImage:
    sam, resized = sam_view(image, sam_size)
    return PreparedImage(clip_view(image, clip_size), sam, resized, (image.height, image.width))
