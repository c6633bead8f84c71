"""Builders shared by the GLaMM tests: a tiny random model in the official layout, its
tokenizer, small images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from evalkit.models.glamm.checkpoint import save_official
from evalkit.models.glamm.config import tiny_config
from evalkit.models.glamm.modeling import GLaMMModel
from evalkit.models.glamm.prompting import GLaMMTokenizer, render_prompt
from evalkit.models.glamm.training.tiny import base_corpus, build_tokenizer, write_tokenizer

REGCAP_PROMPT = (
    "Can you provide me with a detailed description of the region in the picture marked by <region>?"
)
GCG_PROMPT = (
    "The <image> provides an overview of the picture.\nCould you please give me a detailed description "
    "of the image? Please respond with interleaved segmentation masks for the corresponding parts of the answer."
)
ANSWER_WORDS = "a red circle next to a blue square on the grass It is"


def tiny_tokenizer_raw() -> object:
    texts = [*base_corpus(), render_prompt(REGCAP_PROMPT), render_prompt(GCG_PROMPT), ANSWER_WORDS]
    return build_tokenizer(texts, vocab_size=160)


def tiny_tokenizer() -> GLaMMTokenizer:
    return GLaMMTokenizer.wrap(tiny_tokenizer_raw(), clean_up_spaces=False)


def tiny_model(tokenizer: GLaMMTokenizer, seed: int = 0, hidden: int = 32) -> GLaMMModel:
    """A random tiny GLaMM whose logits are far from ties (so greedy is well defined)."""
    torch.manual_seed(seed)
    vocab = max(tokenizer.ids.values()) + 1
    model = GLaMMModel(tiny_config(vocab, hidden_size=hidden, layers=2, heads=4, intermediate=64)).eval()
    with torch.no_grad():
        model.llm.lm_head.weight.normal_(0, 0.5)
        for module in model.modules():  # SAM zero-initialises its relative positions
            for name in ("rel_pos_h", "rel_pos_w", "pos_embed"):
                p = getattr(module, name, None)
                if isinstance(p, torch.nn.Parameter):
                    p.normal_(0, 0.2)
    return model


def write_checkpoint(directory: Path, seed: int = 0) -> tuple[GLaMMModel, GLaMMTokenizer]:
    """A tiny GLaMM checkpoint folder in the official layout (safetensors, tower included)."""
    raw = tiny_tokenizer_raw()
    tokenizer = GLaMMTokenizer.wrap(raw, clean_up_spaces=False)
    model = tiny_model(tokenizer, seed)
    write_tokenizer(raw, directory)
    save_official(model, directory)
    return model, tokenizer


def scene_image(path: Path, width: int = 90, height: int = 70, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    pixels[10:40, 20:60] = (200, 30, 30)
    Image.fromarray(pixels).save(path)
    return path
