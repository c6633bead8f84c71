"""LVIS closed-set binary choice ("Is it A or B?"), SPHINX-V Table 4 by Ferret's protocol
(apple/ml-ferret ``3c9e5c9`` ``ferret/eval/model_lvis.py`` + ``eval_lvis.py``;
PROTOCOLS_WAVE2.md §C).

Requests: one per object, about one region — the line's ``sample_point`` (``region: point``),
its GT box (``box``, from ``bbox_norm``) or its free-form shape (``freeform``:
``free_shape_bbox_raw``, the pixels ``[x1, x2] x [y1, y2]`` inclusive as Ferret's region mask
takes them, times ``free_shape_segment_mask`` when the line has one). The prompt's ``{obj1}``
/ ``{obj2}`` are the GT name and ``neg_class`` as the file writes them, the GT first on even
lines and second on odd ones (``idx % 2``); ``{location}`` is Ferret's text form of the region
(``[x, y]`` = ``int(x * 1000 / W)`` by the ratio, boxes ``int(bbox_norm * 1000)``, free-form
``int(raw * 1000 / W)``: :mod:`evalkit.regions.coords`, unclamped as the script).

Scoring: Ferret's free-text rule (:func:`evalkit.metrics.binary_choice.ferret_correct`, quirks
included) or, with ``scoring: strict``, an exact choice between the two names. Metric
``accuracy`` (x100). ``results.json`` says which prompt kind was shown (``input``: point, box,
free-form) for the board's columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from evalkit.errors import DataError
from evalkit.metrics.binary_choice import (
    choice_accuracy_percent,
    ferret_correct,
    remove_not_phrases,
    strict_choice,
)
from evalkit.protocol import Data, ProtocolArgs, ScoreResult, ScoringContext, TaskProtocol, register_protocol
from evalkit.records import Request, Sample
from evalkit.regions import Region
from evalkit.regions.coords import ferret_free_form_box, ferret_point, ferret_text

from .ferret_lvis import FerretChoice

INPUTS = {"point": "point", "box": "box", "freeform": "free-form"}  # the baselines' input names


class BinaryChoiceArgs(ProtocolArgs):
    region: Literal["point", "box", "freeform"] = "box"
    scoring: Literal["ferret", "strict"] = "ferret"
    # What the card's prompt follows, for the record: SPHINX-V's wording is known from the
    # paper's text only; Ferret's is model_lvis.py's question_prompt; evalkit: a benchmark of
    # evalkit's own (shapes) with its own wording.
    prompt_style: Literal["sphinx_v", "ferret", "evalkit"] = "sphinx_v"


def offered(info: FerretChoice) -> tuple[str, str]:
    """(``<obj1>``, ``<obj2>``): the GT first on even lines, second on odd (model_lvis.py)."""
    return (info.name, info.neg_class) if info.index % 2 == 0 else (info.neg_class, info.name)


def location_text(info: FerretChoice, region: str) -> str:
    """Ferret's ``<location>`` text for the line (model_lvis.py ``LVISData_V1``)."""
    w, h = info.width, info.height
    if region == "point":
        return ferret_text(ferret_point(info.sample_point, w, h, clamp=False))
    if region == "box":
        return ferret_text([int(v * 1000) for v in info.bbox_norm])  # int(bbox_norm[k] * VOCAB)
    if info.free_shape_bbox_raw is None:
        raise DataError(
            "<questions>", "the line has no free_shape_bbox_raw (the freeform prompt)", str(info.index)
        )
    return ferret_text(ferret_free_form_box(info.free_shape_bbox_raw, w, h, clamp=False))


def choice_region(sample: Sample, region: str) -> Region:
    info = sample.info(FerretChoice)
    w, h = info.width, info.height
    if region == "point":
        return Region.from_points([info.sample_point], h, w)
    if region == "box":
        return sample.regions[0]
    if info.free_shape_bbox_raw is None:
        raise DataError("<questions>", "no free_shape_bbox_raw for the freeform region", sample.id)
    x1, y1, x2, y2 = (int(v) for v in info.free_shape_bbox_raw)
    if info.free_shape_rle is None:
        return Region.from_box((x1, y1, min(x2 + 1, w), min(y2 + 1, h)), h, w)
    # generate_mask_for_feature: ones on [x1:x2+1, y1:y2+1], times the segment mask
    shape = Region.from_rle(info.free_shape_rle, h, w).to_mask()
    rect = np.zeros((h, w), np.uint8)
    rect[y1 : y2 + 1, x1 : x2 + 1] = 1
    return Region.from_mask(rect * shape)


@register_protocol("binary_choice")
class LvisBinaryChoice(TaskProtocol[BinaryChoiceArgs]):
    def prompt_for(self, sample: Sample, prompt: str) -> str:
        info = sample.info(FerretChoice)
        first, second = offered(info)
        out = prompt.replace("{obj1}", first).replace("{obj2}", second)
        if "{location}" in out:
            out = out.replace("{location}", location_text(info, self.args.region))
        return out

    def build_requests(
        self, samples: Sequence[Sample], prompt: str, generation: dict[str, Any]
    ) -> list[Request]:
        return [
            Request(
                s.id,
                s.id,
                s.image_path,
                self.prompt_for(s, prompt),
                [choice_region(s, self.args.region)],
                self.generation_for(s, generation),
            )
            for s in samples
        ]

    def score(
        self, samples: Sequence[Sample], texts: Mapping[str, str], data: Data, context: ScoringContext
    ) -> ScoreResult:
        correct: list[bool] = []
        per_sample = []
        chosen = {"right": 0, "negative": 0, "neither": 0}
        for s in samples:
            info = s.info(FerretChoice)
            text = texts[s.id]
            row: dict[str, Any] = {
                "id": s.id,
                "image": s.image,
                "prediction": text,
                "target": info.name,
                "negative": info.neg_class,
                "offered": list(offered(info)),
            }
            if self.args.scoring == "strict":
                verdict = strict_choice(text, info.name, info.neg_class)
                chosen[verdict] += 1
                ok = verdict == "right"
                row["choice"] = verdict
            else:
                ok = ferret_correct(text, info.name, info.synonyms)
                row["processed"] = remove_not_phrases(text)
            row["accuracy"] = 100.0 if ok else 0.0
            correct.append(ok)
            per_sample.append(row)
        deviations = []
        if self.args.prompt_style == "sphinx_v":
            deviations.append(
                "SPHINX-V's binary-choice prompt is known from the paper's text only ('Is it "
                "(Class A) or (Class B)?'); evalkit writes the names without parentheses, in "
                "Ferret's order (GT first on even lines)"
            )
        if self.args.scoring == "strict":
            deviations.append(
                "strict scoring: the answer must be exactly one of the two names (not Ferret's rule)"
            )
        if any(s.info(FerretChoice).rebuilt for s in samples):
            deviations.append(
                "the objects were rebuilt from raw LVIS with evalkit's seeded defaults (not Ferret's file)"
            )
        counts = {"objects": len(samples), "correct": sum(correct)}
        if self.args.scoring == "strict":
            counts |= {"chose_negative": chosen["negative"], "chose_neither": chosen["neither"]}
        return ScoreResult(
            metrics={"accuracy": choice_accuracy_percent(correct)},
            per_sample=per_sample,
            deviations=deviations,
            counts=counts,
            extra={"input": INPUTS[self.args.region]},
        )
