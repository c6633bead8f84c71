"""Referring expression comprehension over candidate regions (RegionGPT Table 5;
PROTOCOLS_WAVE2.md §I).

One request per expression shows its candidate boxes and asks which one fits, in RegionGPT's
words (its Table 1): the card's prompt with ``{regions}`` — the candidates' placeholders as
``<region>, <region> and <region>`` (``", "`` between all but the last, ``" and "`` before
it, no Oxford comma; one candidate: ``<region>``) — and ``{expression}``.

Answer: the first ``Region [k]`` (1-based; case and the spaces around the number do not
matter), else the first ``Region k``; ``strict: true`` accepts only ``Region [k]`` exactly.
RegionGPT's refusal "No corresponding options found.", no match, ``k = 0`` or ``k`` past the
last candidate are wrong. Right: the k-th candidate has IoU ≥ 0.5 with the ground-truth box
(:mod:`evalkit.metrics.rec`). Metrics: ``acc@0.5``; ``oracle@0.5`` (samples where some
candidate is right: 100 by construction, the ground truth being injected) and
``candidates`` (mean number shown) describe the candidate sets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from evalkit.metrics.rec import oracle_hit, rec_accuracy, rec_correct
from evalkit.protocol import Data, ProtocolArgs, ScoreResult, ScoringContext, TaskProtocol, register_protocol
from evalkit.records import REGION_PLACEHOLDER, Sample

from .refer_candidates import RecCandidates

BRACKETED = re.compile(r"region\s*\[\s*(\d+)\s*\]", re.IGNORECASE)
BARE = re.compile(r"region\s*(\d+)", re.IGNORECASE)
STRICT = re.compile(r"Region \[(\d+)\]")
NO_CODE = (
    "RegionGPT released no code or proposals: candidates, answer parsing and scoring follow "
    "PROTOCOLS_WAVE2.md §I (evalkit's definition; the proposals are the user's)"
)


def region_list(n: int) -> str:
    """``<region>, <region> and <region>`` for ``n`` candidates (RegionGPT Table 1).

    Example:
        >>> region_list(1), region_list(2), region_list(3)
        ('<region>', '<region> and <region>', '<region>, <region> and <region>')
    """
    if n < 1:
        raise ValueError("a comprehension question needs at least one candidate")
    if n == 1:
        return REGION_PLACEHOLDER
    return ", ".join([REGION_PLACEHOLDER] * (n - 1)) + " and " + REGION_PLACEHOLDER


def parse_region_choice(text: str, strict: bool = False) -> int | None:
    """The 1-based candidate an answer names, None when it names none.

    Example:
        >>> [parse_region_choice(t) for t in ("Region [3].", "region [3]", "Region 3", "No options found.")]
        [3, 3, 3, None]
        >>> [parse_region_choice(t, strict=True) for t in ("Region [3].", "region [3]", "Region 3")]
        [3, None, None]
    """
    found = STRICT.search(text) if strict else (BRACKETED.search(text) or BARE.search(text))
    return int(found.group(1)) if found else None


class RecArgs(ProtocolArgs):
    strict: bool = False  # only "Region [k]" exactly (no lower case, no bare "Region k")


@register_protocol("rec_candidates")
class RecOverCandidates(TaskProtocol[RecArgs]):
    def prompt_for(self, sample: Sample, prompt: str) -> str:
        info = sample.info(RecCandidates)
        # Regions first: an expression holding "{regions}" stays text.
        return prompt.replace("{regions}", region_list(len(sample.regions))).replace(
            "{expression}", info.expression
        )

    def score(
        self, samples: Sequence[Sample], texts: Mapping[str, str], data: Data, context: ScoringContext
    ) -> ScoreResult:
        correct: list[bool] = []
        oracle: list[bool] = []
        rows = []
        unparsed = out_of_range = injected = 0
        for s in samples:
            info = s.info(RecCandidates)
            choice = parse_region_choice(texts[s.id], self.args.strict)
            right = rec_correct(choice, info.candidates, info.gt_box)
            unparsed += choice is None
            out_of_range += choice is not None and not 1 <= choice <= len(info.candidates)
            injected += info.gt_injected
            correct.append(right)
            oracle.append(oracle_hit(info.candidates, info.gt_box))
            rows.append(
                {
                    "id": s.id,
                    "image": s.image,
                    "prediction": texts[s.id],
                    "choice": choice,
                    "target": s.target,
                    "expression": info.expression,
                    "candidates": len(info.candidates),
                    "acc@0.5": 100.0 if right else 0.0,
                }
            )
        n = len(samples)
        metrics = {
            "acc@0.5": rec_accuracy(correct),
            "oracle@0.5": rec_accuracy(oracle),
            "candidates": sum(len(s.regions) for s in samples) / n if n else 0.0,
        }
        counts = {"samples": n, "unparsed": unparsed, "out_of_range": out_of_range, "gt_injected": injected}
        return ScoreResult(metrics=metrics, per_sample=rows, deviations=[NO_CODE], counts=counts)
