"""Referring object classification (LVIS objects, PACO parts): SS and S-IoU.

Faithful to Osprey's ``lvis_paco_eval.py`` on the same outputs:

* answer: strip, drop a trailing ``</s>``, strip; if it has a colon keep ``split(':')[1]``
  (the text between the first and second colon — a quirk kept on purpose); then ``.``,
  ``:`` and ``,`` become spaces;
* ground truth: the category with ``_`` and ``:`` replaced by spaces;
* SS on the case-kept strings, S-IoU on lower-cased ones; micro average x 100.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from evalkit.answers import clean_decoded, colon_rule
from evalkit.metrics.embeddings import minilm
from evalkit.metrics.semantic import Encoder, semantic_iou, semantic_similarity
from evalkit.protocol import Data, ProtocolArgs, ScoreResult, ScoringContext, TaskProtocol, register_protocol
from evalkit.records import Sample


def normalise_answer(text: str) -> str:
    out = colon_rule(clean_decoded(text))
    return out.replace(".", " ").replace(":", " ").replace(",", " ")


def normalise_category(category: str) -> str:
    return category.replace("_", " ").replace(":", " ")


def referring_scores(
    answers: Sequence[str], categories: Sequence[str], encoder: Encoder
) -> tuple[np.ndarray, np.ndarray]:
    """Per-region (SS, S-IoU) in [0, 1] for normalised answers and categories."""
    ss = semantic_similarity(answers, categories, encoder)
    s_iou = np.array([semantic_iou(a.lower(), c.lower()) for a, c in zip(answers, categories, strict=True)])
    return ss, s_iou


@register_protocol("referring_cls")
class ReferringClassification(TaskProtocol[ProtocolArgs]):
    """No arguments: the released ``lvis_paco_eval.py`` has no options."""

    def score(
        self, samples: Sequence[Sample], texts: Mapping[str, str], data: Data, context: ScoringContext
    ) -> ScoreResult:
        raw = [texts[s.id] for s in samples]
        answers = [normalise_answer(t) for t in raw]
        categories = [normalise_category(str(s.target)) for s in samples]
        ss, s_iou = referring_scores(answers, categories, minilm())
        per_sample = [
            {
                "id": s.id,
                "image": s.image,
                "prediction": r,
                "answer": a,
                "target": s.target,
                "ss": round(float(x) * 100, 4),
                "s_iou": round(float(y) * 100, 4),
            }
            for s, r, a, x, y in zip(samples, raw, answers, ss, s_iou, strict=True)
        ]
        n = len(samples)
        metrics = {
            "ss": float(ss.mean() * 100) if n else 0.0,
            "s_iou": float(s_iou.mean() * 100) if n else 0.0,
        }
        return ScoreResult(metrics=metrics, per_sample=per_sample, counts={"regions": n})
