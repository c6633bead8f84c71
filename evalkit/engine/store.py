"""The prediction store: one SQLite file (WAL) per run directory, one row per prediction.

Rows are keyed by :func:`prediction_key` — a hash of everything that determines an answer
(task card hash, request id, request payload, adapter fingerprint). A re-run computes the
same keys, finds the finished rows and asks the adapter only for the rest. Each row is
committed as soon as the adapter yields it, so SIGKILL loses only requests in flight;
``INSERT OR IGNORE`` on the primary key means a row can never be stored twice.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.hashing import sha256_text
from evalkit.records import Prediction, Request

SCHEMA_VERSION = "1"


def prediction_key(card_hash: str, request: Request, adapter_fingerprint: dict[str, Any]) -> str:
    parts = {
        "card": card_hash,
        "request": request.id,
        "payload": request.payload_digest(),
        "adapter": adapter_fingerprint,
    }
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return sha256_text(text)


class StoreError(EvalkitError):
    pass


class PredictionStore:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a killed process (not a power cut) and keeps
            # per-row commits cheap.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(
                """
                CREATE TABLE IF NOT EXISTS predictions (
                    key TEXT PRIMARY KEY,
                    request_id TEXT NOT NULL,
                    record TEXT NOT NULL,
                    created REAL NOT NULL
                );
                CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
                """
            )
            self._db.execute("INSERT OR IGNORE INTO meta (k, v) VALUES ('schema', ?)", (SCHEMA_VERSION,))
            (found,) = self._db.execute("SELECT v FROM meta WHERE k = 'schema'").fetchone()
            check = self._db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{path}: not a usable prediction store ({exc}); move it away to start afresh"
            ) from exc
        if found != SCHEMA_VERSION:
            raise StoreError(f"{path}: store schema {found}, this evalkit writes {SCHEMA_VERSION}")
        if check != "ok":
            raise StoreError(f"{path}: store failed its integrity check: {check}")

    def put(self, key: str, prediction: Prediction) -> bool:
        """Store one prediction; False when that key was already there (never duplicated)."""
        record = json.dumps(prediction.to_json(), ensure_ascii=False)
        cur = self._db.execute(
            "INSERT OR IGNORE INTO predictions (key, request_id, record, created) VALUES (?, ?, ?, ?)",
            (key, prediction.request_id, record, time.time()),
        )
        return cur.rowcount == 1

    def get_many(self, keys: Iterable[str]) -> dict[str, Prediction]:
        rows = _select_keys(self._db, "key, record", keys)
        return {key: Prediction.from_json(json.loads(record)) for key, record in rows}

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])

    def rows(self) -> Iterator[tuple[str, Prediction]]:
        for key, record in self._db.execute("SELECT key, record FROM predictions ORDER BY rowid"):
            yield key, Prediction.from_json(json.loads(record))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> PredictionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _select_keys(db: sqlite3.Connection, columns: str, keys: Iterable[str]) -> Iterator[tuple[Any, ...]]:
    """``SELECT columns`` of the rows with these keys, in chunks that keep under SQLite's
    limit on bound parameters."""
    wanted = list(keys)
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ",".join("?" * len(chunk))
        yield from db.execute(f"SELECT {columns} FROM predictions WHERE key IN ({marks})", chunk)


def _readonly_keys(path: Path, keys: set[str]) -> set[str]:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return set()
    try:
        return {key for (key,) in _select_keys(db, "key", keys)}
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return set()  # another rank is creating this store right now: nothing in it yet
        raise StoreError(f"{path}: cannot read prediction store ({exc})") from exc
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not a usable prediction store ({exc}); move it away") from exc
    finally:
        db.close()


def merge_stores(folder: Path, main_name: str, keys: set[str], into_main: bool) -> set[str]:
    """Keys already answered in any store file of a run folder (``store.sqlite`` and the
    ``store.rank<k>.sqlite`` files of distributed runs, whatever their world size).

    With ``into_main`` (a single process, or rank 0 once every rank is done) rows found only
    in rank files are copied into the main store and the rank files removed, so the run
    folder ends with one store and no duplicate rows.
    """
    main = folder / main_name
    rank_files = sorted(folder.glob("store.rank*.sqlite"))
    found = _readonly_keys(main, keys) if main.exists() else set()
    if not rank_files:
        return found
    for rank_file in rank_files:
        found |= _readonly_keys(rank_file, keys)
    if not into_main:
        return found
    with PredictionStore(main) as store:
        for rank_file in rank_files:
            with PredictionStore(rank_file) as other:
                rows = list(other.rows())
            for key, prediction in rows:
                store.put(key, prediction)  # each put commits: safe to drop the rank file now
            for suffix in ("", "-wal", "-shm"):
                Path(f"{rank_file}{suffix}").unlink(missing_ok=True)
    return found


def adopt_previous(path: Path, current: dict[str, str], previous: dict[str, list[str]]) -> int:
    """Rows stored under an earlier key of the same request (the card's ``previous_hashes``:
    the same card before it was rewritten with ``include:``) copied under its current key.

    ``current`` maps request id -> current key, ``previous`` request id -> earlier keys.
    Returns how many rows were adopted; a resumed run then finds them as done.
    """
    wanted = {old: rid for rid, olds in previous.items() for old in olds}
    if not wanted or not path.exists():
        return 0
    with PredictionStore(path) as store:
        have = store.get_many(current.values())
        adopted = 0
        for old, prediction in store.get_many(wanted).items():
            key = current[wanted[old]]
            if key not in have and store.put(key, prediction):
                have[key] = prediction
                adopted += 1
    return adopted
