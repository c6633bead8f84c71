"""Closed-set choice by likelihood: which candidate answer a model finds most probable.

Example:
    >>> ranked_choice([-3.0, -1.5, -1.5], [2, 1, 3])  # ties: the first listed wins
    1
    >>> ranked_choice([-3.0, -1.5, -4.0], [3, 1, 4], length_normalise=True)  # per token
    0
    >>> choice_accuracy([1, 0, 2], [1, 1, 2])
    66.66666666666667
"""

from __future__ import annotations

from collections.abc import Sequence

from evalkit.metrics.spec import MetricSpec, declare

declare(MetricSpec("acc", "Acc", True, "classification"))


def ranked_choice(logprobs: Sequence[float], tokens: Sequence[int], length_normalise: bool = False) -> int:
    """The index of the most probable choice.

    Args:
        logprobs: per choice, the summed log-probability of its tokens after the prompt.
        tokens: per choice, its token count.
        length_normalise: rank by mean log-probability per token instead of the sum (the sum
            favours short answers).

    Returns:
        The argmax; on a tie, the choice listed first.
    """
    if not logprobs or len(logprobs) != len(tokens):
        raise ValueError(f"{len(logprobs)} scores for {len(tokens)} choices")
    values = (
        [lp / max(n, 1) for lp, n in zip(logprobs, tokens, strict=True)] if length_normalise else logprobs
    )
    best = 0
    for k, value in enumerate(values):
        if value > values[best]:
            best = k
    return best


def choice_accuracy(predicted: Sequence[int], answers: Sequence[int]) -> float:
    """Per cent of questions whose predicted choice is the answer (0 for no questions)."""
    if len(predicted) != len(answers):
        raise ValueError(f"{len(predicted)} predictions for {len(answers)} answers")
    if not answers:
        return 0.0
    return 100.0 * sum(p == a for p, a in zip(predicted, answers, strict=True)) / len(answers)
