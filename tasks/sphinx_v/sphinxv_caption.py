"""SPHINX-V brief region captions on RefCOCOg val: METEOR and CIDEr of the first
``Region i: ...`` caption (PROTOCOLS_WAVE2.md §G).

Released path (Draw-and-Understand ``28a1bd1``, ``Region_Level_Captioning/coco-caption``):
``transfer_to_cococap_format.py`` extracts ``re.findall(r'Region \\d+: (.*?)\\n', prediction)``
(:func:`.region_lines.caption_lines`) as the candidate list, and the vendored pycocoevalcap
tokenises ``c['caption'][0]`` (the first one) and scores METEOR 1.5 and CIDEr-D — the same
scorers as evalkit's caption path (:func:`evalkit.metrics.caption.score_captions`).

Departures (recorded): an answer without a final ``\\n`` gets one (the regex would find no
caption and the vendored tokenizer raise ``IndexError``; ``append_newline: false`` keeps the
text as is), and an answer with no ``Region i:`` line at all is scored as the empty caption.
(The released ``main()`` also dumps an empty dict — the script as committed cannot run.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from evalkit.metrics.caption import score_captions
from evalkit.protocol import Data, ScoreResult, ScoringContext, TaskProtocol, register_protocol
from evalkit.records import Request, Sample

from .region_lines import caption_lines, with_final_newline
from .sphinx_v_requests import MultiRegionArgs, sphinx_v_requests


class BriefCaptionArgs(MultiRegionArgs):
    append_newline: bool = True  # read a caption that lacks its final "\n" (the reference loses it)
    metrics: tuple[str, ...] = ("meteor", "cider")  # SPHINX-V's eval.py scores these two


@register_protocol("sphinxv_caption")
class SphinxVBriefCaption(TaskProtocol[BriefCaptionArgs]):
    def build_requests(
        self, samples: Sequence[Sample], prompt: str, generation: dict[str, Any]
    ) -> list[Request]:
        return sphinx_v_requests(samples, prompt, generation, self.args, self.generation_for)

    def caption(self, text: str) -> tuple[str | None, bool]:
        """(the first extracted caption or None, whether a final newline was added)."""
        added = self.args.append_newline and not text.endswith("\n")
        found = caption_lines(with_final_newline(text) if added else text)
        return (found[0] if found else None), added and bool(found) and not caption_lines(text)

    def score(
        self, samples: Sequence[Sample], texts: Mapping[str, str], data: Data, context: ScoringContext
    ) -> ScoreResult:
        captions: dict[str, str] = {}
        references: dict[str, list[str]] = {}
        n_newline = n_none = n_several = 0
        for s in samples:
            caption, added = self.caption(texts[s.id])
            n_newline += added
            n_none += caption is None
            n_several += len(caption_lines(with_final_newline(texts[s.id]))) > 1
            captions[s.id] = caption or ""
            references[s.id] = [s.target] if isinstance(s.target, str) else list(s.target)
        scored = score_captions(references, captions, self.args.metrics)
        per_sample = []
        for s in samples:
            row: dict[str, Any] = {
                "id": s.id,
                "prediction": texts[s.id],
                "caption": captions[s.id],
                "tokens": scored.tokenized_predictions.get(s.id, ""),
                "references": references[s.id],
            }
            row.update({k: round(v, 4) for k, v in scored.per_item.get(s.id, {}).items()})
            per_sample.append(row)
        deviations = []
        if n_newline:
            deviations.append(
                f"{n_newline} answer(s) ended without '\\n': one was appended so their caption is "
                "read (the released regex finds none and the vendored tokenizer raises IndexError)"
            )
        if n_none:
            deviations.append(
                f"{n_none} answer(s) had no 'Region i: ...' caption: scored as the empty caption "
                "(the released pipeline raises IndexError)"
            )
        counts = {
            "regions": len(samples),
            "no_caption": n_none,
            "newline_appended": n_newline,
            "several_captions": n_several,  # the first is scored, as the vendored tokenizer does
        }
        return ScoreResult(metrics=scored.corpus, per_sample=per_sample, deviations=deviations, counts=counts)
