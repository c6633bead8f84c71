"""Closed-set choice by likelihood: each sample offers candidate answers, the model scores
every one (summed log-probability after the prompt, teacher-forced), the best is its answer.

The request kind RegionGPT's region classification and likelihood baselines need; an
adapter that cannot rank is refused before any model work (``Adapter.serves``). Metric
``acc``: per cent of samples whose best-scored choice is the answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from evalkit.metrics.choice import choice_accuracy, ranked_choice
from evalkit.protocol import (
    Data,
    Outputs,
    ProtocolArgs,
    ScoreResult,
    ScoringContext,
    TaskProtocol,
    register_protocol,
)
from evalkit.records import Sample, SampleInfo


class ChoiceQuestion(SampleInfo):
    """The candidates one sample offers and which of them is right."""

    choices: list[str]
    answer: int


class ChoiceArgs(ProtocolArgs):
    # Rank by mean log p per token instead of the sum (the sum favours short choices).
    length_normalise: bool = False


@register_protocol("choice_ranking")
class ChoiceRanking(TaskProtocol[ChoiceArgs]):
    def choices_for(self, sample: Sample) -> tuple[str, ...]:
        return tuple(sample.info(ChoiceQuestion).choices)

    def score_outputs(
        self, samples: Sequence[Sample], outputs: Outputs, data: Data, context: ScoringContext
    ) -> ScoreResult:
        predicted: list[int] = []
        answers: list[int] = []
        per_sample = []
        for s in samples:
            info = s.info(ChoiceQuestion)
            out = outputs[s.id]
            if out.choice_logprobs is None or out.choice_tokens is None:
                raise ValueError(f"sample {s.id}: the prediction has no choice scores (not a ranking answer)")
            best = ranked_choice(out.choice_logprobs, out.choice_tokens, self.args.length_normalise)
            predicted.append(best)
            answers.append(info.answer)
            per_sample.append(
                {
                    "id": s.id,
                    "image": s.image,
                    "prediction": info.choices[best],
                    "target": info.choices[info.answer],
                    "acc": 100.0 if best == info.answer else 0.0,
                    "target_logprob": round(out.choice_logprobs[info.answer], 4),
                    "best_logprob": round(out.choice_logprobs[best], 4),
                }
            )
        metrics = {"acc": choice_accuracy(predicted, answers)}
        n_choices = sorted({len(s.info(ChoiceQuestion).choices) for s in samples})
        counts = {"samples": len(samples), **({"choices": n_choices[0]} if len(n_choices) == 1 else {})}
        return ScoreResult(metrics=metrics, per_sample=per_sample, counts=counts)
