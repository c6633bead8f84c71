"""VCR multiple choice by a generating model: Q->A, QA->R (the GT answer given) and Q->AR
(PROTOCOLS_WAVE2.md §F). No released code evaluates SPHINX-V's (VCR-fine-tuned, unreleased)
model; the prompts are the only released MLLM VCR evaluation's, ViP-LLaVA ``77079b1``
``llava/visual_prompt_organizer.py``::

    build_prompt(question, options) = f"{question}\\n" + "\\n".join(f"{chr(65 + i)}. {option}")
                                      + "\\nAnswer with the option's letter from the given choices directly."
    Q->A : build_prompt(question, answers)
    QA->R: 'I give you a question and its answer, I need you to provide a rationale explaining why
            the answer is right. "{question}" The answer is "{org_answer}".What is the rationale
            for this decision?' + build_prompt('', rationales)      (".What": no space, verbatim)

Tokens are joined with spaces except before ``. , ? ! : ;``. ViP-LLaVA names each referred
object by a randomly drawn colour and shape it paints on the image; evalkit (default,
non-reference, recorded) writes ``<name> <region>`` instead — ``[2]`` -> ``person <region>``,
``[0, 3]`` -> ``person <region> and dog <region>`` — the request's regions being the objects'
in placeholder order (an object referred to twice appears twice).

Parsing: the first ``A``-``D`` of the stripped answer as ``^\\(?([ABCD])(?:[).:,\\s]|$)``
(``parse: lenient``, default) or ViP-LLaVA's exact ``outputs.strip().lower() == gt.lower()``
(``parse: exact``, the ``reference`` variant; ``"A."`` is wrong there). Metrics by r2c's
``eval_q2ar.py`` (:mod:`evalkit.metrics.vcr`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from evalkit.metrics.vcr import hit_rate, vcr_accuracies
from evalkit.protocol import Data, ProtocolArgs, ScoreResult, ScoringContext, TaskProtocol, register_protocol
from evalkit.records import REGION_PLACEHOLDER, Request, Sample

from .vcr_jsonl import Token, VcrQuestion

LETTERS = "ABCD"
NO_SPACE_BEFORE = frozenset({".", ",", "?", "!", ":", ";"})
LENIENT = re.compile(r"^\(?([ABCD])(?:[).:,\s]|$)")
QAR_LEAD = (
    "I give you a question and its answer, I need you to provide a rationale "
    "explaining why the answer is right."
)


class VcrArgs(ProtocolArgs):
    mode: Literal["qa", "qar", "q_ar"] = "qa"  # Q->A, QA->R, or both asked (Q->AR)
    parse: Literal["lenient", "exact"] = "lenient"


def render_tokens(tokens: Sequence[Token], objects: Sequence[str]) -> tuple[str, list[int]]:
    """The tokens as text, each object reference ``<name> <region>``; and the object indices
    in placeholder order."""
    text = ""
    refs: list[int] = []
    for k, token in enumerate(tokens):
        if isinstance(token, list):
            piece = " and ".join(f"{objects[i]} {REGION_PLACEHOLDER}" for i in token)
            refs.extend(token)
        else:
            piece = token
        if k > 0 and not (isinstance(token, str) and token in NO_SPACE_BEFORE):
            text += " "
        text += piece
    return text, refs


def build_prompt(question: str, options: Sequence[str]) -> str:
    """ViP-LLaVA's ``build_prompt``, verbatim."""
    options_str = "\n".join(f"{chr(65 + i)}. {option}" for i, option in enumerate(options))
    return f"{question}\n{options_str}\nAnswer with the option's letter from the given choices directly."


def qa_text(info: VcrQuestion) -> tuple[str, list[int]]:
    question, refs = render_tokens(info.question, info.objects)
    answers = []
    for choice in info.answer_choices:
        text, more = render_tokens(choice, info.objects)
        answers.append(text)
        refs += more
    return build_prompt(question, answers), refs


def qar_text(info: VcrQuestion) -> tuple[str, list[int]]:
    question, refs = render_tokens(info.question, info.objects)
    answer, more = render_tokens(info.answer_choices[info.answer_label], info.objects)
    refs += more
    rationales = []
    for choice in info.rationale_choices:
        text, more = render_tokens(choice, info.objects)
        rationales.append(text)
        refs += more
    options = build_prompt("", rationales)
    return (
        f'{QAR_LEAD} "{question}" The answer is "{answer}".What is the rationale for this decision?{options}',
        refs,
    )


def picked(text: str, parse: str) -> str | None:
    """The letter an answer picks (lenient), or the whole stripped answer (exact)."""
    if parse == "exact":
        return text.strip()
    found = LENIENT.match(text.strip())
    return found.group(1) if found else None


def hit(text: str, label: int, parse: str) -> bool:
    choice = picked(text, parse)
    if parse == "exact":
        return choice is not None and choice.lower() == LETTERS[label].lower()
    return choice == LETTERS[label]


@register_protocol("vcr_choice")
class VcrChoice(TaskProtocol[VcrArgs]):
    def parts(self) -> list[str]:
        return {"qa": ["qa"], "qar": ["qar"], "q_ar": ["qa", "qar"]}[self.args.mode]

    def request_id(self, sample: Sample, part: str) -> str:
        return sample.id if self.args.mode != "q_ar" else f"{sample.id}/{part}"

    def build_requests(
        self, samples: Sequence[Sample], prompt: str, generation: dict[str, Any]
    ) -> list[Request]:
        out = []
        for s in samples:
            info = s.info(VcrQuestion)
            for part in self.parts():
                text, refs = qa_text(info) if part == "qa" else qar_text(info)
                regions = [s.regions[i] for i in refs] if s.regions else []
                out.append(
                    Request(
                        self.request_id(s, part),
                        s.id,
                        s.image_path,
                        prompt.replace("{vcr}", text),
                        regions,
                        self.generation_for(s, generation),
                    )
                )
        return out

    def score(
        self, samples: Sequence[Sample], texts: Mapping[str, str], data: Data, context: ScoringContext
    ) -> ScoreResult:
        parse = self.args.parse
        hits: dict[str, list[bool]] = {"qa": [], "qar": []}
        per_sample = []
        unparsed = 0
        for s in samples:
            info = s.info(VcrQuestion)
            row: dict[str, Any] = {"id": s.id, "image": s.image}
            for part in self.parts():
                text = texts[self.request_id(s, part)]
                label = info.answer_label if part == "qa" else info.rationale_label
                ok = hit(text, label, parse)
                unparsed += picked(text, parse) is None
                hits[part].append(ok)
                row |= {f"{part}_prediction": text, f"{part}_target": LETTERS[label], f"{part}_hit": ok}
            per_sample.append(row)
        if self.args.mode == "q_ar":
            metrics = vcr_accuracies(hits["qa"], hits["qar"])
            for row in per_sample:
                row["q2ar"] = 100.0 if row["qa_hit"] and row["qar_hit"] else 0.0
        elif self.args.mode == "qa":
            metrics = {"q2a": hit_rate(hits["qa"])}
        else:
            metrics = {"qa2r": hit_rate(hits["qar"])}
        deviations = [
            "objects are named '<name> <region>' with the object's region (ViP-LLaVA paints each "
            "with a randomly drawn colour and shape and names it so); SPHINX-V's own VCR prompts, "
            "scorer and fine-tuned weights are not released"
        ]
        if parse == "lenient":
            deviations.append(
                "answers parsed leniently (the first A-D: 'A.', '(B)', 'C) ...'); ViP-LLaVA wants the "
                "stripped answer to be the letter exactly"
            )
        counts = {"questions": len(samples), "unparsed": unparsed}
        return ScoreResult(metrics=metrics, per_sample=per_sample, deviations=deviations, counts=counts)
