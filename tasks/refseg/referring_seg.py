"""Referring expression segmentation (RefCOCO / RefCOCO+ / RefCOCOg) and generalised referring
segmentation (gRefCOCO): the model answers an expression with a mask; cIoU and gIoU (x100),
and for gRefCOCO the no-target accuracies N-acc and T-acc.

The question is GLaMM's ``SEG_QUESTIONS[0]`` (``Can you segment the {class_name} in this
image?``, the expression stripped and lower-cased) after ``The <image> provides an overview of
the picture.\\n`` (``ReferSegmDataset.create_conversations``). The answer's masks
(``Prediction.masks``) are merged as MGLMM's ``enable_merge`` merges them
(``(pred > 0).sum(0) > 0``): one mask is itself, none is an empty mask, several their union.

Scoring (:mod:`evalkit.metrics.refseg`): per sample I = |P ∧ G|, U = |P ∨ G|; cIoU and gIoU
with GLaMM's epsilons (``scoring: glamm``, the default: the numbers MGLMM's Table 2 reports)
or ReLA's definitions (``scoring: rela``). ``no_target_metrics`` adds N-acc / T-acc as
gRefCOCO's evaluator defines them, a prediction being "no target" when its merged mask is
empty (MGLMM's code computes no N-acc; an answer without a mask is the natural reading of
its "Sorry, I don't see any ..." answers). ``gt_mask: once`` scores against the pixels the
reference's histogram counts as the object (see :mod:`.refer_seg`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

import numpy as np
from pycocotools import mask as mask_utils

from evalkit.errors import EvalkitError
from evalkit.metrics.grounding import rle_area
from evalkit.metrics.refseg import IoUCount, NoTargetSample, ciou, giou, grefcoco_scores
from evalkit.protocol import (
    Data,
    Outputs,
    ProtocolArgs,
    ScoreResult,
    ScoringContext,
    TaskProtocol,
    register_protocol,
)
from evalkit.records import MaskOutput, Request, Sample

from .refer_seg import RefSegInfo

SENTENCE_FIELD = "{sentence}"


def _coco(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.encode() if isinstance(counts, str) else counts}


def merged_prediction(masks: Sequence[MaskOutput], height: int, width: int) -> dict[str, Any]:
    """The union of an answer's masks as one compressed RLE (an empty mask when none)."""
    if not masks:
        empty: dict[str, Any] = mask_utils.encode(np.zeros((height, width), dtype=np.uint8, order="F"))
        return empty
    if len(masks) == 1:
        return _coco(masks[0].rle)
    return mask_utils.merge([_coco(m.rle) for m in masks], intersect=False)


def counts_of(pred: dict[str, Any], gt: dict[str, Any]) -> IoUCount:
    inter = int(mask_utils.area(mask_utils.merge([pred, _coco(gt)], intersect=True)))
    union = int(mask_utils.area(pred)) + rle_area(gt) - inter
    return IoUCount(inter, union)


class ReferringSegArgs(ProtocolArgs):
    gt_mask: Literal["union", "once"] = "union"  # once: pixels covered by exactly one polygon
    scoring: Literal["glamm", "rela"] = "glamm"  # cIoU / gIoU arithmetic
    no_target_metrics: bool = False  # gRefCOCO's N-acc and T-acc
    # What the card's protocol departs from in the released evaluation (sentence sampling,
    # question templates), recorded in every result.
    recorded_deviations: tuple[str, ...] = ()


@register_protocol("referring_seg")
class ReferringSeg(TaskProtocol[ReferringSegArgs]):
    def prompt_for(self, sample: Sample, prompt: str) -> str:
        # create_conversations: label.strip(), then the template's {class_name} = label.lower()
        return prompt.replace(SENTENCE_FIELD, sample.info(RefSegInfo).sentence.strip().lower())

    def build_requests(
        self, samples: Sequence[Sample], prompt: str, generation: dict[str, Any]
    ) -> list[Request]:
        # The image size travels with each request: a predictions file's masks are checked
        # against it even when the images are not at hand (evalkit score).
        sizes = {s.id: (s.info(RefSegInfo).height, s.info(RefSegInfo).width) for s in samples}
        return [
            replace(r, image_size=sizes[r.sample_id])
            for r in super().build_requests(samples, prompt, generation)
        ]

    def score_outputs(
        self, samples: Sequence[Sample], outputs: Outputs, data: Data, context: ScoringContext
    ) -> ScoreResult:
        counts: list[IoUCount] = []
        nt_samples: list[NoTargetSample] = []
        per_sample = []
        no_mask = several = 0
        for s in samples:
            info = s.info(RefSegInfo)
            masks = outputs[s.id].masks or []
            for k, m in enumerate(masks):
                if list(m.rle["size"]) != [info.height, info.width]:
                    raise EvalkitError(
                        f"sample {s.id}: mask {k} is {m.rle['size'][0]}x{m.rle['size'][1]}, "
                        f"the image is {info.height}x{info.width}"
                    )
            no_mask += not masks
            several += len(masks) > 1
            pred = merged_prediction(masks, info.height, info.width)
            gt = info.once if self.args.gt_mask == "once" and info.once is not None else s.target
            c = counts_of(pred, gt)
            counts.append(c)
            pred_empty = int(mask_utils.area(pred)) == 0
            nt_samples.append(NoTargetSample(c, info.no_target, pred_empty))
            row: dict[str, Any] = {
                "id": s.id,
                "image": s.image,
                "sentence": info.sentence,
                "prediction": outputs[s.id].text,
                "n_masks": len(masks),
                "intersection": c.intersection,
                "union": c.union,
                "iou": round(100 * (c.intersection / c.union if c.union else 1.0), 4),
            }
            if self.args.no_target_metrics:
                row["no_target"] = info.no_target
                row["predicted_no_target"] = pred_empty
            per_sample.append(row)
        rela = grefcoco_scores(nt_samples)
        if self.args.scoring == "rela":
            metrics = {"ciou": rela.ciou * 100, "giou": rela.giou * 100}
        else:
            metrics = {"ciou": ciou(counts) * 100, "giou": giou(counts) * 100}
        tallies = {"samples": len(samples), "no_mask": no_mask, "several_masks": several}
        if self.args.no_target_metrics:
            metrics["n_acc"] = rela.n_acc * 100
            metrics["t_acc"] = rela.t_acc * 100
            tallies.update(
                no_target=sum(s.info(RefSegInfo).no_target for s in samples),
                nt_tp=rela.tp,
                nt_fn=rela.fn,
                nt_fp=rela.fp,
                nt_tn=rela.tn,
            )
        deviations = list(self.args.recorded_deviations)
        if several:
            deviations.append(
                f"{several} answer(s) had several masks: scored as their union (the released "
                "refseg evaluation teacher-forces one [SEG] per expression)"
            )
        return ScoreResult(metrics, per_sample, deviations, tallies)
