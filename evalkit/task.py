"""A task: a card (:mod:`evalkit.cards`) bound to its reader and protocol under one variant.

``get_task("lvis_cls")`` finds the card, validates its protocol arguments (every variant's)
against the protocol's ``Args`` and gives the :class:`Task` the engine runs. A card with
``tasks: [...]`` is a group: running it runs each member (:meth:`CardCatalog.expand`).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.cards import CardCatalog, LoadedCard, TaskCard, Variant
from evalkit.errors import ConfigError, DataError
from evalkit.protocol import PROTOCOLS, Data, ScoreResult, ScoringContext, TaskProtocol, validate_args
from evalkit.readers import READERS, ReadResult
from evalkit.records import Prediction, Request, Sample
from evalkit.shown_regions import RegionShown, show_regions

DEFAULT_VARIANT = "default"
# Commands whose data files are checked up front -> the ``needed_for`` entry they go by
# (``samples`` reads what scoring reads).
CHECKED_COMMANDS = {"run": "run", "score": "score", "samples": "score"}
Context = ScoringContext | None  # None: no judge options given (the environment's defaults)


def data_root() -> Path:
    return Path(os.environ.get("EVALKIT_DATA", Path.home() / "evalkit_data")).expanduser()


@dataclass(frozen=True)
class MissingData:
    """A data file a command needs that is not where the task looks for it."""

    key: str
    path: Path | None  # None: the card has no default and none was given
    description: str  # what the file is (the card's)
    source: str  # where to get it (data_sources.yaml / the card's ``source``)

    def describe(self) -> str:
        where = f"{self.key}={self.path}: file not found" if self.path is not None else f"{self.key}: no path"
        what = "; ".join(x for x in (self.description.strip(), self.source and f"get it: {self.source}") if x)
        return where + (f" ({what})" if what else "")


class MissingDataError(ConfigError):
    """Every missing data file of a task at once: what each is, where to get it and how to
    point evalkit at it. One line, like every evalkit error."""

    def __init__(self, task: str, missing: Sequence[MissingData], root: Path):
        self.task = task
        self.missing = list(missing)
        n = len(self.missing)
        listed = " | ".join(m.describe() for m in self.missing)
        keys = " ".join(f"--data {m.key}=PATH" for m in self.missing)
        super().__init__(
            f"task {task}: {n} data file{'s' if n != 1 else ''} missing: {listed}. "
            f"Give {'each' if n != 1 else 'it'} with {keys}, or set EVALKIT_DATA (now {root}) to the "
            f"folder the defaults are under; `evalkit data check {task}` lists what the task reads"
        )


def _exists(path: Path) -> bool:
    """A path exists (several image folders joined with ``os.pathsep``: each of them)."""
    parts = str(path).split(os.pathsep) if os.pathsep in str(path) else [str(path)]
    return all(Path(part).exists() for part in parts)


def _did_you_mean(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else ""


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
        self.data_sources: Mapping[str, str] = loaded.data_sources

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def store_hashes(self) -> list[str]:
        """The card hash and those it had before (rows stored under any are reused)."""
        return [self.card_hash, *(h for h in self.card.previous_hashes if h != self.card_hash)]

    def resolve_data(self, overrides: Mapping[str, str], command: str = "run") -> dict[str, Path | None]:
        """Each data key's path (``--data`` over the card's default under ``$EVALKIT_DATA``).

        For ``run``, ``score`` and ``samples`` every file the command needs must exist:
        one error lists all that do not, with where each comes from, before anything is read
        or loaded."""
        unknown = set(overrides) - set(self.card.data)
        if unknown:
            raise ConfigError(
                f"task {self.name} has no data key(s) {sorted(unknown)}; "
                f"its keys are {sorted(self.card.data)}"
                + _did_you_mean(sorted(unknown)[0], list(self.card.data))
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
        if command in CHECKED_COMMANDS:
            missing = self.missing_data(out, command)
            if missing:
                raise MissingDataError(self.name, missing, root)
        if command == "score":
            # Scoring never opens images: drop keys only `run` needs so readers don't look.
            out = {k: (v if "score" in self.card.data[k].needed_for else None) for k, v in out.items()}
        return out

    def missing_data(self, data: Mapping[str, Path | None], command: str = "run") -> list[MissingData]:
        """The data files ``command`` needs (the card's ``needed_for``) that are not there."""
        needs = CHECKED_COMMANDS.get(command, command)
        out = []
        for key, spec in self.card.data.items():
            path = data.get(key)
            if needs not in spec.needed_for or spec.optional or (path is not None and _exists(path)):
                continue
            out.append(MissingData(key, path, spec.description, self.data_sources.get(key, "")))
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
