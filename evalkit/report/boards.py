"""The paper-style boards: which (task, metric) columns each shows, in the papers' order.

Each benchmark family declares its board beside its cards, in ``tasks/<family>/board.yaml``
(``name``, ``title``, ``order`` among the boards, ``description``, ``columns``); a column's
header is its ``header``, or its ``prefix`` followed by the metric's own header
(:mod:`evalkit.metrics.spec`), which also says whether the best value is bolded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from evalkit.cards import BOARD_FILE, BUILTIN_PACKAGE
from evalkit.errors import ConfigError
from evalkit.metrics.spec import metric_spec


@dataclass(frozen=True)
class Column:
    task: str
    metric: str
    header: str
    split: str | None = None  # a baseline entry's split; None = the task's default split
    input: str | None = None  # only entries given this region kind (tables split by input)

    @property
    def bold_best(self) -> bool:
        return metric_spec(self.metric).directed


@dataclass(frozen=True)
class Board:
    name: str
    title: str
    columns: tuple[Column, ...]
    description: str = ""
    # True when the region kind is part of the columns (MDVP box/point, LVIS choice by
    # prompt kind): a model's rows then merge across inputs.
    inputs_in_columns: bool = False
    order: int = 0

    def tasks(self) -> set[str]:
        return {c.task for c in self.columns}


class ColumnSpec(BaseModel):
    """One ``columns:`` entry: a task's ``metric`` (with its ``header``), or several
    ``metrics`` headed ``prefix`` + each metric's header."""

    model_config = ConfigDict(extra="forbid")
    task: str
    metric: str | None = None
    metrics: list[str] = []
    header: str | None = None
    prefix: str = ""
    split: str | None = None
    input: str | None = None

    @model_validator(mode="after")
    def _one_form(self) -> ColumnSpec:
        if (self.metric is None) == (not self.metrics):
            raise ValueError("give either metric (one column) or metrics (one column each)")
        if self.header is not None and self.metrics:
            raise ValueError("header names one column: use metric, or prefix with metrics")
        return self

    def columns(self) -> list[Column]:
        names = [self.metric] if self.metric is not None else self.metrics
        return [
            Column(
                self.task,
                m,
                self.header or f"{self.prefix} {metric_spec(m).header}".strip(),
                self.split,
                self.input,
            )
            for m in names
        ]


class BoardFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    title: str
    order: int
    description: str = ""
    inputs_in_columns: bool = False
    columns: list[ColumnSpec]

    def board(self) -> Board:
        cols = tuple(c for spec in self.columns for c in spec.columns())
        return Board(self.name, self.title, cols, self.description, self.inputs_in_columns, self.order)


def parse_board(text: str, source: str) -> Board:
    try:
        return BoardFile.model_validate(yaml.safe_load(text)).board()
    except (yaml.YAMLError, ValidationError) as exc:
        first = str(exc).strip().splitlines()
        raise ConfigError(f"{source}: not a valid board: {' '.join(first[:3])}") from exc


def _builtin_board_files() -> Iterator[tuple[Traversable, str]]:
    root = resources.files(BUILTIN_PACKAGE)
    for family in sorted(root.iterdir(), key=lambda e: e.name):
        if family.is_dir() and (family / BOARD_FILE).is_file():
            yield family / BOARD_FILE, f"tasks/{family.name}/{BOARD_FILE}"


def load_boards(folders: Sequence[Path] = ()) -> tuple[Board, ...]:
    """Every family's board, by ``order``: the built-ins, then a ``board.yaml`` in each of
    ``folders`` (a user's task folder; it replaces a built-in board of the same name)."""
    boards: dict[str, Board] = {}
    for file, source in _builtin_board_files():
        board = parse_board(file.read_text("utf-8"), source)
        if board.name in boards:
            raise ConfigError(f"{source}: board {board.name!r} is declared twice")
        boards[board.name] = board
    for folder in folders:
        if (folder / BOARD_FILE).is_file():
            board = parse_board((folder / BOARD_FILE).read_text("utf-8"), str(folder / BOARD_FILE))
            boards[board.name] = board
    return tuple(sorted(boards.values(), key=lambda b: (b.order, b.name)))


@cache
def builtin_boards() -> tuple[Board, ...]:
    return load_boards()
