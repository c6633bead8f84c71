"""``evalkit data prepare refcocog SRC DEST``: the refer toolkit's RefCOCOg files as JSON.

``SRC`` is the toolkit's ``refcocog`` folder (``refcocog.zip`` from
https://github.com/lichengunc/refer's data links) with ``refs(umd).p`` (and ``refs(google).p``)
and ``instances.json``. Each ``refs(*).p`` becomes ``DEST/refs(*).json``: the same list of refs,
read through :class:`.refcocog_cap.PlainDataUnpickler` — nothing named in the pickle is
imported, so a tampered file is refused and runs nothing — and written as JSON, which
``refcocog_cap_refer`` reads (``--data refs=DEST/refs(umd).json``) without any unpickling at
run time. Tuples become lists; nothing else changes. ``DEST/instances.json`` links to SRC's.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from evalkit.data.prepare import PrepareError, PrepareOptions, Preparer, PrepareResult, register_preparer
from evalkit.files import atomic_write_text

from .refcocog_cap import load_refs


@register_preparer
class RefcocogPreparer(Preparer):
    name = "refcocog"
    summary = "refer toolkit refs(umd).p (a pickle) -> refs(umd).json, read without unpickling"
    source = "the refer toolkit's refcocog/ folder (https://github.com/lichengunc/refer: refcocog.zip)"

    def prepare(self, src: Path, dest: Path, options: PrepareOptions, console: Console) -> PrepareResult:
        pickles = sorted(src.glob("refs(*).p")) if src.is_dir() else [src]
        if not pickles:
            raise PrepareError(f"{src}: no refs(*).p file (is SRC the toolkit's refcocog folder?)")
        written: list[Path] = []
        notes: list[str] = []
        for path in pickles:
            refs = load_refs(path)
            out = dest / f"{path.stem}.json"
            atomic_write_text(out, json.dumps(refs))
            written.append(out)
            splits = sorted({str(r.get("split")) for r in refs if isinstance(r, dict)})
            notes.append(f"{path.name}: {len(refs):,} refs (splits {', '.join(splits)})")
        data = {"refs": dest / "refs(umd).json"} if (dest / "refs(umd).json").exists() else {}
        instances = (src if src.is_dir() else src.parent) / "instances.json"
        if instances.is_file():
            link = dest / "instances.json"
            if not link.exists() and not link.is_symlink():
                link.symlink_to(instances.resolve())
                notes.append(f"linked {link} -> {instances}")
            data["instances"] = link
        return PrepareResult(
            written=written, tasks=["refcocog_cap_refer"] if data else [], data=data, notes=notes
        )
