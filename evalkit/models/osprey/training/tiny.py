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
from evalkit.models.osprey.prompting import BOS_TOKEN, EOS_TOKEN, MASK_TOKEN, POS_TOKEN, SYSTEM
from evalkit.records import IMAGE_PLACEHOLDER

# LLaMA's special tokens, in id order: <unk>=0, <s>=1, </s>=2.
SPECIALS = ["<unk>", BOS_TOKEN, EOS_TOKEN]
BOS_ID, EOS_ID = SPECIALS.index(BOS_TOKEN), SPECIALS.index(EOS_TOKEN)
DEFAULT_VOCAB_SIZE = 400  # learned entries before <mask>/<pos>; enough for the shapes text

# The bundled model's size: small enough to train on 2 CPU cores in minutes.
TINY_VISION = VisionSpec(
    depths=(1, 1, 2, 1), dims=(32, 64, 128, 192), image_size=128, mask_shape=32, mask_embed_dim=128
)
TINY_LLM = {"hidden_size": 128, "layers": 3, "heads": 4, "intermediate": 384}


def build_tokenizer(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE) -> Any:
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
        for token in (MASK_TOKEN, POS_TOKEN, EOS_TOKEN, IMAGE_PLACEHOLDER):
            text = text.replace(token, " ")
        cleaned.append(text)
    tok.train_from_iterator(cleaned, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A", special_tokens=[(BOS_TOKEN, BOS_ID)]
    )
    tok.add_special_tokens([MASK_TOKEN, POS_TOKEN])
    assert tok.token_to_id(BOS_TOKEN) == BOS_ID and tok.token_to_id(EOS_TOKEN) == EOS_ID
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
