"""LLM-judged relative scores (LLaVA / Osprey / Ferret / MDVP ``summarize_gpt_*``), pure.

* A review's first line holds two numbers, the scores of Assistant 1 (the reference answer)
  and Assistant 2 (the model): commas become spaces, the line is split on single spaces and
  must give exactly two fields that parse as floats; anything else is a failed judgement,
  which the released code records as ``[-1, -1]``.
* Per group (each category and ``all``): the two columns are averaged with numpy, each mean
  rounded to 3 decimals, and the relative score is ``round(model / reference * 100, digits)``
  (2 digits in Osprey's and MDVP's summariser, 1 in Ferret's).
* ``failures_as_minus_one=True`` is the released arithmetic (failed judgements averaged in as
  ``-1``); the default leaves them out, and the caller counts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evalkit.metrics.spec import MetricSpec, declare

declare(MetricSpec("relative_score", "Relative score", True, "judged"))

ScorePair = tuple[float, float]
FAILED_PAIR: ScorePair = (-1.0, -1.0)
ALL = "all"


def parse_score_pair(review: str) -> ScorePair | None:
    """The two scores on a review's first line, or ``None`` when the line does not parse."""
    first = review.split("\n")[0].replace(",", " ")
    fields = first.split(" ")
    if len(fields) != 2:
        return None
    try:
        return float(fields[0]), float(fields[1])
    except ValueError:
        return None


@dataclass(frozen=True)
class GroupScore:
    n: int  # judgements averaged
    n_failed: int  # failed judgements in the group (averaged in or left out)
    reference_mean: float | None  # rounded to 3 decimals
    model_mean: float | None
    relative: float | None  # None when nothing was averaged or the reference mean is 0


def relative_score(pairs: Sequence[ScorePair], digits: int) -> tuple[float, float, float | None]:
    """(reference mean, model mean, relative score) with the summariser's rounding."""
    means = np.asarray(pairs, dtype=float).mean(0).tolist()
    ref, model = round(means[0], 3), round(means[1], 3)
    rel = round(model / ref * 100, digits) if ref != 0 else None
    return ref, model, rel


def group_scores(
    judgements: Sequence[tuple[Sequence[str], ScorePair | None]],
    digits: int = 2,
    failures_as_minus_one: bool = False,
) -> dict[str, GroupScore]:
    """Relative scores per group. Each judgement names its groups (besides ``all``) and its
    score pair, ``None`` for a failed judgement (no answer from the judge, or unparsable)."""
    pairs: dict[str, list[ScorePair]] = {ALL: []}
    failed: dict[str, int] = {ALL: 0}
    for groups, pair in judgements:
        for g in (*groups, ALL):
            pairs.setdefault(g, [])
            failed.setdefault(g, 0)
            if pair is None:
                failed[g] += 1
                if failures_as_minus_one:
                    pairs[g].append(FAILED_PAIR)
            else:
                pairs[g].append(pair)
    out: dict[str, GroupScore] = {}
    for g in sorted(pairs):
        if not pairs[g]:
            out[g] = GroupScore(0, failed[g], None, None, None)
            continue
        ref, model, rel = relative_score(pairs[g], digits)
        out[g] = GroupScore(len(pairs[g]), failed[g], ref, model, rel)
    return out
