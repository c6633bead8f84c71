"""Region captioning (RefCOCOg, Visual Genome, shapes): METEOR and CIDEr-D, with BLEU-4 / ROUGE-L.

Faithful to Osprey's ``refcocog_eval.py`` followed by the COCO caption toolkit:

* answer: strip, drop a trailing ``</s>``, strip; if it has a colon keep ``split(':')[1]``
  (``colon_rule``); then every ``.`` becomes ``.\\n`` (``split_periods`` — the script writes
  captions that way; the tokenizer turns the newline into a space, which splits tokens such
  as ``st.louis`` that would otherwise stay whole);
* references: the sample's target (one caption or a list);
* PTB tokenizer, METEOR 1.5, CIDEr-D over the whole split (CIDEr's document frequencies
  come from the scored references, so a ``--limit`` run is a different corpus), x100.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from evalkit.answers import clean_decoded, colon_rule
from evalkit.errors import DataError
from evalkit.metrics.caption import METRICS, score_captions
from evalkit.protocol import Data, ProtocolArgs, ScoreResult, ScoringContext, TaskProtocol, register_protocol
from evalkit.records import Sample

from .refcocog_cap import references_of


def postprocess_caption(text: str, use_colon_rule: bool = True, split_periods: bool = True) -> str:
    out = clean_decoded(text)
    if use_colon_rule:
        out = colon_rule(out)
    if split_periods:
        out = out.replace(".", ".\n")
    return out


class RegionCaptionArgs(ProtocolArgs):
    colon_rule: bool = True  # keep ``split(':')[1]`` as Osprey's caption script does
    split_periods: bool = True  # every ``.`` becomes ``.\n`` as the script writes it
    metrics: tuple[str, ...] = METRICS  # which caption metrics to compute


@register_protocol("region_caption")
class RegionCaption(TaskProtocol[RegionCaptionArgs]):
    def score(
        self, samples: Sequence[Sample], texts: Mapping[str, str], data: Data, context: ScoringContext
    ) -> ScoreResult:
        use_colon = self.args.colon_rule
        split_periods = self.args.split_periods
        metrics = self.args.metrics
        captions = {s.id: postprocess_caption(texts[s.id], use_colon, split_periods) for s in samples}
        references: dict[str, list[str]] = {}
        for s in samples:
            refs = references_of(s.target)
            if not refs:
                raise DataError("<samples>", "sample has no reference caption", s.id)
            references[s.id] = refs
        scored = score_captions(references, captions, metrics)
        per_sample = []
        for s in samples:
            row: dict[str, object] = {
                "id": s.id,
                "image": s.image,
                "prediction": texts[s.id],
                "caption": captions[s.id],
                "tokens": scored.tokenized_predictions.get(s.id, ""),
                "references": references[s.id],
            }
            row.update({k: round(v, 4) for k, v in scored.per_item.get(s.id, {}).items()})
            per_sample.append(row)
        deviations = []
        if scored.line_breaks_replaced:
            deviations.append(
                f"{scored.line_breaks_replaced} caption(s) held \\r, \\v, \\f, U+2028 or U+2029, "
                "which pycocoevalcap passes to the Java tokenizer as line breaks (shifting every "
                "later caption onto the wrong region); evalkit replaced them by spaces"
            )
        counts = {
            "regions": len(samples),
            "references": sum(len(r) for r in references.values()),
            "empty_captions": sum(1 for s in samples if not scored.tokenized_predictions.get(s.id)),
        }
        return ScoreResult(metrics=scored.corpus, per_sample=per_sample, deviations=deviations, counts=counts)
