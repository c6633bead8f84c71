"""Opening images for adapters and checking them before a run, with errors that name the file
and the request."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePath

from PIL import Image, UnidentifiedImageError

from evalkit.errors import DataError
from evalkit.records import Request


def image_in(root: Path, name: str, record: str | None = None) -> Path:
    """``root / name``, refusing a ``name`` that leaves ``root`` (``../``, an absolute path,
    a NUL byte): an image path comes from the data, and the ``api`` adapter uploads the file
    while the HTML report embeds it, so a hostile ``file_name`` must not read any other file.

    The check is on the name (``..`` collapsed), not on the resolved file: a merged images
    folder of symbolic links (Osprey's COCO layout) stays readable.

    Example:
        >>> str(image_in(Path("/data/coco"), "val2017/0001.jpg"))
        '/data/coco/val2017/0001.jpg'
    """
    normal = os.path.normpath(name) if name else name
    if (
        not name
        or "\0" in name
        or PurePath(name).is_absolute()
        or name.startswith(("/", "\\"))
        or normal == ".."
        or normal.startswith(("../", "..\\"))
    ):
        raise DataError(
            root,
            f"image file name {name!r} is not a path inside the images folder; "
            "image names must be relative and stay inside it (no '..', no absolute path)",
            record,
        )
    return root / name


def image_roots(images: Path) -> list[Path]:
    """The image folders of an ``images`` data path: one folder, or several joined with
    ``os.pathsep`` (``coco/train2017:coco/val2017``: LVIS v1 val draws on both)."""
    text = str(images)
    return [Path(part) for part in text.split(os.pathsep) if part] if os.pathsep in text else [images]


def find_image(images: Path, names: Sequence[str], record: str | None = None) -> Path:
    """The first of ``names`` found in the first image folder holding it (folders in the
    order given, names in order); none found: the first name in the first folder (so the
    error that follows names where evalkit looked first). Each name must stay inside its
    folder (:func:`image_in`)."""
    roots = image_roots(images)
    first: Path | None = None
    for name in names:
        for root in roots:
            path = image_in(root, name, record)
            first = first or path
            if len(roots) == 1 and len(names) == 1:
                return path  # nothing to choose: no file system look-up
            if path.exists():
                return path
    assert first is not None, "find_image needs at least one name"
    return first


def load_rgb(path: str | Path, record: str | None = None) -> Image.Image:
    """Decode an image fully as RGB; a missing, truncated or non-image file is a DataError."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError as exc:
        raise DataError(path, "image file not found", record) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"cannot decode image ({exc})", record) from exc


def image_size(path: str | Path, where: str | None = None) -> tuple[int, int]:
    """(width, height) from the image header, without decoding pixels; a missing or non-image
    file is a DataError naming the file (and ``where``, the record)."""
    try:
        with Image.open(path) as img:
            width, height = img.size
            return width, height
    except FileNotFoundError as exc:
        raise DataError(path, "image file not found", where) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"not a readable image ({exc})", where) from exc


def request_image_size(request: Request) -> tuple[int, int] | None:
    """(height, width) of a request's image: its regions', else the size its data gives
    (``Request.image_size``), else the image header's; None when none is known."""
    if request.regions:
        return request.regions[0].height, request.regions[0].width
    if request.image_size is not None:
        return request.image_size
    if request.image_path is None or not Path(request.image_path).is_file():
        return None
    try:
        width, height = image_size(request.image_path)
    except DataError:
        return None
    return height, width


def check_request_image(request: Request) -> None:
    """Cheap pre-flight check (header only): the image exists, is an image, and has the size
    the regions were annotated on. Full decoding errors surface from :func:`load_rgb`."""
    if request.image_path is None:
        return
    path = request.image_path
    width, height = image_size(path, request.id)
    for k, region in enumerate(request.regions):
        if (region.height, region.width) != (height, width):
            raise DataError(
                path,
                f"region {k} was annotated on a {region.width}x{region.height} image, "
                f"the file is {width}x{height}",
                request.id,
            )


def check_images(requests: Iterable[Request]) -> dict[str, DataError]:
    """request id -> error, for every request whose image fails :func:`check_request_image`.
    Each distinct image file is opened once."""
    seen: dict[tuple[str, tuple[tuple[int, int], ...]], DataError | None] = {}
    errors: dict[str, DataError] = {}
    for request in requests:
        if request.image_path is None:
            continue
        key = (request.image_path, tuple((r.height, r.width) for r in request.regions))
        if key not in seen:
            try:
                check_request_image(request)
                seen[key] = None
            except DataError as exc:
                seen[key] = exc
        found = seen[key]
        if found is not None:
            errors[request.id] = DataError(found.path, found.message, request.id)
    return errors
