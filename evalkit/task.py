"""A task: a card (:mod:`evalkit.cards`) bound to its reader and protocol under one variant.

``get_task("lvis_cls")`` finds the card, validates its protocol arguments (every variant's)
against the protocol's ``Args`` and gives the :class:`Task` the engine runs. A card with
``tasks: [...]`` is a group: running it runs each member (:meth:`CardCatalog.expand`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evalkit.cards import CardCatalog, LoadedCard, TaskCard, Variant
from evalkit.errors import ConfigError, DataError
from evalkit.protocol import PROTOCOLS, Data, ScoreResult, ScoringContext, TaskProtocol, validate_args
from evalkit.readers import READERS, ReadResult
from evalkit.records import Prediction, Request, Sample
from evalkit.shown_regions import RegionShown, show_regions

DEFAULT_VARIANT = "default"
Context = ScoringContext | None  # None: no judge options given (the environment's defaults)


def data_root() -> Path:
    return Path(os.environ.get("EVALKIT_DATA", Path.home() / "evalkit_data")).expanduser()


def _protocol_for(loaded: LoadedCard, variant: str) -> TaskProtocol[Any]:
    """The card's protocol under ``variant``; every variant's args are checked, so a typo in
    one that is not being run is still caught when the card is loaded."""
    card = loaded.card
    cls = PROTOCOLS.get(card.protocol)
    chosen = None
    for name, v in [(DEFAULT_VARIANT, Variant()), *card.variants.items()]:
        where = f"{loaded.source}: protocol_args" + (f" (variant {name})" if name != DEFAULT_VARIANT else "")
        args = validate_args(cls.Args, {**card.protocol_args, **v.protocol_args}, where, card.protocol)
        if name == variant:
            chosen = args
    assert chosen is not None  # Task checked the variant exists
    return cls(card, variant, chosen)


def _shown_for(loaded: LoadedCard, variant: Variant) -> RegionShown | None:
    card = loaded.card
    kind = variant.region_kind or card.region_kind
    if kind is None:
        return None
    method = variant.region_method or card.region_method
    seed = variant.region_seed if variant.region_seed is not None else card.region_seed
    try:
        return RegionShown.parse(kind, method, seed)
    except ValueError as exc:
        raise ConfigError(f"{loaded.source}: {exc}") from exc


class Task:
    """A card bound to its reader and protocol under one variant."""

    def __init__(self, loaded: LoadedCard, variant: str = DEFAULT_VARIANT, region: RegionShown | None = None):
        """``region``: the region kind to show the model (``--region-kind``), over the card's."""
        card = loaded.card
        if card.is_group:
            raise ConfigError(f"{card.name} is a group of tasks; run its members")
        if variant != DEFAULT_VARIANT and variant not in card.variants:
            known = ", ".join([DEFAULT_VARIANT, *card.variants])
            raise ConfigError(f"task {card.name} has no protocol variant {variant!r} (known: {known})")
        self.card: TaskCard = card
        self.source = loaded.source
        self.card_hash = loaded.card_hash
        self.variant = variant
        chosen = card.variants.get(variant, Variant())
        self.prompt = chosen.prompt if chosen.prompt is not None else card.prompt
        self.generation = {**card.generation, **chosen.generation}
        self.protocol = _protocol_for(loaded, variant)
        self.shown = region if region is not None else _shown_for(loaded, chosen)

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def store_hashes(self) -> list[str]:
        """The card hash and those it had before (rows stored under any are reused)."""
        return [self.card_hash, *(h for h in self.card.previous_hashes if h != self.card_hash)]

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
        requests = self.protocol.build_requests(samples, self.prompt, generation)
        return requests if self.shown is None else show_regions(requests, self.shown)

    def score(
        self,
        samples: Sequence[Sample],
        outputs: Mapping[str, Prediction | str],
        data: Data,
        context: Context = None,
    ) -> ScoreResult:
        """Scores the answers keyed by request id (a bare text stands for a text answer)."""
        answers = {rid: o if isinstance(o, Prediction) else Prediction(rid, o) for rid, o in outputs.items()}
        return self.protocol.score_outputs(samples, answers, data, context or ScoringContext())


def _check_unique_ids(result: ReadResult) -> None:
    """Ids key the store and the predictions files: two samples may never share one."""
    seen: set[str] = set()
    for s in result.samples:
        if s.id in seen:
            where = result.files[0] if result.files else "<data>"
            raise DataError(where, f"duplicate sample id {s.id!r} (ids must be unique)", s.id)
        seen.add(s.id)


# ---------------------------------------------------------------------- conveniences
def get_task(
    name: str,
    variant: str = DEFAULT_VARIANT,
    catalog: CardCatalog | None = None,
    region: RegionShown | None = None,
) -> Task:
    return Task((catalog or CardCatalog()).load(name), variant, region)


def task_names(catalog: CardCatalog | None = None) -> list[str]:
    return (catalog or CardCatalog()).names()


def load_card(name: str, catalog: CardCatalog | None = None) -> tuple[TaskCard, str, str]:
    """(card, source, card hash) of one task."""
    loaded = (catalog or CardCatalog()).load(name)
    return loaded.card, loaded.source, loaded.card_hash


def expand_group(name: str, catalog: CardCatalog | None = None) -> list[str]:
    return (catalog or CardCatalog()).expand(name)
