"""POPE (object hallucination): yes/no questions about a whole image, no region.

* Prompt: the card's template with ``{text}`` replaced by the sample's question (Osprey:
  ``<image>\\n{text}``; LLaVA appends ``\\nAnswer the question using a single word or phrase.``).
* Parsing: the official rule (:func:`evalkit.metrics.pope.pope_answer`), after Osprey's
  lower-casing (``lowercase``, default true; LLaVA's variant keeps the case). A trailing
  ``</s>`` is dropped first, as ``skip_special_tokens`` does in the reference scripts.
* Pairing: predictions are matched to labels by question id (``align: question_id``). The
  reference scripts zip the answers file with the label file line by line, so a reordered or
  incomplete answers file silently scores the wrong pairs; ``align: line_order`` (the
  ``reference`` variant) reproduces that, pairing answers in the order they were given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from evalkit.answers import drop_stop
from evalkit.metrics.pope import pope_answer, pope_metrics
from evalkit.protocol import Data, ProtocolArgs, ScoreResult, ScoringContext, TaskProtocol, register_protocol
from evalkit.records import Sample

from .pope_questions import PopeQuestion

QUESTION_FIELD = "{text}"


def render_question(template: str, question: str) -> str:
    # str.replace, not str.format: questions and templates may hold braces.
    return template.replace(QUESTION_FIELD, question)


class PopeArgs(ProtocolArgs):
    lowercase: bool = True  # Osprey's evaluate.py lower-cases; LLaVA-1.5's does not
    # question_id: answers matched to labels by id; line_order: zipped by line, as the reference
    align: Literal["question_id", "line_order"] = "question_id"


@register_protocol("pope")
class Pope(TaskProtocol[PopeArgs]):
    def prompt_for(self, sample: Sample, prompt: str) -> str:
        return render_question(prompt, sample.info(PopeQuestion).text)

    def score(
        self, samples: Sequence[Sample], texts: Mapping[str, str], data: Data, context: ScoringContext
    ) -> ScoreResult:
        lowercase = self.args.lowercase
        align = self.args.align

        def parse(text: str) -> str:
            return pope_answer(drop_stop(text), lowercase)

        deviations: list[str] = []
        if align == "question_id":
            raw = [texts[s.id] for s in samples]
            deviations.append(
                "answers are matched to labels by question_id; the reference zips the answers "
                "file with the label file by line order"
            )
        else:
            # The reference's pairing: answers in the order given, labels in file order.
            raw = list(texts.values())[: len(samples)]
        answers = [parse(t) for t in raw]
        labels = [str(s.target) for s in samples]
        scores = pope_metrics(answers, labels)
        if scores.undefined:
            deviations.append(
                f"{', '.join(scores.undefined)} undefined (division by zero, where the reference "
                "script crashes); reported as 0"
            )
        per_sample = [
            {
                "id": s.id,
                "image": s.image,
                "question": s.info(PopeQuestion).text,
                "prediction": r,
                "answer": a,
                "label": y,
                "correct": a == y,
            }
            for s, r, a, y in zip(samples, raw, answers, labels, strict=True)
        ]
        counts = {
            "questions": len(samples),
            "tp": scores.tp,
            "fp": scores.fp,
            "tn": scores.tn,
            "fn": scores.fn,
        }
        return ScoreResult(
            metrics=scores.metrics, per_sample=per_sample, deviations=deviations, counts=counts
        )
