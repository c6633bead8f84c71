"""The small Osprey's pieces: its LLaMA-style tokenizer (built offline) and its config.

The tokenizer is a byte-pair-encoding model like LLaMA's (``<unk>``=0, ``<s>``=1, ``</s>``=2,
words marked with ``▁``), trained with the ``tokenizers`` library on the text the model
will see (the template, the shapes questions and answers). ``<mask>`` and ``<pos>`` are
added after the vocabulary as special tokens, so, as in the official checkpoints, their ids
(vocab_size and vocab_size + 1) are never looked up in the embedding table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from evalkit.models.osprey.config import OspreyConfig, VisionSpec, tiny_config
from evalkit.models.osprey.prompting import MASK_TOKEN, POS_TOKEN, SYSTEM

SPECIALS = ["<unk>", "<s>", "</s>"]

# The bundled model's size: small enough to train on 2 CPU cores in minutes.
TINY_VISION = VisionSpec(
    depths=(1, 1, 2, 1), dims=(32, 64, 128, 192), image_size=128, mask_shape=32, mask_embed_dim=128
)
TINY_LLM = {"hidden_size": 128, "layers": 3, "heads": 4, "intermediate": 384}


def build_tokenizer(texts: Iterable[str], vocab_size: int = 400) -> Any:
    """A LLaMA-layout BPE tokenizer trained on ``texts`` (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;?!'()-_\n"),
    )
    # <mask>/<pos> and </s> must never be learned as text: split them out of the corpus.
    cleaned = []
    for text in texts:
        for token in (MASK_TOKEN, POS_TOKEN, "</s>", "<image>"):
            text = text.replace(token, " ")
        cleaned.append(text)
    tok.train_from_iterator(cleaned, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.add_special_tokens([MASK_TOKEN, POS_TOKEN])
    assert tok.token_to_id("<s>") == 1 and tok.token_to_id("</s>") == 2
    return tok


def base_corpus() -> list[str]:
    return [SYSTEM, "USER: ASSISTANT:"]


def make_tiny_config(vocab_size: int) -> OspreyConfig:
    return tiny_config(
        vocab_size,
        hidden_size=TINY_LLM["hidden_size"],
        layers=TINY_LLM["layers"],
        heads=TINY_LLM["heads"],
        intermediate=TINY_LLM["intermediate"],
        vision=TINY_VISION,
    )
