"""Caption metrics: parity with pycocoevalcap, hand-computed values, read-only jars, no Java."""

from __future__ import annotations

import builtins
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from evalkit.metrics import caption
from evalkit.metrics.caption import (
    JavaNotFoundError,
    ptb_jar,
    ptb_tokenize,
    score_captions,
)
from tests.coco_reference import pycocoevalcap_scores

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="needs Java")


WORDS = [
    "a", "the", "man", "woman", "dog", "cat", "red", "blue", "left", "right", "sitting",
    "standing", "table", "chair", "small", "large", "white", "black", "person", "near", "on",
    "in", "of", "with",
]  # fmt: skip


def random_corpus(n: int, seed: int = 0) -> tuple[dict[str, list[str]], dict[str, str]]:
    rng = random.Random(seed)

    def sentence() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 9)))

    refs = {f"r{i}": [sentence() for _ in range(rng.randint(1, 4))] for i in range(n)}
    preds = {f"r{i}": sentence() for i in range(n)}
    return refs, preds


@pytest.mark.slow
def test_parity_with_pycocoevalcap_including_edge_cases(monkeypatch: pytest.MonkeyPatch) -> None:
    refs, preds = random_corpus(60)
    refs["r0"] = ["A man, on the LEFT.", "the man standing left"]
    refs["r6"] = ["a small white dog sitting on a red chair"]
    refs["r7"] = ["two people walking on a beach"]
    preds.update(
        {
            "r6": "a small white dog sitting on a red chair",
            "r7": "a tall building",
            "r1": "",  # empty output
            "r2": "a man : on the left.",  # punctuation tokens are dropped
            "r3": "st.louis 3.5 ,,, ...",  # dots inside tokens stay
            "r4": "“quoted” café ||| double  space",  # METEOR's ||| separator and double spaces
            "r5": "a woman\nsitting",  # newline inside a caption
        }
    )
    launched: list[list[str]] = []
    real_popen = subprocess.Popen

    class CountingPopen(real_popen):  # type: ignore[misc, valid-type]
        def __init__(self, args: Any, *rest: Any, **kw: Any) -> None:
            launched.append(list(args))
            super().__init__(args, *rest, **kw)

    with monkeypatch.context() as patch:
        patch.setattr(subprocess, "Popen", CountingPopen)
        ours = score_captions(refs, preds)
    # One JVM per scoring call for the tokenizer (references and predictions together) and
    # one for METEOR, whatever the number of captions.
    java = [" ".join(cmd) for cmd in launched if Path(cmd[0]).name == "java"]
    assert len(java) == 2
    assert sum("PTBTokenizer" in c for c in java) == 1 and sum("meteor-1.5.jar" in c for c in java) == 1
    ref = pycocoevalcap_scores(refs, preds)
    for name, value in ref["corpus"].items():
        assert ours.corpus[name] == pytest.approx(value, abs=1e-9), name
    for key, values in ref["items"].items():
        for name, value in values.items():
            assert ours.per_item[key][name] == pytest.approx(value, abs=1e-9), (key, name)
    assert ours.tokenized_predictions == ref["tokens"]
    assert ours.tokenized_predictions["r2"] == "a man on the left"
    assert ours.tokenized_predictions["r1"] == ""
    assert ours.per_item["r1"]["cider"] == 0.0
    assert ours.per_item["r6"]["meteor"] > 90 and ours.per_item["r7"]["meteor"] < 10
    assert 0 < ours.corpus["meteor"] < 100 and ours.corpus["cider"] > 0


def test_hand_computed_cider_rouge_bleu() -> None:
    # Two items, each hypothesis equal to its single reference: every n-gram has document
    # frequency 1, so idf = log(2) everywhere and the unigram and bigram cosines are 1; tri- and
    # 4-grams do not exist (cosine 0). CIDEr-D = mean(1, 1, 0, 0) * 10 = 5 -> 500 on the x100 scale.
    refs = {"a": ["red circle"], "b": ["blue square"]}
    preds = {"a": "red circle", "b": "blue square"}
    scores = score_captions(refs, preds, metrics=("cider", "rouge_l"))
    assert scores.corpus["cider"] == pytest.approx(500.0)
    assert scores.corpus["rouge_l"] == pytest.approx(100.0)

    # ROUGE-L: LCS("a red circle", "the red circle") = 2, P = R = 2/3, F_beta = 2/3 for any beta.
    # BLEU-4 of "the red circle here" vs itself = 1 (all n-gram precisions 1, no brevity penalty).
    refs = {"a": ["the red circle"], "b": ["the red circle here"]}
    preds = {"a": "a red circle", "b": "the red circle here"}
    scores = score_captions(refs, preds, metrics=("rouge_l", "bleu4"))
    assert scores.per_item["a"]["rouge_l"] == pytest.approx(200 / 3)
    assert scores.per_item["b"]["rouge_l"] == pytest.approx(100.0)
    assert scores.per_item["b"]["bleu4"] == pytest.approx(100.0, abs=1e-4)


def test_java_line_breaks_do_not_shift_captions() -> None:
    # pycocoevalcap only replaces "\n"; Java also ends lines at \r, \v, \f, U+2028, U+2029, which
    # would move every later caption one line down.
    captions = ["one\rtwo", "three\u2028four", "five"]
    assert ptb_tokenize(captions) == ["one two", "three four", "five"]
    scores = score_captions(
        {"a": ["one two"], "b": ["five"]}, {"a": "one\rtwo", "b": "five"}, metrics=("rouge_l",)
    )
    assert scores.per_item["b"]["rouge_l"] == pytest.approx(100.0)
    assert scores.line_breaks_replaced == 1


def test_tokenizer_works_with_a_read_only_jar_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site-packages" / "tokenizer"
    site.mkdir(parents=True)
    jar = site / ptb_jar().name
    shutil.copy(ptb_jar(), jar)
    site.chmod(0o555)  # enforced for non-root users; the guards below enforce it for root too

    def inside(path: Any) -> bool:
        return Path(os.fsdecode(path)).resolve().is_relative_to(site.resolve())

    real_os_open, real_open = os.open, builtins.open

    def guarded_os_open(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(30, "Read-only file system", os.fsdecode(path))
        return real_os_open(path, flags, *args, **kw)

    def guarded_open(file: Any, mode: str = "r", *args: Any, **kw: Any) -> Any:
        if isinstance(file, (str, bytes, os.PathLike)) and inside(file) and any(c in mode for c in "wax+"):
            raise PermissionError(30, "Read-only file system", os.fsdecode(file))
        return real_open(file, mode, *args, **kw)

    monkeypatch.setattr(os, "open", guarded_os_open)
    monkeypatch.setattr(builtins, "open", guarded_open)
    try:
        assert ptb_tokenize(["A man, riding a horse.", ""], jar=jar) == ["a man riding a horse", ""]
        # pycocoevalcap's own tokenizer writes its input beside the jar, and fails here.
        from pycocoevalcap.tokenizer import ptbtokenizer

        monkeypatch.setattr(ptbtokenizer, "__file__", str(site / "ptbtokenizer.py"))
        with pytest.raises(PermissionError):
            ptbtokenizer.PTBTokenizer().tokenize({"x": [{"caption": "a man"}]})
        assert sorted(p.name for p in site.iterdir()) == [jar.name]
    finally:
        site.chmod(0o755)


def test_clear_error_without_java(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(JavaNotFoundError, match="need Java"):
        score_captions({"a": ["a dog"]}, {"a": "a dog"})
    with pytest.raises(JavaNotFoundError):
        caption.java_executable()


def test_input_checks() -> None:
    with pytest.raises(ValueError, match="different items"):
        score_captions({"a": ["x"]}, {"b": "x"})
    with pytest.raises(ValueError, match="no reference"):
        score_captions({"a": []}, {"a": "x"})
    with pytest.raises(ValueError, match="unknown caption metrics"):
        score_captions({"a": ["x"]}, {"a": "x"}, metrics=("spice",))
    assert score_captions({}, {}).corpus == {
        "meteor": 0.0,
        "cider": 0.0,
        "bleu4": 0.0,
        "rouge_l": 0.0,
    }


def test_a_dead_scorer_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "meteor-1.5.jar"
    broken.write_bytes(b"not a jar")
    with pytest.raises(caption.CaptionScorerError, match=r"METEOR stopped before sending .*jar"):
        caption.meteor_scores([["a dog"]], ["a dog"], jar=broken)
    with pytest.raises(caption.CaptionScorerError, match="PTB tokenizer failed"):
        ptb_tokenize(["a dog"], jar=broken)
