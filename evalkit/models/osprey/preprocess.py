"""Image preprocessing exactly as Osprey's eval scripts do it.

``CLIPImageProcessor(size={"shortest_edge": S}, resample=BICUBIC)`` with the crop switched
off: a PIL bicubic resize so the shortest edge is S (the long edge ``int(S * long / short)``,
transformers' rounding), scale 1/255, CLIP normalisation, then
``F.interpolate(..., size=(S, S), mode="bilinear", align_corners=False)`` — the aspect ratio
is not kept and nothing is padded. S is 512 for the official models.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def shortest_edge_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(new_width, new_height) as transformers' ``get_resize_output_image_size``."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def preprocess_image(image: Image.Image, size: int) -> torch.Tensor:
    """PIL RGB image -> ``[3, size, size]`` float32 tensor."""
    new_w, new_h = shortest_edge_size(image.width, image.height, size)
    if (new_w, new_h) != image.size:
        image = image.resize((new_w, new_h), resample=Image.Resampling.BICUBIC)
    arr = (np.asarray(image, dtype=np.uint8).astype(np.float64) * (1.0 / 255.0)).astype(np.float32)
    arr = (arr - CLIP_MEAN) / CLIP_STD
    tensor = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).unsqueeze(0)
    if tensor.shape[-2:] != (size, size):
        tensor = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
    return tensor[0]
