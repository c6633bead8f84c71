"""The records that flow one way through evalkit: Sample -> Request -> Prediction.

* A :class:`Sample` is one unit of ground truth as the benchmark defines it (one region of
  LVIS, one POPE question, one panoptic segment). Its ``id`` is stable and derived from
  the data, never from enumeration order.
* A :class:`Request` is what an adapter is asked: an image, a prompt with ``<region>``
  placeholders (the i-th placeholder is ``regions[i]``) and generation settings.
* A :class:`Prediction` is the adapter's raw answer to one request.

A request either generates (the default) or, when it carries ``choices``, ranks them: the
adapter scores each candidate answer by the summed log-probability of its tokens, teacher-
forced after the prompt (RegionGPT's and Ferret-style closed-set protocols, likelihood
baselines). What a request needs of the adapter is :meth:`Request.needs`; an adapter says
what it serves in ``Adapter.serves`` and the engine refuses a mismatch before any model work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from evalkit.hashing import sha256_text
from evalkit.regions import Region
from evalkit.regions.convert import Conversion

# What a request can ask of an adapter: generate text, rank candidate answers by likelihood,
# (with generation ``logprobs: true``) the generated tokens' log-probabilities, and (with
# generation ``masks: true``) masks grounding the answer's phrases.
Capability = Literal["generate", "rank", "token_logprobs", "masks"]
CAPABILITIES: tuple[Capability, ...] = ("generate", "rank", "token_logprobs", "masks")

REGION_PLACEHOLDER = "<region>"
IMAGE_PLACEHOLDER = "<image>"


class SampleInfo(BaseModel):
    """A task family's typed per-sample payload: what its protocol reads besides ``target``
    (the judge's question, a POPE question's text, a panoptic segment's ids). Families
    subclass it; unknown fields are errors, so a reader and its protocol cannot drift apart."""

    model_config = ConfigDict(extra="forbid")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


InfoT = TypeVar("InfoT", bound=SampleInfo)


@dataclass
class Sample:
    id: str
    image: str | None  # file name as written in the data (relative to the images folder)
    regions: list[Region]
    target: Any  # the ground truth in the benchmark's own form (category string, captions...)
    image_path: str | None = None  # resolved path, when the images folder is known
    meta: SampleInfo = field(default_factory=SampleInfo)

    def info(self, kind: type[InfoT]) -> InfoT:
        """``meta`` as the family payload ``kind`` its protocol reads (TypeError otherwise:
        a card that pairs a reader with another family's protocol)."""
        if not isinstance(self.meta, kind):
            raise TypeError(f"sample {self.id}: expected {kind.__name__}, got {type(self.meta).__name__}")
        return self.meta

    def to_json(self) -> dict[str, Any]:
        meta = self.meta.to_json()
        return {
            "id": self.id,
            "image": self.image,
            "target": self.target,
            "regions": [r.to_json() for r in self.regions],
            **({"meta": meta} if meta else {}),
        }


@dataclass
class Request:
    id: str  # unique within a task; equals sample_id when a sample makes one request
    sample_id: str
    image_path: str | None
    prompt: str
    regions: list[Region]
    generation: dict[str, Any]
    # Candidate answers to rank (a likelihood request); None: generate.
    choices: tuple[str, ...] | None = None
    # What the task did to the data's regions before this request (a card's region_kind):
    # a record, not an input — the converted regions are in ``regions`` (and the payload).
    conversions: tuple[Conversion, ...] = ()
    # (height, width) of the image when the data says it and no region carries it (a
    # whole-image question answered with masks): answers' masks are checked against it
    # without opening the image. Not part of the payload: it changes no model answer.
    image_size: tuple[int, int] | None = None

    def needs(self) -> frozenset[Capability]:
        """What the adapter must serve to answer this request."""
        needed: set[Capability] = {"rank" if self.choices is not None else "generate"}
        if self.generation.get("logprobs"):
            needed.add("token_logprobs")
        if self.generation.get("masks"):
            needed.add("masks")
        return frozenset(needed)

    def payload(self) -> dict[str, Any]:
        """Everything that determines the model's answer, in canonical JSON form."""
        out: dict[str, Any] = {
            "image": self.image_path,
            "prompt": self.prompt,
            "regions": [r.to_json() for r in self.regions],
            "generation": self.generation,
            # Always empty: a field no protocol ever set, kept in the payload so that every
            # store key written by evalkit 0.1 stays valid (tests/test_layout.py pins one).
            "extra": {},
        }
        if self.choices is not None:
            # Only ranking requests carry the key: a generation request's payload, and so its
            # store key, is what it was before ranking existed.
            out["choices"] = list(self.choices)
        return out

    def payload_digest(self) -> str:
        text = json.dumps(self.payload(), sort_keys=True, separators=(",", ":"))
        return sha256_text(text)


@dataclass(frozen=True)
class MaskOutput:
    """One mask a model answered with, grounding a phrase of its text (GLaMM / MGLMM answer
    ``<p>a dog</p> [SEG] on <p>the grass</p> [SEG]``: one mask per ``[SEG]``).

    ``rle`` is COCO RLE at the image's size (``{"size": [h, w], "counts": str}``);
    ``span`` the ``[start, end)`` character offsets of the phrase in the prediction's text,
    ``phrase`` its words. Without either, the i-th mask grounds the text's i-th ``[SEG]``:
    a ``<p>…</p> [SEG]`` phrase (:func:`evalkit.outputs.seg_phrases`), or a bare ``[SEG]``
    as in GLaMM's referring-segmentation answer ``It is [SEG].``.
    """

    rle: dict[str, Any]
    phrase: str | None = None
    span: tuple[int, int] | None = None
    score: float | None = None  # the model's confidence, where it gives one

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rle": self.rle}
        if self.phrase is not None:
            out["phrase"] = self.phrase
        if self.span is not None:
            out["span"] = list(self.span)
        if self.score is not None:
            out["score"] = self.score
        return out

    @staticmethod
    def from_json(obj: dict[str, Any]) -> MaskOutput:
        span = obj.get("span")
        return MaskOutput(
            obj["rle"],
            obj.get("phrase"),
            (int(span[0]), int(span[1])) if span is not None else None,
            obj.get("score"),
        )


@dataclass
class Prediction:
    request_id: str
    text: str  # raw generated text, before any task post-processing
    prompt: str | None = None  # the prompt as the adapter rendered it
    token_ids: list[int] | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # region conversions, timings
    # Set when this request could not be answered because of its input (unreadable image,
    # region the model cannot take): the engine fails or skips it under --on-error; such a
    # prediction is never stored, so a later run tries again.
    error: str | None = None
    # log p of each generated token (natural log, the model's own distribution before any
    # temperature or top-p), when the request's generation asks ``logprobs: true``.
    token_logprobs: list[float] | None = None
    # The text each generated token adds to ``text``, in order (their concatenation is
    # ``text``; a stop token adds ""), beside ``token_logprobs``: what lets a scorer take the
    # probability of one span of the answer (RegionGPT's class name) without a tokenizer.
    token_texts: list[str] | None = None
    # A ranking request's answer: per choice (request order), the summed log p of its
    # tokens after the prompt, and how many tokens that is (for length normalisation).
    choice_logprobs: list[float] | None = None
    choice_tokens: list[int] | None = None
    # Masks the model answered with (segmentation-grounded answers), in the text's order.
    masks: list[MaskOutput] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.request_id, "text": self.text}
        if self.error is not None:
            out["error"] = self.error
        if self.prompt is not None:
            out["prompt"] = self.prompt
        if self.token_ids is not None:
            out["token_ids"] = self.token_ids
        if self.token_logprobs is not None:
            out["token_logprobs"] = self.token_logprobs
        if self.token_texts is not None:
            out["token_texts"] = self.token_texts
        if self.choice_logprobs is not None:
            out["choice_logprobs"] = self.choice_logprobs
            out["choice_tokens"] = self.choice_tokens
        if self.masks is not None:
            out["masks"] = [m.to_json() for m in self.masks]
        if self.meta:
            out["meta"] = self.meta
        return out

    @staticmethod
    def from_json(obj: dict[str, Any]) -> Prediction:
        """The inverse of :meth:`to_json` (the store's rows)."""
        return Prediction(
            request_id=obj["id"],
            text=obj["text"],
            prompt=obj.get("prompt"),
            token_ids=obj.get("token_ids"),
            meta=obj.get("meta", {}),
            token_logprobs=obj.get("token_logprobs"),
            token_texts=obj.get("token_texts"),
            choice_logprobs=obj.get("choice_logprobs"),
            choice_tokens=obj.get("choice_tokens"),
            masks=[MaskOutput.from_json(m) for m in obj["masks"]] if obj.get("masks") is not None else None,
        )
