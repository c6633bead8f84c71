"""GLaMM's prompt template and the slow LLaMA tokenizer's rules, with hand-built expectations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evalkit.errors import ConfigError
from evalkit.models.glamm.modeling import IMAGE_SENTINEL
from evalkit.models.glamm.prompting import GLAMM_TOKENS, GLaMMTokenizer, glamm_question, render_prompt
from evalkit.models.glamm.training.tiny import write_tokenizer
from tests.glamm_helpers import GCG_PROMPT, tiny_tokenizer_raw

SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


@pytest.fixture(scope="module")
def raw() -> Any:
    return tiny_tokenizer_raw()


@pytest.fixture(scope="module")
def tok(raw: Any) -> GLaMMTokenizer:
    return GLaMMTokenizer.wrap(raw, clean_up_spaces=False)


def enc(raw: Any, text: str) -> list[int]:
    """SentencePiece on one piece, no BOS: what the slow tokenizer's ``_tokenize`` gives."""
    return list(raw.encode(text, add_special_tokens=False).ids)


def test_the_gcg_prompt_as_infer_py_builds_it() -> None:
    expected = (
        f"{SYSTEM} USER: The <im_start><image><im_end> provides an overview of the picture.\n"
        "Could you please give me a detailed description of the image? Please respond with interleaved "
        "segmentation masks for the corresponding parts of the answer. ASSISTANT:"
    )
    assert render_prompt(GCG_PROMPT) == expected


def test_a_prompt_without_image_gets_glamms_opening_and_regions_become_bbox() -> None:
    assert glamm_question("What is <region>?") == (
        "The <im_start><image><im_end> provides an overview of the picture.\nWhat is <bbox>?"
    )
    assert glamm_question("<image>\nWhat is <region>?") == "<im_start><image><im_end>\nWhat is <bbox>?"


def test_added_tokens_eat_the_spaces_on_both_sides(raw: Any, tok: GLaMMTokenizer) -> None:
    ids = {name: tok.ids[name] for name in GLAMM_TOKENS}
    got = tok.encode_text("a red <p> circle </p> [SEG] next")
    expected = [
        1,
        *enc(raw, "a red"),
        ids["<p>"],
        *enc(raw, "circle"),
        ids["</p>"],
        ids["[SEG]"],
        *enc(raw, "next"),
    ]
    assert got == expected
    # Without the spaces, the same ids: each piece gets its own word prefix either way.
    assert tok.encode_text("a red<p>circle</p>[SEG]next") == expected
    # The fast tokenizer's own rules would keep a "▁" piece for " circle" after "<p>".
    assert raw.encode("a red <p> circle", add_special_tokens=False).ids != expected[1:-4]


def test_llama_special_tokens_keep_their_spaces(raw: Any, tok: GLaMMTokenizer) -> None:
    assert tok.encode_text("a </s> next", add_bos=False) == [*enc(raw, "a "), 2, *enc(raw, " next")]


def test_the_image_sentinel_replaces_image_and_one_bos_leads(raw: Any, tok: GLaMMTokenizer) -> None:
    rendered = "USER: The <im_start><image><im_end> provides"
    ids = tok.encode_prompt(rendered)
    assert ids == [
        1,
        *enc(raw, "USER: The"),
        tok.ids["<im_start>"],
        IMAGE_SENTINEL,
        tok.ids["<im_end>"],
        *enc(raw, "provides"),
    ]


def test_decoding_joins_added_tokens_with_spaces(tok: GLaMMTokenizer) -> None:
    ids = tok.encode_text("<p> a red circle </p> [SEG] next to <p>a blue square</p> [SEG].", add_bos=False)
    assert tok.decode(ids) == "<p> a red circle </p> [SEG] next to <p> a blue square </p> [SEG] ."
    cleaned = GLaMMTokenizer(tok.tokenizer, tok.ids, clean_up_spaces=True)
    assert cleaned.decode(ids).endswith("[SEG].")
    # convert_tokens_to_string puts the space before a special token's run, not after it.
    assert tok.decode([*tok.encode_text("It is", add_bos=False), 2]) == " It is</s>"


def test_from_dir_reads_the_official_files(tmp_path: Path, raw: Any) -> None:
    write_tokenizer(raw, tmp_path, clean_up_spaces=True)
    tok = GLaMMTokenizer.from_dir(tmp_path)
    assert tok.clean_up_spaces is True
    added = json.loads((tmp_path / "added_tokens.json").read_text())
    assert list(added) == list(GLAMM_TOKENS) and [added[t] for t in GLAMM_TOKENS] == list(range(160, 167))
    assert tok.seg_id == 164 and tok.bbox_id == 162


def test_added_token_ids_must_agree(tmp_path: Path, raw: Any) -> None:
    write_tokenizer(raw, tmp_path)
    (tmp_path / "added_tokens.json").write_text(json.dumps({"[SEG]": 32004}))
    with pytest.raises(
        ConfigError, match=r"\[SEG\] is id 164 in tokenizer.json but 32004 in added_tokens.json"
    ):
        GLaMMTokenizer.from_dir(tmp_path)


def test_missing_glamm_tokens_are_named(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models

    plain = Tokenizer(models.WordLevel({"<unk>": 0, "<s>": 1, "</s>": 2}, unk_token="<unk>"))
    plain.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ConfigError, match="no id for <im_start>"):
        GLaMMTokenizer.from_dir(tmp_path)
    (tmp_path / "added_tokens.json").write_text(json.dumps({t: 3 + i for i, t in enumerate(GLAMM_TOKENS)}))
    tok = GLaMMTokenizer.from_dir(tmp_path)  # the slow tokenizer's additions fill them in
    assert tok.encode_text("[SEG]", add_bos=False) == [7]


def test_no_tokenizer_json_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="convert tokenizer.model once"):
        GLaMMTokenizer.from_dir(tmp_path)
