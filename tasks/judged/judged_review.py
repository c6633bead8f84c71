"""LLM-judged protocols: Osprey-Bench detailed description, Ferret-Bench, MDVP-Bench.

The model answers a question about regions; at scoring time a judge model compares its answer
("Assistant 2") with the reference answer ("Assistant 1") under the benchmark's rule prompt
and gives both a 1-10 score; the metric is the model's mean over the reference's mean x 100
(:mod:`evalkit.metrics.judged`). Judging happens only at scoring time, through
:class:`~evalkit.judge.client.ChatClient` (bounded, retrying, cached: re-scoring the same
predictions sends no request). The judge endpoint comes from ``--judge-*`` / ``EVALKIT_JUDGE_*``
(:func:`~evalkit.judge.settings.judge_settings`).

protocol_args: ``judge_model`` (the paper's judge, overridable), ``judge_temperature``,
``judge_max_tokens``, ``round_digits`` (the summariser's rounding), ``colon_rule`` (Osprey's
``split(':')[1]`` on the answer), ``strip_boxes`` (Ferret's removal of `` [..]`` from the
answer), ``failures_as_minus_one`` and ``context_quirk`` (the ``reference`` variant: the
released arithmetic and the ``[Context]\\`` opening).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from evalkit.answers import clean_decoded, colon_rule
from evalkit.judge.client import ChatCall, ChatClient, ChatOutcome
from evalkit.judge.prompts import judge_messages, load_rules, review_content, rule_for
from evalkit.judge.settings import ClientSettings, judge_settings
from evalkit.metrics.judged import ALL, GroupScore, group_scores, parse_score_pair
from evalkit.protocol import Data, ProtocolArgs, ScoreResult, ScoringContext, TaskProtocol, register_protocol
from evalkit.readers import require_path
from evalkit.records import Sample

from .bench_files import JudgedInfo, JudgedQuestion

_BRACKETED = re.compile(r"\[.*?\]")


def strip_boxes(answer: str) -> str:
    """Ferret's ``postprocess_answer`` for refer_desc / refer_reason: every non-greedy
    ``[...]`` match is deleted wherever it follows a space (``answer.replace(' ' + m, '')``)."""
    for match in _BRACKETED.findall(answer):
        answer = answer.replace(" " + match, "")
    return answer


class JudgedArgs(ProtocolArgs):
    judge_model: str | None = None  # the paper's judge (None: the protocol's default_judge)
    judge_temperature: float = 0.2
    judge_max_tokens: int = 1024
    colon_rule: bool = False  # Osprey's ``split(':')[1]`` on the answer before judging
    strip_boxes: bool = False  # Ferret's postprocess_answer (drop `` [...]`` spans)
    context_quirk: bool = False  # the released '[Context]\\' with no newline
    failures_as_minus_one: bool = False  # the released summariser averages failures as -1
    round_digits: int = 2  # the summariser's rounding


class JudgedProtocol(TaskProtocol[JudgedArgs]):
    """Shared flow; subclasses say what the judge sees and how samples group."""

    default_judge = "gpt-4"
    # The released review script sends '[Context]\' (Osprey, Ferret, MDVP); LLaVA's does not.
    context_quirk_released: ClassVar[bool] = True

    @property
    def paper_judge(self) -> str:
        return self.args.judge_model or self.default_judge

    # ------------------------------------------------------------------ requests
    def prompt_for(self, sample: Sample, prompt: str) -> str:
        return prompt.replace("{question}", sample.info(JudgedInfo).prompt_question)

    def generation_for(self, sample: Sample, generation: dict[str, Any]) -> dict[str, Any]:
        gen = dict(generation)
        tokens = getattr(sample.meta, "max_new_tokens", None)  # MDVP: per phase
        if "max_new_tokens" not in gen and tokens is not None:
            gen["max_new_tokens"] = tokens
        return gen

    # ------------------------------------------------------------------ what the judge sees
    def judged_answer(self, raw: str) -> str:
        text = clean_decoded(raw)
        if self.args.colon_rule:
            text = colon_rule(text)
        if self.args.strip_boxes:
            text = strip_boxes(text)
        return text

    def prepare(self, data: Mapping[str, Path | None]) -> None:
        """Load what every judge call needs: the benchmark's rules."""
        self.rule_path = require_path(data, "rule")
        self.rules = load_rules(self.rule_path)

    def rule(self, key: str) -> tuple[str, str]:
        """(role, rule prompt) of the rule named ``key``."""
        return rule_for(self.rules, key, self.rule_path)

    def review(self, sample: Sample, answer: str, context: str, rule: tuple[str, str]) -> str:
        """The judge's user content for ``sample``: ``context``, its question, the reference
        answer, the model's ``answer`` and ``rule`` (from :meth:`rule`)."""
        role, prompt = rule
        return review_content(
            context,
            sample.info(JudgedInfo).question,
            str(sample.target),
            answer,
            prompt,
            role,
            reference_quirk=self.args.context_quirk,
        )

    def judge_call(self, sample: Sample, answer: str) -> ChatCall:
        raise NotImplementedError

    def groups(self, sample: Sample) -> list[str]:
        return [sample.info(JudgedQuestion).category]

    def extra_deviations(self) -> list[str]:
        return []

    def params(self) -> dict[str, Any]:
        return {
            "temperature": self.args.judge_temperature,
            "max_tokens": self.args.judge_max_tokens,
        }

    # ------------------------------------------------------------------ scoring
    def check_ready(self, context: ScoringContext) -> None:
        judge_settings(self.paper_judge, context.judge)  # raises when no judge can be reached

    def score(
        self, samples: Sequence[Sample], texts: Mapping[str, str], data: Data, context: ScoringContext
    ) -> ScoreResult:
        settings = judge_settings(self.paper_judge, context.judge)
        self.prepare(data)
        answers = {s.id: self.judged_answer(texts[s.id]) for s in samples}
        calls = (self.judge_call(s, answers[s.id]) for s in samples)  # lazy: images
        client = ChatClient(settings)
        try:
            outcomes = client.complete(calls)
        finally:
            client.close()
        return self.summarise(samples, texts, answers, outcomes, settings, client.stats.as_dict())

    def summarise(
        self,
        samples: Sequence[Sample],
        texts: Mapping[str, str],
        answers: Mapping[str, str],
        outcomes: Mapping[str, ChatOutcome],
        settings: ClientSettings,
        stats: dict[str, Any],
    ) -> ScoreResult:
        minus_one = self.args.failures_as_minus_one
        digits = self.args.round_digits
        judgements = []
        rows = []
        n_request_failed = n_unparsable = 0
        for s in samples:
            outcome = outcomes[s.id]
            pair = parse_score_pair(outcome.text) if outcome.text is not None else None
            if outcome.text is None:
                status = "judge_failed"
                n_request_failed += 1
            elif pair is None:
                status = "unparsable"
                n_unparsable += 1
            else:
                status = "scored"
            groups = self.groups(s)
            judgements.append((groups, pair))
            rows.append(
                {
                    "id": s.id,
                    "image": s.image,
                    "groups": groups,
                    "status": status,
                    "scores": list(pair) if pair is not None else None,
                    "question": s.info(JudgedInfo).question,
                    "prediction": texts[s.id],
                    "judged_answer": answers[s.id],
                    "reference_answer": s.target,
                    "review": outcome.text,
                    "judge_error": outcome.error,
                    "judge_attempts": outcome.attempts,
                    "judge_cached": outcome.cached,
                }
            )
        scores = group_scores(judgements, digits, minus_one)
        n_failed = n_request_failed + n_unparsable
        return ScoreResult(
            metrics=self.metrics(scores),
            per_sample=rows,
            deviations=self.deviations(settings, minus_one),
            counts={
                "judgements": len(samples),
                "judge_failures": n_failed,
                "judge_request_failures": n_request_failed,
                "judge_unparsable": n_unparsable,
                "failed": n_failed,
                "judge_cache_hits": int(stats["cache_hits"]),
                "judge_http_requests": int(stats["http_requests"]),
            },
            extra={
                "judge": {**settings.describe(), **self.params(), "stats": stats},
                "judge_groups": {
                    g: {
                        "n": v.n,
                        "n_failed": v.n_failed,
                        "reference_mean": v.reference_mean,
                        "model_mean": v.model_mean,
                        "relative_score": v.relative,
                    }
                    for g, v in scores.items()
                },
            },
        )

    def metrics(self, scores: Mapping[str, GroupScore]) -> dict[str, float]:
        out: dict[str, float] = {}
        if scores[ALL].relative is not None:
            out["relative_score"] = float(scores[ALL].relative)  # type: ignore[arg-type]
        named = [g for g in scores if g != ALL]
        if len(named) > 1:
            for g in named:
                rel = scores[g].relative
                if rel is not None:
                    out[f"relative_score/{g}"] = float(rel)
        return out

    def deviations(self, settings: ClientSettings, minus_one: bool) -> list[str]:
        out = []
        if not minus_one:
            out.append(
                "failed judgements (no judge answer after the last attempt, or a first line "
                "that is not two scores) are left out of the means and counted in "
                "judge_failures; the released summariser averages them in as -1"
            )
        if not self.args.context_quirk and self.context_quirk_released:
            out.append(
                "the judge's context opens with '[Context]\\n'; the released script sends "
                "'[Context]\\' with no newline"
            )
        paper_judge = self.paper_judge
        if settings.model != paper_judge:
            out.append(f"judge model {settings.model!r} (the paper used {paper_judge!r})")
        out.append("answers matched to questions by id, not by line order")
        return out + self.extra_deviations()


@register_protocol("judged_review")
class TextJudgedReview(JudgedProtocol):
    """Osprey-Bench description and Ferret-Bench: a text-only judge with a text context;
    the rule is picked by the question's category."""

    def judge_call(self, sample: Sample, answer: str) -> ChatCall:
        info = sample.info(JudgedQuestion)
        rule = self.rule(info.category)
        content = self.review(sample, answer, str(info.context), rule)
        return ChatCall(sample.id, judge_messages(content), self.params())
