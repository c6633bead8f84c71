"""Readers: one module per real data format. Each turns data files into :class:`Sample`s.

A reader is a function ``read(data, options) -> ReadResult`` registered under a name that
task cards use (``reader: osprey_json``), which is also its module's name inside its task
family (``tasks/referring_cls/osprey_json.py``). This module holds the registry and the
helpers every reader shares. ``data`` maps the card's data keys to paths (some
may be ``None`` when a key is only needed for ``run``, e.g. ``images`` during ``score``).
Readers never open images: they resolve image paths, nothing more.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.errors import DataError
from evalkit.images import find_image, image_in, image_roots
from evalkit.records import Sample
from evalkit.regions import Region, RegionError
from evalkit.regions.region import degenerate_polygons
from evalkit.registry import Registry


@dataclass
class ReadResult:
    samples: list[Sample]
    files: list[Path] = field(default_factory=list)  # every data file read (for provenance)
    notes: list[str] = field(default_factory=list)  # what the reader decided (e.g. subsampling)
    skipped: list[str] = field(default_factory=list)  # bad records left out under --on-error skip


class RecordErrors:
    """A reader's per-record error policy (``--on-error``).

    ``fail`` (default) raises the first :class:`DataError`; ``skip`` records its message and
    goes on with the next record, so the run can proceed and the results list what was left
    out. Wrap the processing of one record in :meth:`guard`.
    """

    def __init__(self, options: Mapping[str, Any]):
        self.policy = str(options.get("on_error", "fail"))
        if self.policy not in ("fail", "skip"):
            raise ValueError(f"on_error must be 'fail' or 'skip', got {self.policy!r}")
        self.skipped: list[str] = []
        # Records read as the reference reads them though they are odd (degenerate polygons):
        # "<file>, record <where>: what was done", summarised in the results' notes.
        self.odd: list[str] = []

    def odd_notes(self) -> list[str]:
        """One note for what :attr:`odd` holds (nothing when it is empty)."""
        if not self.odd:
            return []
        shown = "; ".join(self.odd[:5]) + ("; ..." if len(self.odd) > 5 else "")
        return [
            f"{len(self.odd)} annotation(s) with degenerate polygons, rasterised as the reference's "
            f"pycocotools does (an odd count loses its last number, < 3 points add no pixel): {shown}"
        ]

    @contextmanager
    def guard(self) -> Iterator[None]:
        try:
            yield
        except DataError as exc:
            if self.policy == "fail":
                raise
            self.skipped.append(str(exc))


Reader = Callable[[Mapping[str, "Path | None"], Mapping[str, Any]], ReadResult]

# Built-in readers live in the task families: evalkit.tasks.<family>.<reader name>.
READERS: Registry[Reader] = Registry("reader", "evalkit.tasks", "evalkit.tasks", depth=2, name_is_module=True)


def register_reader(name: str) -> Callable[[Reader], Reader]:
    return READERS.register(name)


def load_json(path: Path) -> Any:
    """Read a JSON file, turning every failure into a :class:`DataError` naming the file."""
    if not path.exists():
        raise DataError(path, "file not found")
    if path.is_dir():
        raise DataError(path, "expected a file, found a directory")
    try:
        with path.open("rb") as fh:
            raw = fh.read()
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise DataError(path, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc


def load_jsonl(path: Path) -> list[tuple[int, Any]]:
    """JSON lines as (line number, object); blank lines are skipped."""
    if not path.exists():
        raise DataError(path, "file not found")
    out = []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise DataError(path, "not UTF-8 text", record=f"line {lineno}") from exc
            if not line:
                continue
            try:
                out.append((lineno, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DataError(path, f"malformed JSON: {exc.msg}", record=f"line {lineno}") from exc
    return out


def typed_field(
    path: Path, record: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str
) -> Any:
    """``record[key]`` checked to be of ``kind`` (bools never pass as ints); DataError otherwise."""
    if key not in record:
        raise DataError(path, f"missing field {key!r}", where)
    value = record[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataError(path, f"field {key!r} has the wrong type ({type(value).__name__})", where)
    return value


def segmentation_region(
    path: Path, ann: Any, height: int, width: int, where: str, odd: list[str] | None = None
) -> Region:
    """The region of annotation ``ann``'s COCO ``segmentation`` (polygons or RLE) in a
    ``height`` x ``width`` image; DataError when it has none or it is invalid. Degenerate
    polygons the reference rasterises anyway are rasterised likewise and listed in ``odd``."""
    if not isinstance(ann, dict) or "segmentation" not in ann:
        raise DataError(path, "annotation has no 'segmentation'", where)
    try:
        region = Region.from_segmentation(ann["segmentation"], height, width)
    except RegionError as exc:
        raise DataError(path, f"invalid segmentation: {exc}", where) from exc
    seg = ann["segmentation"]
    if odd is not None and isinstance(seg, list) and (bad := degenerate_polygons(seg)):
        odd.append(f"{where}: polygon(s) {bad} with {[len(seg[k]) for k in bad]} coordinates")
    return region


def require_path(data: Mapping[str, Path | None], key: str) -> Path:
    path = data.get(key)
    if path is None:
        raise DataError(f"<data key {key!r}>", f"no path given; pass --data {key}=PATH")
    return path


def image_path(images: Path | None, file_name: str, record: str | None = None) -> str | None:
    """``images/file_name``; with several image folders (``os.pathsep``-joined), the first
    that holds it. A name leaving its folder is a DataError (:func:`image_in`)."""
    return str(find_image(images, [file_name], record)) if images is not None else None


def coco_image_path(images: Path | None, file_name: str, record: str | None = None) -> str | None:
    """``images/file_name`` if it exists, else Osprey's ``images/<last _ field>``
    (its COCO copies drop the ``COCO_val2014_`` prefix); in each image folder in turn."""
    if images is None:
        return None
    short = file_name.split("_")[-1]
    names = [file_name] if short == file_name else [file_name, short]
    roots = image_roots(images)
    for root in roots:  # folder by folder: a folder's own spelling before the next folder
        found = find_image(root, names, record)
        if found.exists():
            return str(found)
    return str(image_in(roots[0], file_name, record))
