"""Prompts and tokens: the ``llava_v1`` template, GLaMM's image and region tokens, and the
slow LLaMA tokenizer's rules.

**Prompt** (groundingLMM e74865f, ``eval/{gcg,region_captioning}/infer.py``): the question
is ``The <image> provides an overview of the picture.\\n{instruction}`` with ``<image>``
written ``<im_start><image><im_end>``, in the ``llava_v1`` conversation
``{system} USER: {question} ASSISTANT:``. A task prompt that has ``<image>`` is used as it is
(the GLaMM task cards carry that opening themselves); one without gets GLaMM's opening in
front. ``<region>`` becomes ``<bbox>``, whose embedding the region encoder replaces.

**Tokens.** ``train.py`` adds ``<im_start> <im_end>`` then ``<bbox> <point> [SEG] <p> </p>``
with ``add_tokens(..., special_tokens=True)`` to Vicuna's 32,000 (ids 32000-32006) and
resizes the embeddings, so these ids are real rows of the table.

**Tokenisation** reproduces the slow ``LlamaTokenizer`` (``use_fast=False``) of the pinned
transformers (``cae78c46``, 4.28.0.dev0, before the ``legacy`` flag): the text is split on
the added tokens, the whitespace on *both* sides of each added token is stripped (the default
for tokens added as plain strings), every remaining piece is SentencePiece-encoded on its own
(so each gets the ``▁`` word prefix), and BOS goes in front. ``tokenizer_image_token`` splits
on ``<image>`` first and puts the image sentinel between the pieces. Decoding
(``skip_special_tokens=False``) decodes the runs between added tokens and joins everything
with single spaces (``spaces_between_special_tokens``): ``<p> a dog </p> [SEG]``; the
clean-up of spaces before punctuation follows ``tokenizer_config.json``
(``clean_up_tokenization_spaces``, true when absent, that transformers' default).

The SentencePiece model is read from the checkpoint's ``tokenizer.json`` through the
``tokenizers`` library (a fast-tokenizer conversion of ``tokenizer.model``), used only on
pieces without added tokens, where the two tokenizers agree.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.errors import ConfigError
from evalkit.models.glamm.modeling import IMAGE_SENTINEL
from evalkit.records import IMAGE_PLACEHOLDER, REGION_PLACEHOLDER

SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
ROLES = ("USER", "ASSISTANT")
SEP = " "  # llava_v1: separator style TWO, sep " ", sep2 "</s>"
BEGIN = f"The {IMAGE_PLACEHOLDER} provides an overview of the picture.\n"
IM_START, IM_END = "<im_start>", "<im_end>"
BBOX, POINT, SEG, PHRASE_START, PHRASE_END = "<bbox>", "<point>", "[SEG]", "<p>", "</p>"
# train.py's additions, in the order (and so the ids) they were added.
GLAMM_TOKENS = (IM_START, IM_END, BBOX, POINT, SEG, PHRASE_START, PHRASE_END)
UNK, BOS, EOS = "<unk>", "<s>", "</s>"
SPECIAL_TOKENS = (UNK, BOS, EOS)  # AddedToken(lstrip=False, rstrip=False): no stripping
PROMPT_CACHE_SIZE = 4096  # distinct rendered prompts whose ids are kept
# transformers' clean_up_tokenization.
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


def glamm_question(prompt: str) -> str:
    """A task prompt (``<image>``, ``<region>``) -> the question as GLaMM reads it."""
    question = prompt.replace(REGION_PLACEHOLDER, BBOX)
    if IMAGE_PLACEHOLDER not in question:
        question = BEGIN + question
    return question.replace(IMAGE_PLACEHOLDER, IM_START + IMAGE_PLACEHOLDER + IM_END)


def render_prompt(prompt: str) -> str:
    """A one-question ``llava_v1`` conversation, open for the answer."""
    return f"{SYSTEM}{SEP}{ROLES[0]}: {glamm_question(prompt)}{SEP}{ROLES[1]}:"


@dataclass
class GLaMMTokenizer:
    """The slow tokenizer's rules around a ``tokenizers.Tokenizer`` (see the module doc)."""

    tokenizer: Any
    ids: dict[str, int]  # the special and GLaMM tokens
    clean_up_spaces: bool = True
    prompt_ids_cache: dict[str, list[int]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = sorted(self.ids, key=len, reverse=True)  # leftmost-longest, as the slow trie
        self.split_pattern = re.compile("(" + "|".join(re.escape(n) for n in names) + ")")
        self.glamm_ids = {self.ids[t] for t in GLAMM_TOKENS}
        self.special_ids = {self.ids[t] for t in SPECIAL_TOKENS}

    @property
    def bos_id(self) -> int:
        return self.ids[BOS]

    @property
    def eos_id(self) -> int:
        return self.ids[EOS]

    @property
    def seg_id(self) -> int:
        return self.ids[SEG]

    @property
    def bbox_id(self) -> int:
        return self.ids[BBOX]

    @staticmethod
    def from_dir(path: str | Path) -> GLaMMTokenizer:
        from tokenizers import Tokenizer

        path = Path(path)
        file = path / "tokenizer.json"
        if not file.is_file():
            raise ConfigError(
                f"{path}: no tokenizer.json. evalkit reads the SentencePiece model through the "
                "tokenizers library: convert tokenizer.model once (transformers + sentencepiece: "
                "AutoTokenizer.from_pretrained(DIR, use_fast=True).save_pretrained(DIR))"
            )
        settings: dict[str, Any] = {}
        if (path / "tokenizer_config.json").is_file():
            settings = json.loads((path / "tokenizer_config.json").read_text())
        added: dict[str, int] = {}
        if (path / "added_tokens.json").is_file():
            added = {str(k): int(v) for k, v in json.loads((path / "added_tokens.json").read_text()).items()}
        return GLaMMTokenizer.wrap(
            Tokenizer.from_file(str(file)),
            bool(settings.get("clean_up_tokenization_spaces", True)),
            added,
            path,
        )

    @staticmethod
    def wrap(
        tok: Any, clean_up_spaces: bool = True, added: dict[str, int] | None = None, source: Any = "tokenizer"
    ) -> GLaMMTokenizer:
        """``added``: ``added_tokens.json`` (the slow tokenizer's additions): ids that must agree
        with ``tokenizer.json`` where it has the token, and fill in where it does not."""
        added = added or {}
        ids: dict[str, int] = {}
        for name in (*SPECIAL_TOKENS, *GLAMM_TOKENS):
            own = tok.token_to_id(name)
            if own is not None and name in added and added[name] != own:
                raise ConfigError(
                    f"{source}: {name} is id {own} in tokenizer.json but {added[name]} in added_tokens.json"
                )
            found = own if own is not None else added.get(name)
            if found is None:
                raise ConfigError(
                    f"{source}: no id for {name} (GLaMM adds {' '.join(GLAMM_TOKENS)}; "
                    "neither tokenizer.json nor added_tokens.json has it)"
                )
            ids[name] = int(found)
        return GLaMMTokenizer(tok, ids, clean_up_spaces)

    # ------------------------------------------------------------------ encoding
    def encode_text(self, text: str, add_bos: bool = True) -> list[int]:
        """``tokenizer(text).input_ids`` of the slow tokenizer."""
        pieces = self.split_pattern.split(text)
        for i, piece in enumerate(pieces):
            if piece in GLAMM_TOKENS:  # plain-string added tokens eat the spaces around them
                if i + 1 < len(pieces):
                    pieces[i + 1] = pieces[i + 1].lstrip()
                if i > 0:
                    pieces[i - 1] = pieces[i - 1].rstrip()
        out = [self.bos_id] if add_bos else []
        for piece in pieces:
            if not piece:
                continue
            if piece in self.ids:
                out.append(self.ids[piece])
            else:
                out.extend(self.tokenizer.encode(piece, add_special_tokens=False).ids)
        return out

    def encode_prompt(self, rendered: str) -> list[int]:
        """``tokenizer_image_token``: the image sentinel where ``<image>`` was."""
        cache = self.prompt_ids_cache
        if rendered not in cache:
            if len(cache) >= PROMPT_CACHE_SIZE:
                cache.clear()
            chunks = [self.encode_text(chunk) for chunk in rendered.split(IMAGE_PLACEHOLDER)]
            out = [self.bos_id]
            for k, chunk in enumerate(chunks):
                if k > 0:
                    out.append(IMAGE_SENTINEL)
                out.extend(chunk[1:])  # each chunk's own BOS dropped
            cache[rendered] = out
        return list(cache[rendered])

    # ------------------------------------------------------------------ decoding
    def decode_run(self, ids: list[int]) -> str:
        """``LlamaTokenizer.convert_tokens_to_string``: SentencePiece decoding, special tokens
        (``<s>``, ``</s>``, ``<unk>``) written as themselves, a space before each one that
        follows text."""
        out, prev_special = "", False
        run: list[int] = []
        for i, tid in enumerate(ids):
            if tid in self.special_ids:
                if not prev_special and i != 0:
                    out += " "
                out += self.tokenizer.decode(run, skip_special_tokens=False) + self.tokenizer.id_to_token(tid)
                run, prev_special = [], True
            else:
                run.append(tid)
                prev_special = False
        return out + self.tokenizer.decode(run, skip_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        """``decode(ids, skip_special_tokens=False)`` of the slow tokenizer."""
        parts: list[str] = []
        run: list[int] = []
        names = {v: k for k, v in self.ids.items()}
        for tid in ids:
            if tid in self.glamm_ids:
                if run:
                    parts.append(self.decode_run(run))
                    run = []
                parts.append(names[tid])
            else:
                run.append(tid)
        if run:
            parts.append(self.decode_run(run))
        text = " ".join(parts)
        if self.clean_up_spaces:
            for spaced, joined in CLEAN_UP_REPLACEMENTS:
                text = text.replace(spaced, joined)
        return text
