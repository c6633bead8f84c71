"""Tasks: a YAML card (what to read, what to ask, how to score) bound to a scoring protocol.

A card (``evalkit/tasks/<name>.yaml``) names

* ``reader`` — the data format (a module of :mod:`evalkit.data`) and its ``data`` keys,
  each with a default path under ``$EVALKIT_DATA`` that ``--data KEY=PATH`` overrides;
* ``protocol`` — the benchmark family (a module of :mod:`evalkit.protocols`) that turns
  samples into requests and predictions into metrics, with ``protocol_args``;
* ``prompt`` with ``<region>`` placeholders, and ``generation`` settings;
* ``variants`` — named overrides; ``default`` is evalkit's faithful protocol, ``reference``
  also reproduces the released scripts' operational accidents.

A card with ``tasks: [...]`` is a group: running it runs each member.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from evalkit.data import READERS, ReadResult
from evalkit.errors import ConfigError, DataError
from evalkit.records import Request, Sample
from evalkit.registry import Registry

DEFAULT_VARIANT = "default"


class DataKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default: str | None = None
    description: str = ""
    needed_for: list[str] = ["run", "score"]  # commands that cannot work without it


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = ""
    generation: dict[str, Any] = {}
    protocol_args: dict[str, Any] = {}
    prompt: str | None = None


class TaskCard(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    version: int = 1
    description: str = ""
    paper: str = ""
    tasks: list[str] = []  # non-empty for a group card
    reader: str = ""
    reader_args: dict[str, Any] = {}
    data: dict[str, DataKey] = {}
    protocol: str = ""
    protocol_args: dict[str, Any] = {}
    prompt: str = ""
    generation: dict[str, Any] = {}
    variants: dict[str, Variant] = {}
    metrics: list[str] = []  # headline metrics, in the papers' column order

    @property
    def is_group(self) -> bool:
        return bool(self.tasks)


@dataclass
class ScoreResult:
    metrics: dict[str, float]
    per_sample: list[dict[str, Any]] = field(default_factory=list)
    deviations: list[str] = field(default_factory=list)  # departures from the released code
    counts: dict[str, int] = field(default_factory=dict)  # e.g. judge_failures
    extra: dict[str, Any] = field(default_factory=dict)


class TaskProtocol(ABC):
    """One benchmark family's request building and scoring. Subclasses register by name."""

    name: ClassVar[str]

    def __init__(self, card: TaskCard, variant: str, args: Mapping[str, Any]):
        self.card = card
        self.variant = variant
        self.args = dict(args)

    def prompt_for(self, sample: Sample, prompt: str) -> str:
        """The card's prompt for one sample (protocols fill per-sample fields here)."""
        return prompt

    def generation_for(self, sample: Sample, generation: dict[str, Any]) -> dict[str, Any]:
        """Generation settings for one sample (e.g. MDVP's per-phase max_new_tokens)."""
        return dict(generation)

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
            )
            for s in samples
        ]

    @abstractmethod
    def score(
        self, samples: Sequence[Sample], texts: Mapping[str, str], data: Mapping[str, Path | None]
    ) -> ScoreResult:
        """Metrics from ground truth and raw outputs keyed by request id. Never calls a model."""


PROTOCOLS: Registry[type[TaskProtocol]] = Registry("protocol", "evalkit.protocols")


def register_protocol(name: str) -> Callable[[type[TaskProtocol]], type[TaskProtocol]]:
    def decorator(cls: type[TaskProtocol]) -> type[TaskProtocol]:
        cls.name = name
        return PROTOCOLS.register(name)(cls)

    return decorator


def data_root() -> Path:
    return Path(os.environ.get("EVALKIT_DATA", Path.home() / "evalkit_data")).expanduser()


class Task:
    """A card bound to its reader and protocol under one variant."""

    def __init__(self, card: TaskCard, source: str, text: str, variant: str = DEFAULT_VARIANT):
        if card.is_group:
            raise ConfigError(f"{card.name} is a group of tasks; run its members")
        if variant != DEFAULT_VARIANT and variant not in card.variants:
            known = ", ".join([DEFAULT_VARIANT, *card.variants])
            raise ConfigError(f"task {card.name} has no protocol variant {variant!r} (known: {known})")
        self.card = card
        self.source = source
        self.card_hash = hashlib.sha256(text.encode()).hexdigest()
        self.variant = variant
        chosen = card.variants.get(variant, Variant())
        self.prompt = chosen.prompt if chosen.prompt is not None else card.prompt
        self.generation = {**card.generation, **chosen.generation}
        protocol_args = {**card.protocol_args, **chosen.protocol_args}
        self.protocol = PROTOCOLS.get(card.protocol)(card, variant, protocol_args)

    @property
    def name(self) -> str:
        return self.card.name

    def resolve_data(self, overrides: Mapping[str, str], command: str = "run") -> dict[str, Path | None]:
        unknown = set(overrides) - set(self.card.data)
        if unknown:
            raise ConfigError(
                f"task {self.name} has no data key(s) {sorted(unknown)}; "
                f"its keys are {sorted(self.card.data)}"
            )
        root = data_root()
        out: dict[str, Path | None] = {}
        for key, spec in self.card.data.items():
            raw = overrides.get(key, spec.default)
            if raw is None:
                out[key] = None
                continue
            expanded = os.path.expandvars(raw.replace("${EVALKIT_DATA}", str(root)))
            out[key] = Path(expanded).expanduser()
        for key, spec in self.card.data.items():
            if command in spec.needed_for and out[key] is None:
                raise ConfigError(f"task {self.name} needs --data {key}=PATH for `{command}`")
        if command == "score":
            # Scoring never opens images: drop keys only `run` needs so readers don't look.
            out = {k: (v if "score" in self.card.data[k].needed_for else None) for k, v in out.items()}
        return out

    def load_samples(self, data: Mapping[str, Path | None], on_error: str = "fail") -> ReadResult:
        options = {**self.card.reader_args, "on_error": on_error}
        result = READERS.get(self.card.reader)(data, options)
        _check_unique_ids(result)
        return result

    def build_requests(
        self, samples: Sequence[Sample], generation_overrides: Mapping[str, Any] | None = None
    ) -> list[Request]:
        generation = {**self.generation, **(generation_overrides or {})}
        return self.protocol.build_requests(samples, self.prompt, generation)

    def score(
        self, samples: Sequence[Sample], texts: Mapping[str, str], data: Mapping[str, Path | None]
    ) -> ScoreResult:
        return self.protocol.score(samples, texts, data)


def _check_unique_ids(result: ReadResult) -> None:
    """Ids key the store and the predictions files: two samples may never share one."""
    seen: set[str] = set()
    for s in result.samples:
        if s.id in seen:
            where = result.files[0] if result.files else "<data>"
            raise DataError(where, f"duplicate sample id {s.id!r} (ids must be unique)", s.id)
        seen.add(s.id)


# ---------------------------------------------------------------------- card registry
_BUILTIN_CARDS = "evalkit.tasks"
_extra_card_dirs: list[Path] = []


def include_cards(path: str | Path) -> None:
    """Make the cards of a folder visible (``--include PATH``); later folders win."""
    p = Path(path)
    if not p.is_dir():
        raise ConfigError(f"--include {p}: not a directory of task cards")
    _extra_card_dirs.append(p)


def _card_sources() -> dict[str, tuple[str, str]]:
    """name -> (source description, YAML text), from built-ins, entry points, --include."""
    found: dict[str, tuple[str, str]] = {}
    for entry in sorted(resources.files(_BUILTIN_CARDS).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            found[entry.name[:-5]] = (f"evalkit/tasks/{entry.name}", entry.read_text("utf-8"))
    from importlib import metadata

    for ep in metadata.entry_points(group="evalkit.tasks"):
        target = ep.load()  # a function returning a folder of cards
        folder = Path(target() if callable(target) else target)
        for card_path in sorted(folder.glob("*.yaml")):
            found[card_path.stem] = (str(card_path), card_path.read_text("utf-8"))
    for folder in _extra_card_dirs:
        for card_path in sorted(folder.glob("*.yaml")):
            found[card_path.stem] = (str(card_path), card_path.read_text("utf-8"))
    return found


def parse_card(text: str, source: str) -> TaskCard:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: malformed YAML: {exc}") from exc
    try:
        return TaskCard.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid task card: {exc}") from exc


def task_names() -> list[str]:
    return sorted(_card_sources())


def load_card(name: str) -> tuple[TaskCard, str, str]:
    sources = _card_sources()
    if name not in sources:
        raise ConfigError(f"unknown task {name!r} (known: {', '.join(sorted(sources))})")
    source, text = sources[name]
    card = parse_card(text, source)
    if card.name != name:
        raise ConfigError(f"{source}: card name {card.name!r} does not match its file name")
    return card, source, text


def get_task(name: str, variant: str = DEFAULT_VARIANT) -> Task:
    card, source, text = load_card(name)
    return Task(card, source, text, variant)


def expand_group(name: str) -> list[str]:
    """A task name, or a group's member names (recursively), in the group's order."""
    card, _, _ = load_card(name)
    if not card.is_group:
        return [name]
    out: list[str] = []
    for member in card.tasks:
        out.extend(expand_group(member))
    return out
