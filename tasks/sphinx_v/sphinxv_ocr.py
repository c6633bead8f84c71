"""SPHINX-V regional OCR on COCO-Text: per region, the model's text vs the GT text, exact after
``.lower()`` (``accessory/eval/Regional_OCR/OCR_eval.py``, PROTOCOLS_WAVE2.md §D).

* GT: :func:`.region_lines.ocr_targets` of ``gt_answers`` (the script's ``annotation``);
* prediction: :func:`.region_lines.ocr_answers` — ``Region i: TEXT\\n`` lines, a parenthesised
  text preferred (``Region 1: STOP (sign)\\n`` -> ``sign``), an empty text -> ``BLANK``, a line
  without a final ``\\n`` not matched;
* accuracy = matches / GT regions over the split, x100 (:mod:`evalkit.metrics.regional_ocr`).

Default departures (recorded): the prediction gets a final ``\\n`` when it has none, so its
last line is read (the reference loses it and then fails its ``assert``); where the counts
still differ, GT regions are scored positionally and a missing prediction is wrong (the
reference: ``AssertionError``). ``append_newline: false`` (the ``reference`` variant) reads the
text as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from evalkit.metrics.regional_ocr import ocr_accuracy, ocr_matches
from evalkit.protocol import Data, ScoreResult, ScoringContext, TaskProtocol, register_protocol
from evalkit.records import Request, Sample

from .region_lines import ocr_answers, ocr_targets, with_final_newline
from .sphinx_v_requests import MultiRegionArgs, regions_not_shown, sphinx_v_requests


class OcrArgs(MultiRegionArgs):
    append_newline: bool = True  # read a last line that lacks its "\n" (the reference drops it)


@register_protocol("sphinxv_ocr")
class SphinxVRegionalOcr(TaskProtocol[OcrArgs]):
    def build_requests(
        self, samples: Sequence[Sample], prompt: str, generation: dict[str, Any]
    ) -> list[Request]:
        return sphinx_v_requests(samples, prompt, generation, self.args, self.generation_for)

    def score(
        self, samples: Sequence[Sample], texts: Mapping[str, str], data: Data, context: ScoringContext
    ) -> ScoreResult:
        all_matches: list[list[bool]] = []
        per_sample = []
        n_newline = n_mismatch = 0
        for s in samples:
            raw = texts[s.id]
            text = raw
            if self.args.append_newline and not raw.endswith("\n"):
                text = with_final_newline(raw)
                n_newline += ocr_answers(text) != ocr_answers(raw)
            predicted = ocr_answers(text)
            targets = ocr_targets(str(s.target))
            n_mismatch += len(predicted) != len(targets)
            matches = ocr_matches(predicted, targets)
            all_matches.append(matches)
            per_sample.append(
                {
                    "id": s.id,
                    "image": s.image,
                    "prediction": raw,
                    "target": s.target,
                    "predicted_texts": predicted,
                    "target_texts": targets,
                    "accuracy": round(100.0 * sum(matches) / len(matches), 4) if matches else 0.0,
                }
            )
        deviations = []
        if n_newline:
            deviations.append(
                f"{n_newline} prediction(s) ended without '\\n': one was appended so their last "
                "'Region i:' line is read (the released OCR_eval.py loses it)"
            )
        if n_mismatch:
            deviations.append(
                f"{n_mismatch} prediction(s) gave a different number of region texts than the GT: "
                "scored positionally over the GT, missing ones wrong (the released OCR_eval.py "
                "stops at its assert)"
            )
        n_regions = sum(len(m) for m in all_matches)
        counts = {
            "images": len(samples),
            "gt_regions": n_regions,
            "correct_regions": sum(sum(m) for m in all_matches),
            "count_mismatches": n_mismatch,
            "newline_appended": n_newline,
            "regions_not_shown": regions_not_shown(samples, self.args.max_regions),
        }
        return ScoreResult(
            metrics={"accuracy": ocr_accuracy(all_matches)},
            per_sample=per_sample,
            deviations=deviations,
            counts=counts,
        )
