"""SPHINX-V referring object classification, all regions of an image in one question:
SS and S-IoU exactly as ``ROC_eval.py`` (Draw-and-Understand ``28a1bd1``,
``accessory/eval/Referring_Object_Classification/ROC_eval.py``; PROTOCOLS_WAVE2.md §B).

Not Osprey's protocol (``lvis_cls``): per image, the ground-truth and predicted lines are
read by :func:`.region_lines.roc_lines` and paired **by position** over the predicted lines;

* ground truth: the line's category with ``_`` and ``:`` replaced by spaces;
* prediction: no normalisation at all (``baseball_base`` vs ``baseball base``: S-IoU 0);
* SS = cosine of all-MiniLM-L6-v2 embeddings on the strings as they are, S-IoU = Jaccard of
  the lower-cased whitespace-token sets; both micro-averaged over the scored lines, x100.

Departures (recorded): a prediction with more lines than the ground truth is scored on its
first ``len(GT)`` lines (the reference raises ``IndexError``). ``n_scored`` / ``n_gt_regions``
say how much was scored: fewer predicted lines leave the remaining regions unscored (the
reference's denominator shrinks); ``strict_coverage`` scores them 0 instead. SS is summed in
float64 (the reference accumulates a float32 tensor: differences ~1e-6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evalkit.metrics.embeddings import minilm
from evalkit.metrics.semantic import Encoder, semantic_iou, semantic_similarity
from evalkit.protocol import Data, ScoreResult, ScoringContext, TaskProtocol, register_protocol
from evalkit.records import Request, Sample

from .region_lines import roc_lines
from .sphinx_v_requests import MultiRegionArgs, regions_not_shown, sphinx_v_requests


class RocArgs(MultiRegionArgs):
    # Unscored ground-truth regions (the model gave fewer lines) count as SS = S-IoU = 0.
    strict_coverage: bool = False


def roc_category(line: str) -> str:
    """The released GT normalisation: ``_`` and ``:`` become spaces (``dog:leg`` -> ``dog leg``)."""
    return line.replace("_", " ").replace(":", " ")


@dataclass
class RocLine:
    prediction: str  # the predicted line's label, as written
    target: str  # the GT label, normalised (roc_category)
    ss: float  # in [0, 1]
    s_iou: float


@dataclass
class RocImage:
    n_gt: int
    n_predicted: int
    lines: list[RocLine] = field(default_factory=list)


@dataclass
class RocScores:
    ss: float  # x100
    s_iou: float
    images: list[RocImage]

    @property
    def n_scored(self) -> int:
        return sum(len(i.lines) for i in self.images)

    @property
    def n_gt(self) -> int:
        return sum(i.n_gt for i in self.images)


def roc_scores(
    targets: Sequence[str], predictions: Sequence[str], encoder: Encoder, strict_coverage: bool = False
) -> RocScores:
    """ROC_eval.py's arithmetic over images (``gt_answers``, raw model output).

    Args:
        targets: per image, its ``Region i: category`` lines as the file gives them.
        predictions: per image, the model's raw answer.
        encoder: sentence embeddings (all-MiniLM-L6-v2 in the task).
        strict_coverage: divide by every GT region (unscored ones count 0), not by the
            scored lines.
    Returns:
        SS and S-IoU x100, micro over lines, and every scored line.

    Example (toy encoder: SS of equal strings is 1):
        >>> import numpy as np
        >>> enc = lambda xs: np.array([[1.0, len(x)] for x in xs])
        >>> r = roc_scores(["Region 1: bow_(weapon)\\nRegion 2: dog"],
        ...                ["Region 1: bow (weapon)\\nnote\\nRegion 2: dog"], enc)
        >>> round(r.s_iou, 6), r.n_scored
        (100.0, 2)
    """
    images: list[RocImage] = []
    pairs: list[tuple[str, str]] = []
    for target, prediction in zip(targets, predictions, strict=True):
        gt = roc_lines(target)
        predicted = roc_lines(prediction)
        images.append(RocImage(len(gt), len(predicted)))
        # The reference loops over the predicted lines; past len(GT) it would raise.
        pairs.extend((p, roc_category(c)) for p, c in zip(predicted, gt, strict=False))
    ss = semantic_similarity([p for p, _ in pairs], [c for _, c in pairs], encoder).tolist() if pairs else []
    k = 0
    for image in images:
        for _ in range(min(image.n_gt, image.n_predicted)):
            p, c = pairs[k]
            image.lines.append(RocLine(p, c, float(ss[k]), semantic_iou(p.lower(), c.lower())))
            k += 1
    n = sum(i.n_gt for i in images) if strict_coverage else len(pairs)
    total_ss = sum(line.ss for i in images for line in i.lines)
    total_iou = sum(line.s_iou for i in images for line in i.lines)
    return RocScores(total_ss / n * 100 if n else 0.0, total_iou / n * 100 if n else 0.0, images)


@register_protocol("sphinxv_roc")
class SphinxVReferringClassification(TaskProtocol[RocArgs]):
    def build_requests(
        self, samples: Sequence[Sample], prompt: str, generation: dict[str, Any]
    ) -> list[Request]:
        return sphinx_v_requests(samples, prompt, generation, self.args, self.generation_for)

    def score(
        self, samples: Sequence[Sample], texts: Mapping[str, str], data: Data, context: ScoringContext
    ) -> ScoreResult:
        strict = self.args.strict_coverage
        scored = roc_scores(
            [str(s.target) for s in samples], [texts[s.id] for s in samples], minilm(), strict
        )
        per_sample = []
        for s, image in zip(samples, scored.images, strict=True):
            denom = image.n_gt if strict else len(image.lines)
            per_sample.append(
                {
                    "id": s.id,
                    "image": s.image,
                    "prediction": texts[s.id],
                    "target": s.target,
                    "ss": round(sum(x.ss for x in image.lines) / denom * 100, 4) if denom else 0.0,
                    "s_iou": round(sum(x.s_iou for x in image.lines) / denom * 100, 4) if denom else 0.0,
                    "n_gt_regions": image.n_gt,
                    "n_predicted_lines": image.n_predicted,
                    "lines": [
                        {
                            "prediction": x.prediction,
                            "target": x.target,
                            "ss": round(x.ss * 100, 4),
                            "s_iou": round(x.s_iou * 100, 4),
                        }
                        for x in image.lines
                    ],
                }
            )
        n_scored, n_gt = scored.n_scored, scored.n_gt
        n_over_long = sum(i.n_predicted > i.n_gt for i in scored.images)
        deviations = []
        if n_over_long:
            deviations.append(
                f"{n_over_long} prediction(s) had more 'Region i: ...' lines than the ground truth: "
                "scored on their first len(GT) lines (the released ROC_eval.py raises IndexError)"
            )
        if strict:
            deviations.append(
                f"strict_coverage: {n_gt - n_scored} ground-truth region(s) without a predicted line "
                "scored 0 (the released script leaves them out of the means)"
            )
        metrics = {
            "ss": scored.ss,
            "s_iou": scored.s_iou,
            "n_scored": float(n_scored),
            "n_gt_regions": float(n_gt),
        }
        counts = {
            "images": len(samples),
            "gt_regions": n_gt,
            "scored_regions": n_scored,
            "unscored_regions": n_gt - n_scored,
            "predictions_short": sum(i.n_predicted < i.n_gt for i in scored.images),
            "predictions_over_long": n_over_long,
            "regions_not_shown": regions_not_shown(samples, self.args.max_regions),
        }
        return ScoreResult(metrics=metrics, per_sample=per_sample, deviations=deviations, counts=counts)
