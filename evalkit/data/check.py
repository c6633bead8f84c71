"""``evalkit data check TASK``: can this task run on these files, and are they the paper's?

For every data key of the card (completed by its family's ``data.yaml``, see
:mod:`evalkit.data.facts`): where it looked (the card's default under ``$EVALKIT_DATA`` or a
``--data`` path), found or not, the sha256 of a file and whether it is a known public
revision, its record count against the expected one, and the official download page. Then,
when every key the task needs is there, the task's own reader loads the data (the same code
``run`` uses, so a file of the wrong format fails here and not after the model loaded), and a
sample of the image files the samples name is opened.

A task *can run* when every key needed for ``run`` or ``score`` is found, the reader loads
the data, and every sampled image opens. Unknown revisions and counts that differ are
warnings: the task runs, its numbers may not be the paper's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel

from evalkit.cards import DataKey, LoadedCard
from evalkit.data.facts import card_data, known_elsewhere
from evalkit.errors import EvalkitError
from evalkit.hashing import sha256_path
from evalkit.records import Sample
from evalkit.task import Task


class KeyCheck(BaseModel):
    key: str
    path: str | None  # where it looked (None: the card has no default and none was given)
    source: Literal["default", "--data", "none"]
    required: bool  # needed for run or score
    found: bool
    kind: Literal["file", "folder"] | None = None
    sha256: str | None = None  # files only (a folder may be a whole image set)
    revision: str | None = None  # the known revision these bytes are
    known_revision: bool | None = None  # None: no revisions are listed for this key
    records: int | None = None
    expected_records: int | None = None
    url: str = ""
    hint: str = ""  # what to know before downloading it (the family's data.yaml)
    description: str = ""
    note: str = ""  # what the check saw


class TaskCheck(BaseModel):
    task: str
    card: str
    can_run: bool
    keys: list[KeyCheck]
    samples: int | None = None
    expected_samples: int | None = None
    reader_notes: list[str] = []
    images_checked: int = 0
    images_opened: int = 0
    problems: list[str] = []  # why it cannot run
    warnings: list[str] = []  # why its numbers may not be the paper's


# ---------------------------------------------------------------------- records
def count_records(path: Path, how: str) -> tuple[int | None, str]:
    """The number of records ``how`` counts in ``path``; (None, why) when the file is not of
    that shape (another format the reader also takes, e.g. raw LVIS for an Osprey subset)."""
    if how.startswith("files:"):
        if not path.is_dir():
            return None, "not a folder"
        return sum(1 for p in path.glob(how[len("files:") :]) if p.is_file()), ""
    if path.is_dir():
        return None, "a folder, not a file"
    if how == "lines":
        with path.open("rb") as fh:
            return sum(1 for line in fh if line.strip()), ""
    try:
        raw = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"not JSON ({exc.__class__.__name__})"
    if how == "list":
        return (len(raw), "") if isinstance(raw, list) else (None, f"a JSON {_kind(raw)}, not a list")
    if how == "keys":
        return (len(raw), "") if isinstance(raw, dict) else (None, f"a JSON {_kind(raw)}, not an object")
    if isinstance(raw, dict) and isinstance(raw.get(how), list):
        return len(raw[how]), ""
    return None, f"no {how!r} list"


def _kind(raw: object) -> str:
    return {"dict": "object", "list": "list"}.get(type(raw).__name__, type(raw).__name__)


def _check_key(name: str, spec: DataKey, path: Path | None, overridden: bool, family: str | None) -> KeyCheck:
    required = bool({"run", "score"} & set(spec.needed_for))
    source: Literal["default", "--data", "none"] = "--data" if overridden else "default"
    check = KeyCheck(
        key=name,
        path=str(path) if path is not None else None,
        source=source if path is not None else "none",
        required=required,
        found=path is not None and path.exists(),
        url=spec.url,
        hint=spec.note,
        description=spec.description,
        expected_records=spec.records,
    )
    if path is None:
        check.note = "no default path: pass --data {name}=PATH" if required else "generated when not given"
        return check
    if not check.found:
        return check
    check.kind = "folder" if path.is_dir() else "file"
    if check.kind == "file":
        check.sha256 = sha256_path(path)
    if spec.revisions and check.sha256 is not None:
        match = next((r for r in spec.revisions if r.sha256 == check.sha256), None)
        check.known_revision = match is not None
        if match is not None:
            check.revision = match.name
            if match.records is not None:
                check.expected_records = match.records
    elif spec.revisions:
        check.known_revision = False
    if check.known_revision is False and check.sha256 is not None:
        elsewhere = known_elsewhere(family, check.sha256)
        if elsewhere is not None:
            check.note = f"these bytes are {elsewhere}"
    if spec.count is not None:
        check.records, why = count_records(path, spec.count)
        if check.records is None:
            check.note = f"records not counted: {why}"
    return check


# ---------------------------------------------------------------------- images
def sample_image_paths(samples: Sequence[Sample], n: int) -> list[str]:
    """Up to ``n`` distinct image paths, evenly spread over the samples' images (in order)."""
    seen: dict[str, None] = {}
    for s in samples:
        if s.image_path is not None:
            seen.setdefault(s.image_path, None)
    paths = list(seen)
    if n <= 0 or not paths:
        return []
    if len(paths) <= n:
        return paths
    step = (len(paths) - 1) / (n - 1) if n > 1 else 0
    return [paths[round(k * step)] for k in range(n)]


def open_image(path: str) -> str | None:
    """None if the file decodes as an image, else why not."""
    try:
        with Image.open(path) as im:
            im.load()
    except FileNotFoundError:
        return "not found"
    except UnidentifiedImageError:
        return "not an image"
    except OSError as exc:
        return f"cannot be decoded ({exc})"
    return None


# ---------------------------------------------------------------------- the check
def check_task(loaded: LoadedCard, overrides: Mapping[str, str], n_images: int = 8) -> TaskCheck:
    """Everything this module promises, for one task (not a group)."""
    task = Task(loaded)
    data = task.resolve_data(overrides, command="check")  # no key is needed for "check"
    facts = card_data(loaded)
    keys = [
        _check_key(name, facts.keys[name], data[name], name in overrides, loaded.family)
        for name in task.card.data
    ]
    result = TaskCheck(
        task=task.name, card=loaded.source, can_run=False, keys=keys, expected_samples=facts.samples
    )
    for k in keys:
        if k.required and not k.found:
            where = k.path or "(no default path)"
            result.problems.append(f"{k.key}: not found at {where}")
        if k.known_revision is False:
            elsewhere = f"; {k.note}" if k.note.startswith("these bytes") else ""
            result.warnings.append(f"{k.key}: sha256 {k.sha256} is none of the known revisions{elsewhere}")
        if k.records is not None and k.expected_records is not None and k.records != k.expected_records:
            result.warnings.append(f"{k.key}: {k.records:,} records, expected {k.expected_records:,}")
    if result.problems:
        return result
    try:
        read = task.load_samples({k: (v if v is None or v.exists() else None) for k, v in data.items()})
    except EvalkitError as exc:
        result.problems.append(f"the reader cannot load the data: {exc}")
        return result
    result.samples = len(read.samples)
    result.reader_notes = list(read.notes)
    result.warnings += [note for note in read.notes if note.startswith("WARNING")]
    if facts.samples is not None and result.samples != facts.samples:
        result.warnings.append(
            f"{result.samples:,} samples; the paper's data gives {facts.samples:,} "
            "(another subset or revision)"
        )
    if not read.samples:
        result.problems.append("the data holds no sample")
    images_key = "images" in task.card.data and "run" in task.card.data["images"].needed_for
    tried = sample_image_paths(read.samples, n_images)
    if images_key and read.samples and not tried:
        result.problems.append("no sample names an image (references only?): it can be scored, not run")
    result.images_checked = len(tried)
    for path in tried:
        why = open_image(path)
        if why is None:
            result.images_opened += 1
        else:
            result.problems.append(f"image {path}: {why}")
    result.can_run = not result.problems
    return result
