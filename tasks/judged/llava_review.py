"""LLaVA-Bench's GPT-4 review (haotian-liu/LLaVA ``32ddfc5`` ``llava/eval/eval_gpt_review_visual.py``
and ``summarize_gpt_review.py``; PROTOCOLS_WAVE2.md §E): a text judge sees the image's captions
and boxes, the question, the GPT-4 answer (Assistant 1) and the model's (Assistant 2), under
the rule of the question's category; relative score per category and overall, rounded to
1 decimal. The review's content opens ``[Context]\\n`` (this script has no ``[Context]\\``
quirk).

Requests: the question as is; with ``full_image_box`` (default) one box region over the whole
image, SPHINX-V's "bounding boxes of nearly full-image size" (its exact box is not released:
``[0, 0, W, H]``, recorded). ``full_image_box: false`` asks about the image alone (LLaVA and the
other rows of the table).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evalkit.judge.client import ChatCall
from evalkit.judge.prompts import judge_messages
from evalkit.protocol import register_protocol
from evalkit.records import Request, Sample
from evalkit.regions import Region

from .judged_review import JudgedArgs, JudgedProtocol
from .llava_bench import LlavaQuestion


class LlavaArgs(JudgedArgs):
    full_image_box: bool = True  # SPHINX-V: a near-full-image box as the visual prompt


@register_protocol("llava_review")
class LlavaBenchReview(JudgedProtocol):  # its Args: LlavaArgs (a JudgedArgs subclass)
    Args = LlavaArgs
    default_judge = "gpt-4-0314"
    context_quirk_released = False  # eval_gpt_review_visual.py writes '[Context]\n'

    @property
    def llava_args(self) -> LlavaArgs:
        assert isinstance(self.args, LlavaArgs)  # Args = LlavaArgs: the task validated them so
        return self.args

    def regions_for(self, sample: Sample) -> list[Region]:
        info = sample.info(LlavaQuestion)
        if not self.llava_args.full_image_box or info.width is None or info.height is None:
            return []
        return [Region.from_box((0.0, 0.0, float(info.width), float(info.height)), info.height, info.width)]

    def build_requests(
        self, samples: Sequence[Sample], prompt: str, generation: dict[str, Any]
    ) -> list[Request]:
        return [
            Request(
                s.id,
                s.id,
                s.image_path,
                self.prompt_for(s, prompt),
                self.regions_for(s),
                self.generation_for(s, generation),
            )
            for s in samples
        ]

    def judge_call(self, sample: Sample, answer: str) -> ChatCall:
        info = sample.info(LlavaQuestion)
        content = self.review(sample, answer, str(info.context), self.rule(info.category))
        return ChatCall(sample.id, judge_messages(content), self.params())

    def extra_deviations(self) -> list[str]:
        if not self.llava_args.full_image_box:
            return []
        return [
            "the visual prompt is the whole image [0, 0, W, H]: SPHINX-V's 'nearly full-image' box "
            "is not released"
        ]
