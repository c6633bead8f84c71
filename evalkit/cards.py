"""Task cards: the YAML schema, ``include:`` inheritance, and where cards are found.

A card (``tasks/<family>/<name>.yaml``) names

* ``reader`` — the data format (a reader module of its family) and its ``data`` keys, each
  with a default path under ``$EVALKIT_DATA`` that ``--data KEY=PATH`` overrides;
* ``protocol`` — the benchmark family's protocol (request building and scoring) with
  ``protocol_args``, checked against the protocol's ``Args`` model when the task is built;
* ``prompt`` with ``<region>`` placeholders, and ``generation`` settings;
* ``variants`` — named overrides; ``default`` is evalkit's faithful protocol, ``reference``
  also reproduces the released scripts' operational accidents.

A card with ``tasks: [...]`` is a group. ``include: [_base.yaml, ...]`` (files of the same
folder) inherits: mappings merge key by key (the including card wins), anything else is
replaced. Files whose name starts with ``_`` are bases only, never tasks.

Cards come from the built-in families (``evalkit.tasks``), from ``evalkit.tasks`` entry
points (a function returning a folder of cards) and from ``--include`` folders; later
sources win.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import metadata, resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from evalkit.errors import ConfigError

BUILTIN_PACKAGE = "evalkit.tasks"


class KnownRevision(BaseModel):
    """A public release of a data file, recognised by its bytes (``evalkit data check``)."""

    model_config = ConfigDict(extra="forbid")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    name: str  # where it comes from, e.g. "RUCAIBox/POPE output/coco at 2023-10-09"
    records: int | None = None  # what this revision holds, counted as the key's ``count`` says


# How `evalkit data check` counts a data key's records: JSON lines, a JSON list's items, a
# JSON object's keys, a COCO-style object's images / annotations, or a folder's files
# matching a glob (``files:*.jpg``, ``files:*/*_gtFine_labelTrainIds.png``).
RECORD_COUNTS = ("lines", "list", "keys", "images", "annotations")


class DataFacts(BaseModel):
    """What `evalkit data check` knows about a data key. Built-in cards keep these in their
    family's ``data.yaml`` (so that their card hashes stay as they are); a card of one's own
    may set them inline on its data keys."""

    model_config = ConfigDict(extra="forbid")
    url: str = ""  # the official download page (shown, never fetched)
    note: str = ""  # what to know before downloading (e.g. which image folders it needs)
    count: str | None = None  # one of RECORD_COUNTS, or files:<glob>
    records: int | None = None  # the expected count, whatever the revision
    revisions: list[KnownRevision] = []

    @field_validator("count")
    @classmethod
    def _known_count(cls, value: str | None) -> str | None:
        if value is not None and value not in RECORD_COUNTS and not value.startswith("files:"):
            raise ValueError(f"count must be one of {', '.join(RECORD_COUNTS)} or files:<glob>")
        return value


class DataKey(DataFacts):
    default: str | None = None
    description: str = ""
    needed_for: list[str] = ["run", "score"]  # commands that cannot work without it
    # Passed to those commands when there, but its absence is no error: the protocol reports
    # what it could not compute without it (GCG's mask recall without its phrase model).
    optional: bool = False
    # Where to get it (a download page, the script that makes it): shown when it is missing.
    # Built-in families keep theirs in data_sources.yaml beside the cards (see SOURCES_FILE).
    source: str = ""


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = ""
    generation: dict[str, Any] = {}
    protocol_args: dict[str, Any] = {}
    prompt: str | None = None
    # The region kind shown to the model (evalkit/shown_regions.py); None: the card's.
    region_kind: str | None = None
    region_method: str | None = None
    region_seed: int | None = None


class TaskCard(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    version: int = 1
    description: str = ""
    paper: str = ""
    include: list[str] = []  # base cards of the same folder, merged under this one
    # sha256 of this card's text before it inherited through include: (evalkit 0.1): rows a
    # resumed run stored under those hashes are reused, so the move recomputes nothing.
    previous_hashes: list[str] = []
    tasks: list[str] = []  # non-empty for a group card
    reader: str = ""
    reader_args: dict[str, Any] = {}
    data: dict[str, DataKey] = {}
    protocol: str = ""
    protocol_args: dict[str, Any] = {}
    prompt: str = ""
    generation: dict[str, Any] = {}
    # The region kind shown to the model when it is not the data's (box, points, scribble,
    # mask; evalkit/shown_regions.py), how it is made and from which seed. None: as given.
    region_kind: str | None = None
    region_method: str | None = None
    region_seed: int | None = None
    variants: dict[str, Variant] = {}
    metrics: list[str] = []  # headline metrics, in the papers' column order

    @property
    def is_group(self) -> bool:
        return bool(self.tasks)


@dataclass(frozen=True)
class CardFile:
    """One card file as found: its display path, text and folder (for includes)."""

    name: str
    source: str
    text: str
    folder: Traversable
    family: str | None = None  # the built-in family folder, None for --include / plugins


@dataclass(frozen=True)
class LoadedCard:
    card: TaskCard
    source: str
    # sha256 of the card's text; with include:, of its text followed by each included file's
    # (depth first), so that a change to a base is a change to every card built on it.
    card_hash: str
    family: str | None
    # data key -> where to get the file (the card's ``source``, else its family's
    # data_sources.yaml): for the error that names a missing file.
    data_sources: Mapping[str, str] = field(default_factory=dict)


# A family's board (evalkit/report/boards.py reads it) and what it knows about its data files
# (evalkit/data/facts.py reads it): neither is a card.
BOARD_FILE = "board.yaml"
DATA_FILE = "data.yaml"  # a family's data facts (evalkit data check)
# A family's download pages, ``{task: {data key: where to get it}}``. Beside the cards and
# not in them, so that adding a page never changes a card hash (nor the store keys built on
# it): a download page changes no number.
SOURCES_FILE = "data_sources.yaml"
NOT_CARDS = frozenset({BOARD_FILE, DATA_FILE, SOURCES_FILE})


def _builtin_files() -> Iterator[CardFile]:
    root = resources.files(BUILTIN_PACKAGE)
    for family in sorted(root.iterdir(), key=lambda e: e.name):
        if not family.is_dir() or family.name.startswith(("_", ".")):
            continue
        for entry in sorted(family.iterdir(), key=lambda e: e.name):
            if (
                entry.name.endswith(".yaml")
                and not entry.name.startswith("_")
                and entry.name not in NOT_CARDS
            ):
                yield CardFile(
                    entry.name[:-5],
                    f"tasks/{family.name}/{entry.name}",
                    entry.read_text("utf-8"),
                    family,
                    family.name,
                )


def _folder_files(folder: Path) -> Iterator[CardFile]:
    for path in sorted(folder.glob("*.yaml")):
        if not path.name.startswith("_") and path.name not in NOT_CARDS:
            yield CardFile(path.stem, str(path), path.read_text("utf-8"), folder)


def _load_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: malformed YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a task card is a YAML mapping")
    return raw


def _data_sources(folder: Traversable, card_source: str) -> dict[str, dict[str, str]]:
    """The folder's :data:`SOURCES_FILE` (``{}`` without one)."""
    entry = folder.joinpath(SOURCES_FILE)
    if not entry.is_file():
        return {}
    where = f"{card_source.rsplit('/', 1)[0]}/{SOURCES_FILE}" if "/" in card_source else SOURCES_FILE
    try:
        raw = yaml.safe_load(entry.read_text("utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: malformed YAML: {exc}") from exc
    if not isinstance(raw, dict) or not all(
        isinstance(keys, dict) and all(isinstance(v, str) for v in keys.values()) for keys in raw.values()
    ):
        raise ConfigError(f"{where}: expected {{task: {{data key: text}}}}")
    return {str(task): {str(k): v for k, v in keys.items()} for task, keys in raw.items()}


def merge_card(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: mappings merge recursively, everything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_card(out[key], value)
        else:
            out[key] = value
    return out


def _resolve(
    raw: dict[str, Any], folder: Traversable, source: str, seen: tuple[str, ...]
) -> tuple[dict[str, Any], list[str]]:
    """The card with its includes merged in, and the included files' texts (depth first)."""
    includes = raw.get("include", [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ConfigError(f"{source}: include: expects a file name or a list of file names")
    merged: dict[str, Any] = {}
    texts: list[str] = []
    for name in includes:
        if "/" in name or "\\" in name or not name.endswith(".yaml"):
            raise ConfigError(f"{source}: include: {name!r} must be a .yaml file of the same folder")
        if name in seen:
            raise ConfigError(f"{source}: include: cycle through {' -> '.join([*seen, name])}")
        entry = folder.joinpath(name)
        if not entry.is_file():
            raise ConfigError(f"{source}: include: no file {name} beside the card")
        base_source = f"{source.rsplit('/', 1)[0]}/{name}" if "/" in source else name
        text = entry.read_text("utf-8")
        base, base_texts = _resolve(_load_yaml(text, base_source), folder, base_source, (*seen, name))
        merged = merge_card(merged, base)
        texts += [text, *base_texts]
    own = {k: v for k, v in raw.items() if k != "include"}
    out = merge_card(merged, own)
    if includes:
        out["include"] = list(includes)
    return out, texts


def parse_card(text: str, source: str, folder: Traversable | None = None) -> tuple[TaskCard, str]:
    """The validated card and its hash (see :class:`LoadedCard`)."""
    raw = _load_yaml(text, source)
    if raw.get("include") and folder is None:
        raise ConfigError(f"{source}: include: needs the card's folder")
    resolved, texts = _resolve(raw, folder, source, ()) if folder is not None else (raw, [])
    try:
        card = TaskCard.model_validate(resolved)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid task card: {exc}") from exc
    digest = hashlib.sha256(text.encode())
    for included in texts:
        digest.update(b"\n# include\n" + included.encode())
    return card, digest.hexdigest()


class CardCatalog:
    """Every task card visible to one command: built-ins, plugins, then ``include`` folders."""

    def __init__(self, include: Sequence[str | Path] = ()):
        self.include = [Path(p) for p in include]
        for folder in self.include:
            if not folder.is_dir():
                raise ConfigError(f"--include {folder}: not a directory of task cards")

    @cached_property
    def files(self) -> dict[str, CardFile]:
        found: dict[str, CardFile] = {}
        for card in _builtin_files():
            if card.name in found:
                raise ConfigError(f"{card.source}: task {card.name!r} is also {found[card.name].source}")
            found[card.name] = card
        for ep in metadata.entry_points(group=BUILTIN_PACKAGE):
            target = ep.load()  # a function returning a folder of cards
            for card in _folder_files(Path(target() if callable(target) else target)):
                found[card.name] = card
        for folder in self.include:
            for card in _folder_files(folder):
                found[card.name] = card
        return found

    def names(self) -> list[str]:
        return sorted(self.files)

    def load(self, name: str) -> LoadedCard:
        if name not in self.files:
            close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise ConfigError(
                f"unknown task {name!r}{hint} (known: {', '.join(self.names())}; `evalkit tasks` lists them)"
            )
        entry = self.files[name]
        card, card_hash = parse_card(entry.text, entry.source, entry.folder)
        if card.name != name:
            raise ConfigError(f"{entry.source}: card name {card.name!r} does not match its file name")
        listed = _data_sources(entry.folder, entry.source).get(name, {})
        sources = {k: spec.source or listed.get(k, "") for k, spec in card.data.items()}
        return LoadedCard(
            card, entry.source, card_hash, entry.family, {k: v for k, v in sources.items() if v}
        )

    def expand(self, name: str) -> list[str]:
        """A task name, or a group's member names (recursively), in the group's order."""
        card = self.load(name).card
        if not card.is_group:
            return [name]
        out: list[str] = []
        for member in card.tasks:
            out.extend(self.expand(member))
        return out
