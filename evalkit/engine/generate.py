"""Streaming an adapter's predictions into the store, with progress and the error policy."""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from evalkit.engine.store import PredictionStore
from evalkit.errors import DataError, EvalkitError
from evalkit.images import check_images
from evalkit.models import Adapter
from evalkit.records import Request
from evalkit.regions import Region, RegionError, RegionKind


@dataclass
class GenerationReport:
    skipped: dict[str, str] = field(default_factory=dict)  # request id -> why


def model_kind(region_kinds: Collection[str], kind: str) -> RegionKind:
    """The kind a region of ``kind`` reaches a model taking ``region_kinds`` as: its own when
    the model takes it, else a mask (the most faithful form) or the model's first kind."""
    if kind in region_kinds:
        return kind  # type: ignore[return-value]
    return "mask" if "mask" in region_kinds else sorted(region_kinds)[0]  # type: ignore[return-value]


def input_kinds(region_kinds: Collection[str], request: Request) -> list[str]:
    """The region kinds a request's regions are given to the model as (after conversion)."""
    return [model_kind(region_kinds, r.kind) for r in request.regions]


def adapt_regions(adapter: Adapter, request: Request) -> tuple[Request, list[str]]:
    """Convert regions the adapter cannot take natively; say what was done."""
    converted: list[Region] = []
    notes: list[str] = []
    for k, region in enumerate(request.regions):
        target = model_kind(adapter.region_kinds, region.kind)
        if target == region.kind:
            converted.append(region)
            continue
        converted.append(region.convert(target))
        notes.append(f"region {k}: {region.kind} -> {target}")
    if not notes:
        return request, notes
    # replace(): the request keeps everything else (choices, the task's conversions).
    return replace(request, regions=converted), notes


def _progress(console: Console | None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=console is None,
    )


def _fail_or_skip(report: GenerationReport, on_error: str, request_id: str, error: Exception) -> None:
    if on_error == "fail":
        raise error if isinstance(error, EvalkitError) else EvalkitError(str(error))
    report.skipped[request_id] = str(error)


def generate_into_store(
    adapter: Adapter,
    pending: Sequence[Request],
    keys: Mapping[str, str],
    store: PredictionStore,
    console: Console | None = None,
    on_error: str = "fail",
    label: str = "generating",
) -> GenerationReport:
    """Ask the adapter for every pending request; commit each answer as it arrives.

    Under ``on_error='fail'`` the first bad input raises (rows already committed stay);
    under ``'skip'`` it is reported and the rest goes on. Skipped requests are not stored,
    so a later run asks again.
    """
    report = GenerationReport()
    image_errors = check_images(pending)
    ready: list[Request] = []
    conversion_notes: dict[str, list[str]] = {}
    shown: dict[str, list[dict[str, Any]]] = {}
    for request in pending:
        if request.id in image_errors:
            _fail_or_skip(report, on_error, request.id, image_errors[request.id])
            continue
        try:
            adapted, notes = adapt_regions(adapter, request)
        except RegionError as exc:
            error = DataError(request.image_path or "<no image>", f"region: {exc}", request.id)
            _fail_or_skip(report, on_error, request.id, error)
            continue
        ready.append(adapted)
        if notes:
            conversion_notes[request.id] = notes
        if request.conversions:
            shown[request.id] = [c.to_json() for c in request.conversions]
    if not ready:
        return report
    progress = _progress(console)
    start = time.perf_counter()
    with progress:
        bar = progress.add_task(label, total=len(ready), rate="")
        done = 0
        for prediction in adapter.generate(ready):
            key = keys.get(prediction.request_id)
            if key is None:
                raise EvalkitError(
                    f"adapter {adapter.name} answered unknown request {prediction.request_id!r}"
                )
            done += 1
            rate = done / max(time.perf_counter() - start, 1e-9)
            progress.update(bar, advance=1, rate=f"{rate:.1f} req/s")
            if prediction.error is not None:
                _fail_or_skip(
                    report,
                    on_error,
                    prediction.request_id,
                    EvalkitError(f"request {prediction.request_id}: {prediction.error}"),
                )
                continue
            if prediction.request_id in conversion_notes:
                prediction.meta.setdefault("region_conversions", conversion_notes[prediction.request_id])
            if prediction.request_id in shown:  # what the task did before the adapter's own
                prediction.meta.setdefault("shown_regions", shown[prediction.request_id])
            store.put(key, prediction)
    return report
