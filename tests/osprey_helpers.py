"""Builders shared by the Osprey tests: a tiny random model, its tokenizer, small images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from evalkit.models.osprey.config import OspreyConfig, VisionSpec, tiny_config
from evalkit.models.osprey.modeling import OspreyModel
from evalkit.models.osprey.prompting import OspreyTokenizer, render_prompt
from evalkit.models.osprey.training.tiny import base_corpus, build_tokenizer
from evalkit.regions import Region

CLS_PROMPT = (
    "<image>\nThis provides an overview of the picture.\n"
    "What is the category of <region>? Using only one word or phrase."
)
TWO_REGION_PROMPT = (
    "<image>\nThis provides an overview of the picture.\n"
    "What is the relation between <region> and <region>? Answer briefly."
)
TEST_VISION = VisionSpec(
    depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), image_size=64, mask_shape=16, mask_embed_dim=16
)


def tiny_tokenizer() -> OspreyTokenizer:
    texts = [
        *base_corpus(),
        render_prompt(CLS_PROMPT),
        render_prompt(TWO_REGION_PROMPT),
        "red circle blue square house roof background Yes No",
    ]
    return OspreyTokenizer.wrap(build_tokenizer(texts, vocab_size=200))


def tiny_model(tokenizer: OspreyTokenizer, seed: int = 0, layers: int = 2) -> OspreyModel:
    """A random tiny Osprey whose logits are far from ties (so greedy is well defined)."""
    torch.manual_seed(seed)
    config: OspreyConfig = tiny_config(
        tokenizer.mask_id,
        hidden_size=32,
        layers=layers,
        heads=4,
        intermediate=64,
        vision=TEST_VISION,
    )
    model = OspreyModel(config).eval()
    with torch.no_grad():
        model.llm.lm_head.weight.normal_(0, 0.5)
        for block in model.trunk.modules():
            gamma = getattr(block, "gamma", None)
            if isinstance(gamma, torch.Tensor):
                gamma.fill_(0.5)  # layer scale 1e-6 would make the trunk an identity
    return model


def write_images(directory: Path, sizes: list[tuple[int, int]], seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for k, (h, w) in enumerate(sizes):
        path = directory / f"img{k}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def box_region(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> Region:
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    return Region.from_mask(mask)
