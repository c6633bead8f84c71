"""The published numbers (``leaderboards/baselines.yaml``) that the boards show beside runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

import evalkit
from evalkit.errors import ConfigError, DataError

InputKind = Literal["mask", "box", "point", "free-form", "image"]
BASELINES_ENV = "EVALKIT_BASELINES"


class Paper(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str
    short: str
    seeds: list[str] = []


class Entry(BaseModel):
    """One model's row of one paper table on one task."""

    model_config = ConfigDict(extra="forbid")
    paper: str
    table: str
    model: str
    as_written: str
    input: InputKind
    task: str
    split: str | None = None
    metrics: dict[str, float]
    note: str = ""

    def source(self, papers: dict[str, Paper]) -> tuple[str, str]:
        return papers[self.paper].short, self.table


def format_sources(sources: list[tuple[str, str]]) -> str:
    """``[(Osprey, A1), (SPHINX-V, 6), (SPHINX-V, 10)]``
    -> ``Osprey Tab. A1; SPHINX-V Tab. 6, 10``."""
    by_paper: dict[str, list[str]] = {}
    for paper, table in sources:
        tables = by_paper.setdefault(paper, [])
        if table not in tables:
            tables.append(table)
    return "; ".join(f"{paper} Tab. {', '.join(tables)}" for paper, tables in by_paper.items())


class Baselines(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int
    papers: dict[str, Paper]
    entries: list[Entry]

    @model_validator(mode="after")
    def _papers_known(self) -> Baselines:
        for k, entry in enumerate(self.entries):
            if entry.paper not in self.papers:
                raise ValueError(f"entry {k} ({entry.model}): unknown paper {entry.paper!r}")
            if not entry.metrics:
                raise ValueError(f"entry {k} ({entry.model}): no metrics")
        return self


def default_path() -> Path | None:
    """``$EVALKIT_BASELINES``, else ``leaderboards/baselines.yaml`` of the evalkit checkout."""
    env = os.environ.get(BASELINES_ENV)
    if env:
        return Path(env)
    candidate = Path(evalkit.__file__).resolve().parent.parent / "leaderboards" / "baselines.yaml"
    return candidate if candidate.exists() else None


def load_baselines(path: Path | None) -> Baselines:
    if path is None:
        return Baselines(version=1, papers={}, entries=[])
    if not path.exists():
        raise ConfigError(f"{path}: baselines file not found")
    try:
        raw = yaml.safe_load(path.read_text("utf-8"))
    except yaml.YAMLError as exc:
        raise DataError(path, f"malformed YAML: {exc}") from exc
    try:
        return Baselines.model_validate(raw)
    except ValidationError as exc:
        raise DataError(path, f"not a baselines file: {exc}") from exc
