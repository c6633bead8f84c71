"""Phrase similarity for GCG / MGSC mask recall: mean-pooled BERT embeddings and their cosine,
as GLaMM's ``eval/gcg/evaluate.py`` computes them (e74865f).

The reference embeds a phrase with ``AutoModel("bert-base-uncased")`` (eval mode, float32,
CPU) on ``tokenizer(text, return_tensors="pt", max_length=512, truncation=True)`` and takes
the **mean of ``last_hidden_state[0]`` over every token, [CLS] and [SEP] included**; two
phrases' similarity is ``sklearn.metrics.pairwise.cosine_similarity`` of their embeddings
(float32: rows divided by their float32 norms, then a float32 dot product). Here each
distinct phrase is embedded once, alone (no padding, so nothing changes the mean), instead
of twice per pair; each pair's cosine is computed with sklearn's float32 operations, one
pair at a time as the reference does (bit for bit the same values).

No model hub is reachable: the model is loaded from a local folder only
(``local_files_only``), never substituted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.errors import EvalkitError
from evalkit.hashing import sha256_path

# The model GLaMM's and MGLMM's evaluators load by hub name.
REFERENCE_MODEL = "bert-base-uncased"


class PhraseModelError(EvalkitError):
    """The phrase-similarity model folder cannot be loaded."""


class BertPhraseEncoder:
    """Mean-pooled last hidden states of a local BERT checkpoint folder (config, weights,
    tokenizer files as ``save_pretrained`` writes them)."""

    def __init__(self, folder: Path):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.folder = folder
        try:
            self._tokenizer: Any = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self._model: Any = AutoModel.from_pretrained(
                str(folder), local_files_only=True, dtype=torch.float32
            )
        except (OSError, ValueError, KeyError) as exc:
            why = " ".join(str(exc).split())  # transformers' messages span lines: one line here
            raise PhraseModelError(
                f"{folder}: cannot load the phrase-similarity model ({why[:300]}); pass --data "
                f"phrase_model=PATH with a local copy of {REFERENCE_MODEL} "
                "(config.json, model weights, tokenizer files)"
            ) from exc
        self._model.eval()
        self._torch = torch
        self._cache: dict[str, np.ndarray] = {}

    def embed(self, text: str) -> np.ndarray:
        """float32 mean of the last hidden states over all tokens of ``text``."""
        if text not in self._cache:
            torch = self._torch
            inputs = self._tokenizer(text, return_tensors="pt", max_length=512, truncation=True)
            with torch.no_grad():
                hidden = self._model(**inputs).last_hidden_state[0]
            self._cache[text] = torch.mean(hidden, dim=0).numpy().astype(np.float32)
        return self._cache[text]

    def similarities(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """``(len(a), len(b))`` cosine similarities (float64 values of float32 cosines)."""
        out = np.zeros((len(a), len(b)))
        # One 1x1 cosine per pair, as the reference calls it: a batched matrix product may
        # round the float32 dot products differently.
        for i, text_a in enumerate(a):
            for j, text_b in enumerate(b):
                out[i, j] = cosine_similarity(self.embed(text_a)[None], self.embed(text_b)[None])[0, 0]
        return out

    def fingerprint(self) -> dict[str, str]:
        """sha256 of the folder's files (config, weights, tokenizer): which model scored."""
        return {
            p.name: sha256_path(p)
            for p in sorted(self.folder.iterdir())
            if p.is_file() and not p.name.startswith(".")
        }


def cosine_similarity(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """sklearn's ``cosine_similarity`` for dense float32 rows: each row divided by its norm
    (zero rows left as they are), then ``x @ y.T``, all in float32.

    Example:
        >>> cosine_similarity(np.array([[3.0, 4.0]], np.float32), np.array([[4.0, 3.0]], np.float32))
        array([[0.96000004]], dtype=float32)
    """

    def normalise(m: np.ndarray) -> np.ndarray:
        m = np.asarray(m, dtype=np.float32)
        norms = np.sqrt(np.einsum("ij,ij->i", m, m))
        norms[norms == 0.0] = 1.0
        return m / norms[:, np.newaxis]

    out: np.ndarray = normalise(x) @ normalise(y).T
    return out
