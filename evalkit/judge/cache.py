"""SQLite cache of chat-completion responses, so re-scoring and re-running cost nothing.

The key is the SHA-256 of canonical JSON holding the endpoint, the model, the sampling
parameters and the exact messages, with every inline image replaced by the SHA-256 of its
bytes (the key stays small and two identical renderings share an entry). The API key is
never part of it. Only successful responses are stored: a failure is retried next time.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from evalkit.hashing import sha256_bytes, sha256_text

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def _hash_images(value: Any) -> Any:
    """Messages with ``data:`` image URLs replaced by the hash of the decoded bytes."""
    if isinstance(value, dict):
        out = {k: _hash_images(v) for k, v in value.items()}
        url = out.get("url")
        if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
            header, payload = url.split(";base64,", 1)
            digest = sha256_bytes(base64.b64decode(payload))
            out["url"] = f"{header};sha256,{digest}"
        return out
    if isinstance(value, list):
        return [_hash_images(v) for v in value]
    return value


def cache_key(endpoint: str, model: str, params: dict[str, Any], messages: list[dict[str, Any]]) -> str:
    payload = {
        "endpoint": endpoint.rstrip("/"),
        "model": model,
        "params": params,
        "messages": _hash_images(messages),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return sha256_text(text)


class ResponseCache:
    """Used from one thread (the one consuming results); WAL so readers never block."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path))
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._db.commit()

    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT text FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, model: str, text: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO responses (key, model, text, created) VALUES (?, ?, ?, ?)",
            (key, model, text, time.time()),
        )
        self._db.commit()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        self._db.close()
