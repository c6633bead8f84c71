"""The small GLaMM's pieces: its LLaMA-style tokenizer (built offline) and its config.

The tokenizer is a byte-pair-encoding model like LLaMA's (``<unk>``=0, ``<s>``=1, ``</s>``=2,
words marked with ``▁``), trained with the ``tokenizers`` library on the text the model will
see. GLaMM's seven tokens are added after the vocabulary in ``train.py``'s order, and the
embedding table covers them (``resize_token_embeddings``), as in the official checkpoints.
:func:`write_tokenizer` writes the official layout's files: ``tokenizer.json`` (the fast
form evalkit reads), ``added_tokens.json`` and ``tokenizer_config.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from evalkit.models.glamm.config import ClipSpec, GLaMMConfig, RegionSpec, SamSpec, VisionSpec, tiny_config
from evalkit.models.glamm.prompting import BOS, EOS, GLAMM_TOKENS, SYSTEM, UNK, GLaMMTokenizer
from evalkit.records import IMAGE_PLACEHOLDER

SPECIALS = [UNK, BOS, EOS]  # LLaMA's, in id order
BOS_ID, EOS_ID = SPECIALS.index(BOS), SPECIALS.index(EOS)
DEFAULT_VOCAB_SIZE = 400  # learned entries before GLaMM's tokens
ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;?!'()-_\n"


def build_tokenizer(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE) -> Any:
    """A LLaMA-layout BPE ``tokenizers.Tokenizer`` trained on ``texts`` (deterministic), with
    GLaMM's tokens added after the vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=UNK, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=list(ALPHABET),
    )
    cleaned = []
    for text in texts:  # added tokens and the image placeholder are never learned as text
        for token in (*GLAMM_TOKENS, EOS, IMAGE_PLACEHOLDER):
            text = text.replace(token, " ")
        cleaned.append(text)
    tok.train_from_iterator(cleaned, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, BOS_ID)])
    tok.add_special_tokens(list(GLAMM_TOKENS))
    assert tok.token_to_id(BOS) == BOS_ID and tok.token_to_id(EOS) == EOS_ID
    return tok


def write_tokenizer(tok: Any, directory: Path, clean_up_spaces: bool = False) -> Path:
    """The official layout's tokenizer files (what ``GLaMMTokenizer.from_dir`` reads)."""
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    added = {name: tok.token_to_id(name) for name in GLAMM_TOKENS}
    (directory / "added_tokens.json").write_text(json.dumps(added, indent=2) + "\n")
    settings = {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": clean_up_spaces,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": UNK,
        "pad_token": UNK,  # tokenizer.pad_token = tokenizer.unk_token in the scripts
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(settings, indent=2) + "\n")
    return directory


def wrap(tok: Any, clean_up_spaces: bool = False) -> GLaMMTokenizer:
    return GLaMMTokenizer.wrap(tok, clean_up_spaces)


def base_corpus() -> list[str]:
    return [SYSTEM, "USER: ASSISTANT:", "The provides an overview of the picture."]


def make_tiny_config(
    vocab_size: int, vision: VisionSpec | None = None, llm: dict[str, int] | None = None
) -> GLaMMConfig:
    vision, llm = vision or TINY_VISION, llm or TINY_LLM
    return tiny_config(
        vocab_size,
        hidden_size=llm["hidden_size"],
        layers=llm["layers"],
        heads=llm["heads"],
        intermediate=llm["intermediate"],
        vision=vision,
    )


# The bundled model's size: small enough to train on 2 CPU cores in minutes. Ten CLIP layers
# are the fewest that give the region encoder its four levels; the region encoder runs two
# fuse rounds (the release: five) and pools 7x7 (14x14), at the tiny CLIP view's true scale
# (the release's 224 on a 336 view is kept for official checkpoints; see RegionSpec).
TINY_VISION = VisionSpec(
    clip=ClipSpec(
        hidden_size=32, intermediate_size=64, num_hidden_layers=10, num_attention_heads=2, image_size=112
    ),
    sam=SamSpec(
        image_size=256,
        embed_dim=64,
        depth=2,
        num_heads=2,
        global_attn_indexes=(1,),
        window_size=8,
        prompt_dim=64,
        decoder_heads=2,
        decoder_mlp_dim=128,
        mask_in_chans=8,
        iou_head_hidden_dim=64,
    ),
    region=RegionSpec(num_fuse=2, gn_groups=4, roi_size=7, roi_box_scale=112.0, query_dim=128, pos_hidden=64),
)
TINY_LLM = {"hidden_size": 128, "layers": 3, "heads": 4, "intermediate": 384}
