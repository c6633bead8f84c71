"""Prompts and tokens: the ``osprey_v1`` template, region placeholders, tokenisation.

Rendering follows the eval scripts: ``<region>`` becomes ``<mask><pos>``; the question goes
through ``preprocess_multimodal`` (``<image>`` removed, the rest stripped, ``<image>\\n``
put in front); the ``osprey_v1`` conversation renders
``{system} USER: {question} ASSISTANT:``. ``tokenizer_image_token`` then tokenises the
pieces around ``<image>`` separately (each with its own BOS, all but the first dropped) and
puts the image sentinel between them.

Tokenisation uses the checkpoint's own ``tokenizer.json`` through the ``tokenizers``
library: transformers 5.x rebuilds LLaMA tokenizers differently from the 4.31 the
checkpoints were made with, and the ids must be the ones the model was trained on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.errors import ConfigError
from evalkit.records import IMAGE_PLACEHOLDER, REGION_PLACEHOLDER

SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
ROLES = ("USER", "ASSISTANT")
SEP = " "  # separator style TWO; a turn's answer ends with EOS (</s>)
MASK_TOKEN, POS_TOKEN = "<mask>", "<pos>"
BOS_TOKEN, EOS_TOKEN = "<s>", "</s>"  # LLaMA's
IMAGE_SENTINEL = -200  # IMAGE_TOKEN_INDEX of the official code (osprey/constants.py)
# Distinct rendered prompts whose ids are kept: a task asks one question of thousands of
# regions, so a few templates fill it; past this many the cache starts over.
PROMPT_CACHE_SIZE = 4096
# transformers' clean_up_tokenization (what decode() did when tokenizer_config.json asks).
CLEAN_UP_REPLACEMENTS = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)


def osprey_question(prompt: str) -> str:
    """A task prompt (``<image>``, ``<region>``) -> the question as the model reads it."""
    question = prompt.replace(REGION_PLACEHOLDER, MASK_TOKEN + POS_TOKEN)
    if IMAGE_PLACEHOLDER in question:
        question = IMAGE_PLACEHOLDER + "\n" + question.replace(IMAGE_PLACEHOLDER, "").strip()
    return question.strip()


def open_turn(question: str) -> str:
    """An ``osprey_v1`` turn awaiting its answer: ``USER: {question} ASSISTANT:``."""
    return f"{ROLES[0]}: {question}{SEP}{ROLES[1]}:"


def render_prompt(prompt: str) -> str:
    """A one-question ``osprey_v1`` conversation (separator style TWO), open for the answer."""
    return SYSTEM + SEP + open_turn(osprey_question(prompt))


@dataclass
class OspreyTokenizer:
    """Wraps a ``tokenizers.Tokenizer`` loaded from ``tokenizer.json``."""

    tokenizer: Any
    bos_id: int
    eos_id: int
    mask_id: int
    pos_id: int
    clean_up_spaces: bool = False
    # rendered prompt -> its ids (see PROMPT_CACHE_SIZE)
    prompt_ids_cache: dict[str, list[int]] = field(default_factory=dict, repr=False, compare=False)

    @staticmethod
    def from_dir(path: str | Path) -> OspreyTokenizer:
        from tokenizers import Tokenizer

        path = Path(path)
        file = path / "tokenizer.json"
        if not file.is_file():
            raise ConfigError(
                f"{path}: no tokenizer.json. evalkit tokenises with the checkpoint's own "
                "tokenizer.json (save one with transformers 4.31: "
                "AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR))"
            )
        tok = Tokenizer.from_file(str(file))
        settings: dict[str, Any] = {}
        if (path / "tokenizer_config.json").is_file():
            settings = json.loads((path / "tokenizer_config.json").read_text())
        return OspreyTokenizer.wrap(tok, bool(settings.get("clean_up_tokenization_spaces", False)))

    @staticmethod
    def wrap(tok: Any, clean_up_spaces: bool = False) -> OspreyTokenizer:
        # The eval scripts call tokenizer.add_tokens(['<mask>', '<pos>'], special_tokens=True):
        # a no-op when the checkpoint's tokenizer has them already.
        tok.add_special_tokens([MASK_TOKEN, POS_TOKEN])
        ids = {name: tok.token_to_id(name) for name in (BOS_TOKEN, EOS_TOKEN, MASK_TOKEN, POS_TOKEN)}
        missing = [k for k, v in ids.items() if v is None]
        if missing:
            raise ConfigError(f"tokenizer has no {missing}")
        return OspreyTokenizer(
            tok, ids[BOS_TOKEN], ids[EOS_TOKEN], ids[MASK_TOKEN], ids[POS_TOKEN], clean_up_spaces
        )

    def encode_text(self, text: str) -> list[int]:
        """``tokenizer(text).input_ids``: with the post-processor's BOS."""
        return list(self.tokenizer.encode(text, add_special_tokens=True).ids)

    def encode_prompt(self, rendered: str) -> list[int]:
        """``tokenizer_image_token``: the image sentinel where ``<image>`` was."""
        # A task asks the same question of thousands of regions: tokenise each text once.
        cache = self.prompt_ids_cache
        if rendered not in cache:
            if len(cache) >= PROMPT_CACHE_SIZE:
                cache.clear()
            cache[rendered] = self.encode_prompt_uncached(rendered)
        return list(cache[rendered])

    def encode_prompt_uncached(self, rendered: str) -> list[int]:
        chunks = [self.encode_text(chunk) for chunk in rendered.split(IMAGE_PLACEHOLDER)]
        out: list[int] = []
        offset = 0
        if chunks and chunks[0] and chunks[0][0] == self.bos_id:
            offset = 1
            out.append(self.bos_id)
        for k, chunk in enumerate(chunks):
            if k > 0:
                out.append(IMAGE_SENTINEL)
            out.extend(chunk[offset:])
        return out

    def decode(self, ids: list[int]) -> str:
        text: str = self.tokenizer.decode(ids, skip_special_tokens=True)
        if self.clean_up_spaces:
            for spaced, joined in CLEAN_UP_REPLACEMENTS:
                text = text.replace(spaced, joined)
        return text

    def token_texts(self, ids: list[int]) -> list[str] | None:
        """The text each of ``ids`` adds to ``decode(ids)`` (a special token adds ""), from
        the decodings of growing prefixes; None where a prefix's text is not a prefix of the
        next one's (a byte-fallback character split over tokens, a clean-up rewrite)."""
        pieces: list[str] = []
        before = ""
        for k in range(len(ids)):
            text = self.decode(ids[: k + 1])
            if not text.startswith(before):
                return None
            pieces.append(text[len(before) :])
            before = text
        return pieces
