"""MDVP-Bench: a vision judge (GPT-4V in the paper) sees the image with the visual prompts
drawn as Set-of-Marks, the domain's context sentence, the question, the reference answer and
the model's answer. Groups: each phase (``natural_QA_box``...), each domain (the paper's
columns: natural, ocr, screenshot, multipanel) and all, every group pooled over its
judgements as MDVP's summariser does.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from evalkit.errors import DataError
from evalkit.judge.client import ChatCall
from evalkit.judge.prompts import judge_messages
from evalkit.protocol import register_protocol
from evalkit.records import Sample
from evalkit.render import marks_png

from ..judged.judged_review import JudgedArgs, JudgedProtocol
from .mdvp import DOMAIN_CONTEXT, MdvpQuestion


class MdvpArgs(JudgedArgs):
    rule: str = "box"  # the one rule of MDVP's rule file every question is judged by
    image_detail: Literal["low", "high", "auto"] = "high"  # the judge image's detail level


@register_protocol("mdvp_review")
class MdvpReview(JudgedProtocol):  # its Args: MdvpArgs (a JudgedArgs subclass)
    Args = MdvpArgs
    default_judge = "gpt-4-vision-preview"

    @property
    def mdvp_args(self) -> MdvpArgs:
        assert isinstance(self.args, MdvpArgs)  # Args = MdvpArgs: the task validated them so
        return self.args

    def prepare(self, data: Mapping[str, Path | None]) -> None:
        super().prepare(data)
        self.mdvp_rule = self.rule(self.mdvp_args.rule)  # one rule for all

    def judge_call(self, sample: Sample, answer: str) -> ChatCall:
        context = DOMAIN_CONTEXT[sample.info(MdvpQuestion).domain]
        content = self.review(sample, answer, context, self.mdvp_rule)
        if sample.image_path is None:
            raise DataError(f"<sample {sample.id}>", "the MDVP judge needs the image (--data images=DIR)")
        try:
            png = marks_png(sample.image_path, sample.regions)
        except DataError as exc:
            raise DataError(exc.path, f"cannot draw the marks: {exc.message}", sample.id) from exc
        detail = self.mdvp_args.image_detail
        return ChatCall(sample.id, judge_messages(content, png, detail), self.params())

    def groups(self, sample: Sample) -> list[str]:
        info = sample.info(MdvpQuestion)
        return [info.phase, info.domain]

    def extra_deviations(self) -> list[str]:
        return [
            "the judge's Set-of-Marks image is a PNG drawn with Pillow's font; the released "
            "script sends OpenCV's JPEG with the Hershey font",
            "android_* and web_* phases get the screenshot context sentence; the released "
            "script matches 'screen' in the phase name, which they lack, and crashes",
        ]
