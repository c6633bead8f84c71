"""Closed-set region classification scored by accuracy and COCO AP (RegionGPT Tables 3, 6,
7, 11, 12, 15, 16; PROTOCOLS_WAVE2.md §H).

RegionGPT released no code: everything here but the prompt is evalkit's definition, recorded
as a deviation in every result.

* **Answer** (:func:`parse_class_name`): strip (and drop a trailing ``</s>``); keep the text
  before the first newline; drop a leading ``It is a ``/``It is an ``/``It is `` (RegionGPT's
  free-form style, its Fig. 1); drop trailing ``.``/``!``/whitespace; lower-case; collapse
  spaces. It counts only if it is one of the vocabulary's names exactly (``aircraft`` is not
  ``airplane``: "we simply discard this prediction and categorize it as a misclassification").
* **Accuracy** ``acc``: per cent of regions whose answer is their category's name.
* **AP** (``ap``, ``ap50``, ``ap75``, ``ap_s``, ``ap_m``, ``ap_l``): each in-vocabulary answer
  is a detection — the region's ground-truth box, the named category, a score — scored by
  pycocotools' COCOeval against the regions' annotations and their images' crowds
  (:mod:`evalkit.metrics.coco_detection`). The score (``score`` argument):

  - ``generated`` (default): the probability of the generated class name,
    ``exp(Σ log p)`` over the generated tokens that overlap the name's characters (the stop
    token and trailing punctuation are outside it; a token spanning name and punctuation
    counts). Needs generation ``logprobs: true`` and the tokens' texts; an answer without
    log-probabilities is scored 1.0 and counted (``constant_scores``), one without token
    texts is scored over the whole answer and counted (``whole_answer_scores``);
  - ``constant``: every detection scores 1.0 (adapters that give no log-probabilities);
    AP is then set by pycocotools' stable sort of ties — deterministic but arbitrary —
    and the result says so (``"score": "constant"``);
  - ``lm_rank``: each region ranks every vocabulary name by likelihood (teacher-forced, one
    ranking request); the softmax over the names' summed log-probabilities gives one
    detection per name and region, and the best name is the answer (the CLIP/RegionCLIP
    "GT box" protocol, where every box gets a score per class).

* ``region``: ``mask`` (default; Table 16's "Seg", the 70.0 headline) or ``box`` (the
  annotation's ``bbox``; Table 16's "Box").
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from evalkit.answers import STOP_STR
from evalkit.metrics.choice import ranked_choice
from evalkit.metrics.coco_detection import BoxDetection, coco_box_ap
from evalkit.protocol import (
    Data,
    Outputs,
    ProtocolArgs,
    ScoreResult,
    ScoringContext,
    TaskProtocol,
    register_protocol,
)
from evalkit.records import Prediction, Request, Sample
from evalkit.regions import Region

from .coco_instances import CocoBox, RegionClass

# RegionGPT's free-form answer openings (its Fig. 1: "It is a ..."), longest first.
ANSWER_PREFIXES = ("It is an ", "It is a ", "It is ")
TRAILING = ".!"
NO_CODE = (
    "RegionGPT released no evaluation code: answer parsing, accuracy and AP follow "
    "PROTOCOLS_WAVE2.md §H (evalkit's definition)"
)


@dataclass(frozen=True)
class ParsedName:
    """An answer's class name, normalised, and where it stands in the raw text."""

    name: str
    start: int
    end: int


def parse_class_name(text: str) -> ParsedName:
    """The §H normalisation of one answer, keeping the name's span in ``text``.

    Example:
        >>> parse_class_name(" It is a Dining  Table.\\nIt is on the left.")
        ParsedName(name='dining table', start=9, end=22)
    """
    start, end = 0, len(text)
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if text.endswith(STOP_STR, start, end):  # what Osprey-style decoding leaves
        end -= len(STOP_STR)
    newline = text.find("\n", start, end)
    if newline >= 0:
        end = newline
    for prefix in ANSWER_PREFIXES:
        if text.startswith(prefix, start, end):
            start += len(prefix)
            break
    while end > start and (text[end - 1] in TRAILING or text[end - 1].isspace()):
        end -= 1
    while start < end and text[start].isspace():
        start += 1
    return ParsedName(" ".join(text[start:end].lower().split()), start, end)


def span_logprob(token_texts: Sequence[str], token_logprobs: Sequence[float], start: int, end: int) -> float:
    """Σ log p of the tokens whose characters overlap ``[start, end)`` of the joined text
    (tokens that add no text, like a stop token, overlap nothing)."""
    total, pos = 0.0, 0
    for piece, logprob in zip(token_texts, token_logprobs, strict=True):
        a, b = pos, pos + len(piece)
        pos = b
        if b > a and a < end and b > start:
            total += logprob
    return total


def softmax(values: Sequence[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


class ClosedSetArgs(ProtocolArgs):
    score: Literal["generated", "constant", "lm_rank"] = "generated"
    region: Literal["mask", "box"] = "mask"


@dataclass
class _Scored:
    detections: list[BoxDetection] = dataclasses.field(default_factory=list)
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    correct: int = 0
    valid: int = 0
    constant: int = 0
    whole_answer: int = 0


@register_protocol("closed_set_cls")
class ClosedSetClassification(TaskProtocol[ClosedSetArgs]):
    def choices_for(self, sample: Sample) -> tuple[str, ...] | None:
        return tuple(sample.info(RegionClass).vocabulary) if self.args.score == "lm_rank" else None

    def build_requests(
        self, samples: Sequence[Sample], prompt: str, generation: dict[str, Any]
    ) -> list[Request]:
        requests = super().build_requests(samples, prompt, generation)
        if self.args.region == "mask":
            return requests
        by_id = {s.id: s for s in samples}
        out = []
        for r in requests:
            sample = by_id[r.sample_id]
            shown = sample.regions[0]
            box = Region.from_box(sample.info(RegionClass).box.bbox, shown.height, shown.width, "xywh")
            out.append(dataclasses.replace(r, regions=[box]))
        return out

    def score_outputs(
        self, samples: Sequence[Sample], outputs: Outputs, data: Data, context: ScoringContext
    ) -> ScoreResult:
        scored = _Scored()
        for s in samples:
            if self.args.score == "lm_rank":
                self._ranked(s, outputs[s.id], scored)
            else:
                self._generated(s, outputs[s.id], scored)
        metrics = {"acc": 100.0 * scored.correct / len(samples) if samples else 0.0}
        metrics.update(coco_box_ap(ground_truth(samples), scored.detections))
        counts = {
            "samples": len(samples),
            "in_vocabulary": scored.valid,
            "detections": len(scored.detections),
        }
        deviations = [NO_CODE]
        if scored.constant:
            counts["constant_scores"] = scored.constant
            if self.args.score == "generated":
                deviations.append(
                    f"{scored.constant} of {scored.valid} detections scored 1.0: their answers carry "
                    "no token log-probabilities (AP ties are broken by pycocotools' stable sort)"
                )
        if self.args.score == "constant":
            deviations.append(
                "AP from constant scores (1.0 for every detection): the order of ties is pycocotools' "
                "stable sort, deterministic but arbitrary"
            )
        if scored.whole_answer:
            counts["whole_answer_scores"] = scored.whole_answer
            deviations.append(
                f"{scored.whole_answer} detections scored by the whole answer's probability: "
                "their answers carry no token texts to find the class name's tokens"
            )
        return ScoreResult(
            metrics=metrics,
            per_sample=scored.rows,
            deviations=deviations,
            counts=counts,
            extra={"score": self.args.score},
        )

    def _generated(self, sample: Sample, out: Prediction, scored: _Scored) -> None:
        info = sample.info(RegionClass)
        parsed = parse_class_name(out.text)
        category = info.category_of(parsed.name)
        right = parsed.name == sample.target
        score: float | None = None
        if category is not None:
            scored.valid += 1
            score = self._answer_probability(out, parsed, scored)
            scored.detections.append(BoxDetection(info.image_id, category, info.box.bbox, score))
        scored.correct += right
        scored.rows.append(
            {
                "id": sample.id,
                "image": sample.image,
                "prediction": parsed.name,
                "target": sample.target,
                "acc": 100.0 if right else 0.0,
                "in_vocabulary": category is not None,
                **({"score": round(score, 6)} if score is not None else {}),
            }
        )

    def _answer_probability(self, out: Prediction, parsed: ParsedName, scored: _Scored) -> float:
        if self.args.score == "constant" or out.token_logprobs is None:
            scored.constant += 1
            return 1.0
        if out.token_texts is None or "".join(out.token_texts) != out.text:
            scored.whole_answer += 1
            return math.exp(sum(out.token_logprobs))
        return math.exp(span_logprob(out.token_texts, out.token_logprobs, parsed.start, parsed.end))

    def _ranked(self, sample: Sample, out: Prediction, scored: _Scored) -> None:
        info = sample.info(RegionClass)
        if out.choice_logprobs is None or out.choice_tokens is None:
            raise ValueError(f"sample {sample.id}: the prediction has no choice scores (not a ranking)")
        if len(out.choice_logprobs) != len(info.vocabulary):
            raise ValueError(
                f"sample {sample.id}: {len(out.choice_logprobs)} choice scores for "
                f"{len(info.vocabulary)} category names"
            )
        probabilities = softmax(out.choice_logprobs)
        best = ranked_choice(out.choice_logprobs, out.choice_tokens)
        for category, p in zip(info.category_ids, probabilities, strict=True):
            scored.detections.append(BoxDetection(info.image_id, category, info.box.bbox, p))
        right = info.vocabulary[best] == sample.target
        scored.correct += right
        scored.valid += 1
        target = info.vocabulary.index(str(sample.target))
        scored.rows.append(
            {
                "id": sample.id,
                "image": sample.image,
                "prediction": info.vocabulary[best],
                "target": sample.target,
                "acc": 100.0 if right else 0.0,
                "score": round(probabilities[best], 6),
                "target_probability": round(probabilities[target], 6),
            }
        )


def ground_truth(samples: Sequence[Sample]) -> dict[str, Any]:
    """The COCO dataset COCOeval scores against: the samples' images, their annotations and
    those images' crowds, the vocabulary's categories. On a whole file this is the file
    (images with only crowds, or nothing, hold no detection and change no number); under
    ``--limit`` it is the regions asked, so AP is not charged for regions never asked."""
    images: dict[int, None] = {}
    annotations: dict[int, dict[str, Any]] = {}
    categories: list[dict[str, Any]] = []
    for s in samples:
        info = s.info(RegionClass)
        images.setdefault(info.image_id)
        annotations[info.box.ann_id] = _annotation(info.image_id, info.box, crowd=False)
        for crowd in info.crowd:
            annotations.setdefault(crowd.ann_id, _annotation(info.image_id, crowd, crowd=True))
        if not categories:
            pairs = zip(info.category_ids, info.vocabulary, strict=True)
            categories = [{"id": c, "name": n} for c, n in pairs]
    return {
        "images": [{"id": i} for i in images],
        "annotations": list(annotations.values()),
        "categories": categories,
    }


def _annotation(image_id: int, box: CocoBox, crowd: bool) -> dict[str, Any]:
    return {
        "id": box.ann_id,
        "image_id": image_id,
        "category_id": box.category_id,
        "bbox": list(box.bbox),
        "area": box.area,
        "iscrowd": int(crowd),
    }
