"""Protocols: one benchmark family's request building and scoring, with typed arguments.

A protocol lives in its task family (``tasks/<family>/<name>.py``, registered as ``name``)
and declares an :class:`Args` model: the card's ``protocol_args`` (and each variant's) are
validated against it when the task is built, so a misspelt or mistyped argument is a card
error naming the card, the argument and the allowed names, before any data is read.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError

from evalkit.cards import TaskCard
from evalkit.errors import ConfigError
from evalkit.judge.settings import JudgeOptions
from evalkit.records import Prediction, Request, Sample
from evalkit.registry import Registry


class ProtocolArgs(BaseModel):
    """Base of every protocol's arguments: unknown keys are errors, values are checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Data = Mapping[str, Path | None]  # a task's data: its card's keys -> paths (None: not given)
Outputs = Mapping[str, Prediction]  # the adapter's answers, keyed by request id

ArgsT = TypeVar("ArgsT", bound=ProtocolArgs)


@dataclass(frozen=True)
class ScoringContext:
    """What scoring may use besides ground truth and outputs, passed explicitly by the
    engine (never through the environment): the LLM judge's options for judged tasks."""

    judge: JudgeOptions = field(default_factory=JudgeOptions)


@dataclass
class ScoreResult:
    metrics: dict[str, float]
    per_sample: list[dict[str, Any]] = field(default_factory=list)
    deviations: list[str] = field(default_factory=list)  # departures from the released code
    counts: dict[str, int] = field(default_factory=dict)  # e.g. judge_failures
    extra: dict[str, Any] = field(default_factory=dict)


def validate_args(model: type[ArgsT], raw: Mapping[str, Any], where: str, protocol: str) -> ArgsT:
    """``raw`` as ``model``; ConfigError with one line per card naming each bad argument."""
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        allowed = ", ".join(sorted(model.model_fields)) or "none"
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "?"
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown arg {name!r} for protocol {protocol} (allowed: {allowed})")
            else:
                problems.append(
                    f"arg {name!r}: {err['msg']} (got {err.get('input')!r}; allowed args: {allowed})"
                )
        raise ConfigError(f"{where}: " + "; ".join(problems)) from exc


class TaskProtocol(ABC, Generic[ArgsT]):
    """One benchmark family's request building and scoring. Subclasses register by name; their
    argument model is the type parameter (``TaskProtocol[PopeArgs]``)."""

    name: ClassVar[str]
    Args: ClassVar[type[ProtocolArgs]] = ProtocolArgs

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """``class P(TaskProtocol[PArgs])`` sets ``P.Args = PArgs`` (say it once)."""
        super().__init_subclass__(**kwargs)
        for base in cls.__dict__.get("__orig_bases__", ()):  # own bases only, not inherited
            (arg,) = get_args(base) if get_origin(base) is TaskProtocol else (None,)
            if isinstance(arg, type) and issubclass(arg, ProtocolArgs):
                cls.Args = arg

    def __init__(self, card: TaskCard, variant: str, args: ArgsT):
        self.card = card
        self.variant = variant
        self.args = args

    def prompt_for(self, sample: Sample, prompt: str) -> str:
        """The card's prompt for one sample (protocols fill per-sample fields here)."""
        return prompt

    def generation_for(self, sample: Sample, generation: dict[str, Any]) -> dict[str, Any]:
        """Generation settings for one sample (e.g. MDVP's per-phase max_new_tokens)."""
        return dict(generation)

    def choices_for(self, sample: Sample) -> tuple[str, ...] | None:
        """Candidate answers to rank for one sample (a likelihood task); None: generate."""
        return None

    def build_requests(
        self, samples: Sequence[Sample], prompt: str, generation: dict[str, Any]
    ) -> list[Request]:
        """One request per sample, asking its prompt about the sample's regions."""
        return [
            Request(
                id=s.id,
                sample_id=s.id,
                image_path=s.image_path,
                prompt=self.prompt_for(s, prompt),
                regions=list(s.regions),
                generation=self.generation_for(s, generation),
                choices=self.choices_for(s),
            )
            for s in samples
        ]

    def check_ready(self, context: ScoringContext) -> None:
        """Raise a :class:`ConfigError` when scoring could not run under ``context`` (a judged
        task without a judge endpoint or key). Called before the model is loaded, so a
        missing setting costs seconds, not a whole generation run."""

    def score_outputs(
        self, samples: Sequence[Sample], outputs: Outputs, data: Data, context: ScoringContext
    ) -> ScoreResult:
        """What the engine calls, with the adapter's answers keyed by request id. Protocols
        that score text (most) implement :meth:`score`; those that read more of an answer
        (choice scores, masks) override this."""
        return self.score(samples, {rid: out.text for rid, out in outputs.items()}, data, context)

    def score(
        self, samples: Sequence[Sample], texts: Mapping[str, str], data: Data, context: ScoringContext
    ) -> ScoreResult:
        """Metrics from ground truth and raw output texts keyed by request id. Never calls a
        model."""
        raise NotImplementedError(f"protocol {self.name} scores whole outputs (score_outputs), not texts")


ProtocolClass = type[TaskProtocol[Any]]

# Built-in protocols live in the task families: evalkit.tasks.<family>.<protocol name>.
PROTOCOLS: Registry[ProtocolClass] = Registry(
    "protocol", "evalkit.tasks", "evalkit.tasks", depth=2, name_is_module=True
)


def register_protocol(name: str) -> Callable[[ProtocolClass], ProtocolClass]:
    def decorator(cls: ProtocolClass) -> ProtocolClass:
        cls.name = name
        return PROTOCOLS.register(name)(cls)

    return decorator
