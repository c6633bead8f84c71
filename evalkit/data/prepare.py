"""``evalkit data prepare DATASET SRC DEST``: what the converters share.

A converter is a :class:`Preparer` registered under its dataset name (``ade20k``,
``lvis-1k``) in ``tasks/<family>/prepare_<dataset>.py`` (dashes become underscores). It turns
an official download (``SRC``) into the files its family's tasks read (``DEST``), laid out
as the cards' default paths expect, so that ``DEST`` can be ``$EVALKIT_DATA/<folder>``.

* **Resumable.** Per-image work goes through a :class:`WorkDir`
  (``DEST/.evalkit-prepare/<dataset>-<split>/``): an item's outputs are written atomically
  and its record (what the final JSON needs from it) last, so a record on disk means the
  item is done; a rerun after a crash or Ctrl-C does only the rest. The work folder
  remembers the options it was started with and refuses to mix in items made with others.
* **Parallel, with progress.** :func:`run_items` spreads the items over processes (``--jobs``)
  and shows a progress bar on a terminal (a line per tenth otherwise).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from evalkit.errors import ConfigError, EvalkitError
from evalkit.files import atomic_write_bytes, atomic_write_text
from evalkit.registry import Registry

WORK_FOLDER = ".evalkit-prepare"
WORK_FORMAT = 1  # bump when what a work folder's records hold changes


class PrepareError(EvalkitError):
    """A conversion that cannot go on; one line naming the file and what to do next."""


@dataclass(frozen=True)
class PrepareOptions:
    split: str | None = None  # None: the dataset's default (val)
    jobs: int = 0  # processes; 0: one per CPU
    seed: int = 0
    coco: Path | None = None  # a COCO 2017 root (train2017/, val2017/) for an image view
    force: bool = False  # start over instead of resuming
    progress: bool = True

    def workers(self) -> int:
        return self.jobs if self.jobs > 0 else max(1, os.cpu_count() or 1)


@dataclass
class PrepareResult:
    """What a conversion wrote and how to use it."""

    written: list[Path]
    tasks: list[str]  # the tasks these files are for
    data: dict[str, Path] = field(default_factory=dict)  # --data KEY=PATH those tasks need
    notes: list[str] = field(default_factory=list)


class Preparer(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]  # one line: from what to what
    source: ClassVar[str]  # what SRC is, and where it is downloaded
    takes: ClassVar[frozenset[str]] = frozenset()  # options beyond jobs/force/progress
    splits: ClassVar[tuple[str, ...]] = ("val",)

    def split(self, options: PrepareOptions) -> str:
        split = options.split or self.splits[0]
        if split not in self.splits:
            raise ConfigError(f"{self.name}: no split {split!r} (known: {', '.join(self.splits)})")
        return split

    def check_options(self, options: PrepareOptions) -> None:
        given = {
            "split": options.split is not None,
            "seed": options.seed != 0,
            "coco": options.coco is not None,
        }
        extra = sorted(k for k, on in given.items() if on and k not in self.takes)
        if extra:
            flags = ", ".join(f"--{k}" for k in extra)
            raise ConfigError(f"{self.name} takes no {flags}")

    @abstractmethod
    def prepare(self, src: Path, dest: Path, options: PrepareOptions, console: Console) -> PrepareResult: ...


PREPARERS: Registry[type[Preparer]] = Registry("dataset", "evalkit.tasks", "evalkit.tasks", depth=2)


def register_preparer(cls: type[Preparer]) -> type[Preparer]:
    """Class decorator; a built-in converter lives in ``prepare_<name with _ for ->.py``."""
    module = cls.__module__.rsplit(".", 1)[-1]
    if cls.__module__.startswith("evalkit.tasks.") and module != "prepare_" + cls.name.replace("-", "_"):
        raise ConfigError(f"dataset {cls.name!r} must live in prepare_{cls.name.replace('-', '_')}.py")
    PREPARERS.register(cls.name)(cls)
    return cls


def get_preparer(name: str) -> Preparer:
    return PREPARERS.get(name)()


# ---------------------------------------------------------------------- resuming
class WorkDir:
    """``DEST/.evalkit-prepare/<key>/``: one JSON record per finished item, plus the options
    the conversion started with (``state.json``)."""

    def __init__(self, dest: Path, key: str, fingerprint: dict[str, Any], force: bool):
        self.root = dest / WORK_FOLDER / key
        state = self.root / "state.json"
        wanted = {"format": WORK_FORMAT, **fingerprint}
        if force and self.root.exists():
            shutil.rmtree(self.root)
        if state.exists():
            try:
                found = json.loads(state.read_text("utf-8"))
            except json.JSONDecodeError:
                found = None
            if found != wanted:
                raise PrepareError(
                    f"{self.root}: a conversion with other options was started here "
                    f"({json.dumps(found)}); pass --force to start over"
                )
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(state, json.dumps(wanted, sort_keys=True))

    def record_path(self, item: str) -> Path:
        return self.root / f"{item}.json"

    def done(self, item: str) -> bool:
        return self.record_path(item).exists()

    def save(self, item: str, record: Any) -> None:
        write_record(self.root, item, record)

    def load(self, item: str) -> Any:
        return json.loads(self.record_path(item).read_text("utf-8"))

    def finish(self) -> None:
        """The final files are written: the records are no longer needed."""
        shutil.rmtree(self.root)
        parent = self.root.parent
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()


def write_record(root: Path, item: str, record: Any) -> None:
    """An item's record (what the final files need from it), written last: it marks the item
    done. A function of the folder, so worker processes write it without a WorkDir."""
    atomic_write_text(root / f"{item}.json", json.dumps(record))


# ---------------------------------------------------------------------- running
Worker = Callable[[str], "str | None"]  # an item -> None, or the one-line error


def run_items(
    items: Sequence[str],
    worker: Worker,
    work: WorkDir,
    options: PrepareOptions,
    label: str,
    console: Console,
) -> int:
    """Run ``worker`` on every item not yet done (in processes when ``--jobs`` > 1); the
    number of items converted now. ``worker`` must be picklable (a module-level function or
    a :func:`functools.partial` of one) and write its item's record last."""
    todo = [item for item in items if not work.done(item)]
    done_before = len(items) - len(todo)
    if done_before:
        console.print(f"{label}: {done_before:,} of {len(items):,} already converted (resuming)")
    if not todo:
        return 0
    jobs = min(options.workers(), len(todo))
    with _progress(console, label, len(items), done_before, options.progress) as advance:
        for error in _results(todo, worker, jobs):
            if error is not None:
                raise PrepareError(f"{error} (items finished so far are kept: rerun to resume)")
            advance()
    return len(todo)


def _results(todo: Sequence[str], worker: Worker, jobs: int) -> Iterator[str | None]:
    if jobs <= 1:
        for item in todo:
            yield worker(item)
        return
    # spawn, not fork: the progress bar's thread (and the caller's) must not be forked.
    context = multiprocessing.get_context("spawn")
    chunk = max(1, min(32, len(todo) // (jobs * 8)))
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        try:
            yield from pool.map(worker, todo, chunksize=chunk)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


class _progress:
    """A rich progress bar on a terminal, else a line at each tenth (logs stay short)."""

    def __init__(self, console: Console, label: str, total: int, done: int, enabled: bool):
        self.console, self.label, self.total, self.done = console, label, total, done
        self.bar: Progress | None = None
        self.enabled = enabled
        self.next_line = done + max(1, total // 10)

    def __enter__(self) -> Callable[[], None]:
        if self.enabled and self.console.is_terminal:
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=self.total, completed=self.done)
        return self.advance

    def advance(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done)
        elif self.enabled and (self.done >= self.next_line or self.done == self.total):
            self.console.print(f"{self.label}: {self.done:,}/{self.total:,}")
            self.next_line = self.done + max(1, self.total // 10)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


# ---------------------------------------------------------------------- small helpers
def link_folder(target: Path, link: Path) -> bool:
    """``link`` -> ``target`` (a symlink) unless ``link`` already exists; True if made."""
    if link.exists() or link.is_symlink():
        return False
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target.resolve(), target_is_directory=True)
    return True


def require_folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise PrepareError(f"{path}: not found ({what})")
    return path


def print_result(result: PrepareResult, console: Console) -> None:
    for path in result.written:
        console.print(f"wrote {path}", markup=False, highlight=False)
    for note in result.notes:
        console.print(note, markup=False, highlight=False)
    flags = " ".join(f"--data {k}={v}" for k, v in result.data.items())
    for task in result.tasks:
        console.print(f"check: evalkit data check {task} {flags}".rstrip(), markup=False, highlight=False)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)


def write_png(path: Path, image: Any) -> None:
    """``Image.fromarray(array).save(path)`` (or ``image.save(path)``) — the reference scripts'
    call, so the same bytes for the installed Pillow — written all or nothing."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
