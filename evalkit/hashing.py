"""sha256, the one way evalkit hashes: of a text, of a file, of a path (file or folder).

Store keys, card hashes, adapter fingerprints and provenance all hold these values, so
they never change: a text is hashed as its UTF-8 bytes, a file as its bytes, a folder as
a listing of (relative name, size) — not its content, which may be a whole image set.

Hashing a large file takes a while (a 7B checkpoint shard, a 1 GB annotation file), so
:class:`FileHashCache` remembers digests by (resolved path, size, mtime): in memory for one
process, and optionally in a JSON file that outlives it.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from evalkit.files import atomic_write_text

CHUNK = 1 << 20  # bytes read at a time: large files are never held whole


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = CHUNK) -> str:
    """sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_listing(folder: Path) -> str:
    """``listing:`` + sha256 of a folder's (relative name, size) lines, in sorted order."""
    digest = hashlib.sha256()
    for child in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{child.relative_to(folder)}\0{child.stat().st_size}\n".encode())
    return "listing:" + digest.hexdigest()


class FileHashCache:
    """sha256 of files, remembered while a file keeps its resolved path, size and mtime.

    With ``store`` the digests are also kept in that JSON file (``{resolved path: {"size",
    "mtime", "sha256"}}``, the format evalkit 0.1 wrote for checkpoints), read on first use
    and written back by :meth:`save` when something new was hashed. A store that cannot be
    read or written only costs hashing again, so neither is an error.
    """

    def __init__(self, store: Path | None = None):
        self.store = store
        self._entries: dict[str, Any] | None = None
        self._changed = False

    def _loaded(self) -> dict[str, Any]:
        if self._entries is None:
            self._entries = {}
            if self.store is not None:
                try:
                    found = json.loads(self.store.read_text())
                except (OSError, json.JSONDecodeError):
                    found = {}
                self._entries = found if isinstance(found, dict) else {}
        return self._entries

    def sha256(self, file: Path) -> str:
        stat = file.stat()
        key = str(file.resolve())
        entries = self._loaded()
        entry = entries.get(key)
        # st_mtime (a float) survives the JSON round trip exactly, so equality is safe.
        if (
            isinstance(entry, dict)
            and entry.get("size") == stat.st_size
            and entry.get("mtime") == stat.st_mtime
        ):
            return str(entry["sha256"])
        digest = sha256_file(file)
        entries[key] = {"size": stat.st_size, "mtime": stat.st_mtime, "sha256": digest}
        self._changed = True
        return digest

    def save(self) -> None:
        if self.store is None or not self._changed:
            return
        try:
            atomic_write_text(self.store, json.dumps(self._loaded(), indent=1))
        except OSError as exc:  # a read-only cache only costs re-hashing next time
            print(f"evalkit: cannot write {self.store}: {exc}", file=sys.stderr)
            return
        self._changed = False

    def hash_files(self, files: Iterable[Path]) -> dict[Path, str]:
        """sha256 of each file, then :meth:`save`."""
        out = {file: self.sha256(file) for file in files}
        self.save()
        return out


# Provenance hashes the same data file several times per process (a reader notes its
# revision, the runner records it); mtime_ns because a file rewritten within a second
# must not keep its old digest.
_path_hashes: dict[tuple[str, int, int], str] = {}


def sha256_path(path: Path) -> str:
    """sha256 of a file; of a folder, :func:`sha256_listing`. Remembered for the process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _path_hashes:
        _path_hashes[key] = sha256_listing(path) if path.is_dir() else sha256_file(path)
    return _path_hashes[key]
