"""Where evalkit keeps files of its own, and how it writes files others may read.

* :func:`cache_dir` is the one rule for the cache folder (generated benchmarks, checkpoint
  hashes, judge and API response caches): ``$EVALKIT_CACHE``, else ``~/.cache/evalkit``.
* :func:`atomic_writer` (and :func:`atomic_write_text` / :func:`atomic_write_bytes`) write
  a file whole or not at all: a reader — another rank, a resumed run, ``evalkit report`` —
  never sees half of one, and a run killed mid-write leaves the previous file intact.
* :func:`build_dir_once` does the same for a generated folder (the shapes benchmark).

Low level on purpose: nothing here imports the rest of evalkit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

ENV_CACHE = "EVALKIT_CACHE"


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$EVALKIT_CACHE`` (``~`` expanded), else ``~/.cache/evalkit``; unset and empty are alike.

    ``environ`` defaults to the process environment; the CLI and tests pass their own.
    """
    env = os.environ if environ is None else environ
    value = env.get(ENV_CACHE)
    if value:
        return Path(value).expanduser()
    return Path.home() / ".cache" / "evalkit"


def tmp_sibling(path: Path) -> Path:
    """The temporary name a file is written under before it is moved to ``path``.

    A sibling, so the final :func:`os.replace` stays on one file system (atomic); hidden,
    so folder listings and globs (``store.rank*.sqlite``) never pick it up; with the pid
    and thread in its name, so concurrent writers (ranks, threads) never share one.
    """
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """The temporary sibling to write; moved onto ``path`` if the block ends without an
    error, removed (leaving ``path`` as it was) if it does not."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_writer(path: Path, encoding: str = "utf-8") -> Iterator[TextIO]:
    """A text handle whose content becomes ``path`` when the block ends (all or nothing).

    For files written in pieces (JSON lines) without holding the whole text in memory.
    """
    with _replacing(path) as tmp, tmp.open("w", encoding=encoding) as fh:
        yield fh


def atomic_write_text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    """``path.write_text(text)``, but all or nothing (see :func:`atomic_writer`)."""
    with atomic_writer(path, encoding) as fh:
        fh.write(text)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """``path.write_bytes(data)``, but all or nothing (see :func:`atomic_writer`)."""
    with _replacing(path) as tmp:
        tmp.write_bytes(data)
    return path


DONE_MARKER = "DONE"


def build_dir_once(target: Path, build: Callable[[Path], None], done_text: str) -> Path:
    """The folder ``target``, built by ``build(folder)`` on first use, whole or not at all.

    ``build`` fills a hidden temporary sibling, which gets a ``DONE`` file (``done_text``)
    and is renamed to ``target``: processes racing to build it each build their own, the
    first rename wins and the others' copies are dropped; a killed build leaves no
    ``target`` and is retried next time.
    """
    if (target / DONE_MARKER).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        (tmp / DONE_MARKER).write_text(done_text)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / DONE_MARKER).exists():  # not another process winning the race
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
