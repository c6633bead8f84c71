"""Errors users see. Each names the file and the record, so bad input is fixable."""

from __future__ import annotations

from pathlib import Path


class EvalkitError(Exception):
    """Base class: the CLI prints these as one clear line and exits non-zero."""


class DataError(EvalkitError):
    """A data file is missing, malformed, or holds a record that cannot be used."""

    def __init__(self, path: str | Path, message: str, record: str | int | None = None) -> None:
        self.path = str(path)
        self.record = record
        self.message = message
        where = f"{self.path}" + (f", record {record}" if record is not None else "")
        super().__init__(f"{where}: {message}")


class ConfigError(EvalkitError):
    """A task card, adapter argument or CLI option that does not make sense."""


class PredictionsError(DataError):
    """A predictions file that does not fit the task's samples."""
