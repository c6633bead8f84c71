"""Grounded conversation generation (GCG, GLaMM protocol) and MGLMM's MGSC: a caption whose
phrases come with masks, scored by METEOR, CIDEr, AP50, mIoU and mask recall.

The answer is the model's raw text with GLaMM's ``<p>phrase</p> [SEG]`` markup and one mask
per ``[SEG]`` (``Prediction.masks``, in order). It is read as GLaMM ``eval/gcg/infer.py``
(e74865f) post-processes its decoded output (MGLMM ``eval/utils/utils.py::postprocess_text``
is the same): newlines dropped, double spaces halved, everything before ``ASSISTANT: `` cut,
the phrases are every ``<p>(.*?)</p>`` (stripped), the caption is the text without tags and
``[SEG]``, whitespace collapsed and ``'`` stripped. The i-th phrase belongs to the i-th mask;
an adapter that gives each mask its own ``phrase`` / ``span`` has those used instead.

Metrics (``eval/gcg/evaluate.py``; :mod:`evalkit.metrics.grounding` states the arithmetic):
METEOR and CIDEr-D of the captions against the image's references (PTB-tokenised,
pycocoevalcap), AP50 (COCOeval segm, category 1, every score 1.0), mIoU (greedy pairing per
image, mean over all images) and mask recall (IoU >= 0.5 and BERT phrase similarity >= 0.5,
stopping at the first failing pair), all x100. Mask recall needs ``bert-base-uncased``
(``--data phrase_model=PATH``): without it the other metrics are reported and the results
say why mask recall is missing (``not_computed``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from evalkit.errors import ConfigError, EvalkitError
from evalkit.metrics.caption import score_captions
from evalkit.metrics.grounding import (
    RecallImage,
    SegmImage,
    greedy_miou,
    grounded_ap50,
    iou_matrix,
    mask_recall,
    recall_matches,
)
from evalkit.metrics.phrase_similarity import REFERENCE_MODEL, BertPhraseEncoder
from evalkit.outputs import seg_phrases
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

from .gcg_annotations import GroundedCaptionInfo

PHRASE = re.compile(r"<p>(.*?)<\/p>")  # infer.py's pattern
TAG = re.compile(r"<.*?>")
QUESTION_FIELD = "{question}"


def glamm_postprocess(text: str) -> tuple[str, list[str]]:
    """(caption, phrases) of a decoded answer, exactly as GLaMM's ``infer.py`` derives them.

    Example:
        >>> glamm_postprocess("<p> A dog </p> [SEG] on <p>grass</p> [SEG].")
        ('A dog on grass .', ['A dog', 'grass'])
    """
    text_output = text.replace("\n", "").replace("  ", " ")
    text_output = text_output.split("ASSISTANT: ")[-1]
    cleaned = TAG.sub("", text_output)
    phrases = [p.strip() for p in PHRASE.findall(text_output)]
    cleaned = cleaned.replace("[SEG]", "")
    cleaned = " ".join(cleaned.split()).strip("'")
    return cleaned.strip(), phrases


def mask_phrases(prediction: Prediction, text_phrases: list[str]) -> tuple[list[str], bool]:
    """The phrase of each mask, and whether the adapter gave them (``phrase`` / ``span``).

    Without any given phrase, the text's ``<p>`` phrases are the reference's ``phrases``
    (however many there are). With given ones, each mask has its own (its ``phrase``, its
    ``span`` of the text, else the text's ``<p>…</p> [SEG]`` of the same rank); the list stops
    at the first mask without one, as the reference's index alignment would.
    """
    masks = prediction.masks or []
    if not any(m.phrase is not None or m.span is not None for m in masks):
        return text_phrases, False
    segs = seg_phrases(prediction.text)
    out: list[str] = []
    for k, m in enumerate(masks):
        if m.phrase is not None:
            out.append(m.phrase.strip())
        elif m.span is not None:
            out.append(prediction.text[m.span[0] : m.span[1]].strip())
        elif k < len(segs):
            out.append(segs[k][0].strip())
        else:
            break
    return out, True


@lru_cache(maxsize=2)
def _encoder(folder: str) -> BertPhraseEncoder:
    # One load per process and folder (a group run scores val and test with one model).
    return BertPhraseEncoder(Path(folder))


def phrase_model_problem(path: Path | None) -> str | None:
    """Why mask recall cannot be computed with ``path`` (None when it can be)."""
    what = (
        f"mask_recall not computed: its phrase similarity needs {REFERENCE_MODEL} "
        "(mean-pooled last hidden states, as GLaMM's eval/gcg/evaluate.py)"
    )
    fix = f"pass --data phrase_model=/path/to/{REFERENCE_MODEL} (a local copy of the model folder)"
    if path is None:
        return f"{what} and no model folder was given; {fix}"
    if not path.is_dir():
        return f"{what} and there is no model folder at {path}; {fix}"
    return None


class GroundedCaptionArgs(ProtocolArgs):
    # MGSC's questions by image type (eval/mgsc/infer.py::get_prompt), filling the card
    # prompt's {question}: "root", and "subtree" with {label} = type.split(':')[1].
    questions: dict[str, str] = Field(default_factory=dict)
    # An image the reference's find_best_matches raises on: GLaMM counts its labels with no
    # match ("counted"), MGLMM's threaded copy drops it ("excluded").
    failed_recall_images: Literal["counted", "excluded"] = "counted"
    iou_threshold: float = 0.5
    text_threshold: float = 0.5
    caption_metrics: tuple[str, ...] = ("meteor", "cider")
    max_dets: int = 100  # COCOeval's maxDets for AP50


@register_protocol("grounded_caption")
class GroundedCaption(TaskProtocol[GroundedCaptionArgs]):
    def prompt_for(self, sample: Sample, prompt: str) -> str:
        if QUESTION_FIELD not in prompt:
            return prompt
        kind = sample.info(GroundedCaptionInfo).kind
        if kind == "root" and "root" in self.args.questions:
            question = self.args.questions["root"]
        elif kind is not None and "subtree:" in kind and "subtree" in self.args.questions:
            question = self.args.questions["subtree"].replace("{label}", kind.split(":")[1])
        else:
            raise ConfigError(
                f"task {self.card.name}: sample {sample.id} has image type {kind!r}, for which "
                f"protocol_args.questions has no question (it has {sorted(self.args.questions)})"
            )
        return prompt.replace(QUESTION_FIELD, question)

    def build_requests(
        self, samples: Sequence[Sample], prompt: str, generation: dict[str, Any]
    ) -> list[Request]:
        # The masks' size travels with each request: answers' masks are checked against it
        # when a predictions file is read, even when the images are not at hand.
        sizes = {
            s.id: (s.info(GroundedCaptionInfo).height, s.info(GroundedCaptionInfo).width) for s in samples
        }
        return [
            replace(r, image_size=sizes[r.sample_id])
            for r in super().build_requests(samples, prompt, generation)
        ]

    def score_outputs(
        self, samples: Sequence[Sample], outputs: Outputs, data: Data, context: ScoringContext
    ) -> ScoreResult:
        args = self.args
        # The phrase model first: a folder that is there but does not load fails before the
        # (slow) caption metrics run; a missing one only leaves mask recall out.
        problem = phrase_model_problem(data.get("phrase_model"))
        folder = data.get("phrase_model")
        encoder = _encoder(str(folder.resolve())) if problem is None and folder is not None else None
        captions: dict[str, str] = {}
        references: dict[str, list[str]] = {}
        phrases: dict[str, list[str]] = {}
        own_phrases = 0
        ap_images: list[SegmImage] = []
        mious: dict[str, float] = {}
        gt_by_pred: dict[str, np.ndarray] = {}
        for s in samples:
            info = s.info(GroundedCaptionInfo)
            pred = outputs[s.id]
            masks = pred.masks or []
            for k, m in enumerate(masks):
                if list(m.rle["size"]) != [info.height, info.width]:
                    raise EvalkitError(
                        f"sample {s.id}: mask {k} is {m.rle['size'][0]}x{m.rle['size'][1]}, "
                        f"the ground truth is {info.height}x{info.width}"
                    )
            caption, text_phrases = glamm_postprocess(pred.text)
            captions[s.id] = caption
            references[s.id] = [s.target] if isinstance(s.target, str) else [str(t) for t in s.target]
            phrases[s.id], given = mask_phrases(pred, text_phrases)
            own_phrases += given
            pred_rles = [m.rle for m in masks]
            gt_rles = [g.rle for g in info.masks]
            ious = iou_matrix(pred_rles, gt_rles)  # [pred, gt], GLaMM's compute_iou
            gt_by_pred[s.id] = ious
            mious[s.id] = greedy_miou(ious)
            cat1 = [g for g in info.masks if g.category_id == 1]  # COCOeval catIds = [1]
            ap_images.append(
                SegmImage(
                    s.id, [g.id for g in cat1], [g.rle for g in cat1], [g.iscrowd for g in cat1], pred_rles
                )
            )

        metrics: dict[str, float] = {}
        scored = score_captions(references, captions, args.caption_metrics)
        metrics.update(scored.corpus)
        n_pred_masks = sum(len(im.pred_rles) for im in ap_images)
        deviations: list[str] = []
        not_computed: dict[str, str] = {}
        ap50 = grounded_ap50(ap_images, args.max_dets)
        if np.isnan(ap50):
            not_computed["ap50"] = "ap50 not computed: the split has no ground-truth mask of category 1"
        else:
            metrics["ap50"] = ap50 * 100
            if n_pred_masks == 0:
                deviations.append(
                    "no predicted mask at all: the reference's loadRes([]) raises; evalkit reports AP50 0"
                )
        metrics["miou"] = float(np.mean(list(mious.values()))) * 100 if mious else 0.0

        recall_rows: dict[str, RecallImage] = {}
        extra: dict[str, Any] = {}
        if encoder is not None:
            assert folder is not None
            for s in samples:
                info = s.info(GroundedCaptionInfo)
                sims = encoder.similarities(info.labels, phrases[s.id])
                recall_rows[s.id] = recall_matches(
                    gt_by_pred[s.id].T, sims, len(info.labels), args.iou_threshold, args.text_threshold
                )
            recalled = mask_recall([recall_rows[s.id] for s in samples], args.failed_recall_images)
            metrics["mask_recall"] = recalled.recall * 100
            extra["phrase_model"] = {"path": str(folder), "files": encoder.fingerprint()}
        elif problem is not None:
            not_computed["mask_recall"] = problem
        if not_computed:
            extra["not_computed"] = not_computed
        failed = [sid for sid, r in recall_rows.items() if r.failed is not None]
        if failed:
            extra["recall_failed"] = {
                "policy": args.failed_recall_images,
                "images": {sid: recall_rows[sid].failed for sid in failed},
            }

        per_sample = []
        for s in samples:
            info = s.info(GroundedCaptionInfo)
            row: dict[str, Any] = {
                "id": s.id,
                "image": s.image,
                "prediction": outputs[s.id].text,
                "caption": captions[s.id],
                "phrases": phrases[s.id],
                "labels": info.labels,
                "n_masks": len(outputs[s.id].masks or []),
                "n_gt_masks": len(info.masks),
                "miou": round(mious[s.id] * 100, 4),
            }
            if s.id in recall_rows:
                r = recall_rows[s.id]
                row["recall_matches"] = [list(p) for p in r.matches]
                if r.failed is not None:
                    row["recall_failed"] = r.failed
            row.update({k: round(v, 4) for k, v in scored.per_item.get(s.id, {}).items()})
            per_sample.append(row)
        counts = {
            "images": len(samples),
            "gt_masks": sum(len(s.info(GroundedCaptionInfo).masks) for s in samples),
            "pred_masks": n_pred_masks,
            "answers_with_own_phrases": own_phrases,
        }
        if recall_rows:
            counts["recall_failed_images"] = len(failed)
        order = [*args.caption_metrics, "ap50", "miou", "mask_recall"]
        ordered = {k: metrics[k] for k in order if k in metrics}
        return ScoreResult(ordered, per_sample, deviations, counts, extra)
