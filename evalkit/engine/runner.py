"""The run and score flows: samples -> requests -> adapter -> store -> score -> results.json."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
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

import evalkit
from evalkit.data import load_jsonl
from evalkit.engine.store import PredictionStore, prediction_key
from evalkit.errors import EvalkitError, PredictionsError
from evalkit.models import Adapter
from evalkit.records import Prediction, Request, Sample
from evalkit.regions import Region
from evalkit.report.results import (
    PREDICTIONS_FILE,
    SAMPLES_FILE,
    Provenance,
    Results,
    Timings,
    git_sha,
    now_iso,
    sha256_path,
)
from evalkit.task import ScoreResult, Task

STORE_FILE = "store.sqlite"


@dataclass
class Loaded:
    samples: list[Sample]
    files: list[Path]
    notes: list[str]


def load(task: Task, data: Mapping[str, Path | None], limit: int | None) -> Loaded:
    read = task.load_samples(data)
    samples = read.samples[:limit] if limit is not None else read.samples
    notes = list(read.notes)
    if limit is not None and limit < len(read.samples):
        notes.append(f"--limit {limit}: first {limit} of {len(read.samples)} samples")
    return Loaded(samples, read.files, notes)


def adapt_regions(adapter: Adapter, request: Request) -> tuple[Request, list[str]]:
    """Convert regions the adapter cannot take natively; say what was done."""
    converted: list[Region] = []
    notes: list[str] = []
    for k, region in enumerate(request.regions):
        if region.kind in adapter.region_kinds:
            converted.append(region)
            continue
        target = "mask" if "mask" in adapter.region_kinds else sorted(adapter.region_kinds)[0]
        converted.append(region.convert(target))  # type: ignore[arg-type]
        notes.append(f"region {k}: {region.kind} -> {target}")
    if not notes:
        return request, notes
    return (
        Request(
            request.id,
            request.sample_id,
            request.image_path,
            request.prompt,
            converted,
            request.generation,
            request.extra,
        ),
        notes,
    )


def generate_into_store(
    adapter: Adapter,
    pending: Sequence[Request],
    keys: Mapping[str, str],
    store: PredictionStore,
    console: Console | None,
) -> int:
    """Stream the adapter's predictions into the store, one committed row each."""
    converted = []
    conversion_notes: dict[str, list[str]] = {}
    for request in pending:
        adapted, notes = adapt_regions(adapter, request)
        converted.append(adapted)
        if notes:
            conversion_notes[request.id] = notes
    written = 0
    stream: Iterator[Prediction] = adapter.generate(converted)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=console is None,
        transient=False,
    )
    start = time.perf_counter()
    with progress:
        bar = progress.add_task("generating", total=len(converted), rate="")
        for prediction in stream:
            key = keys.get(prediction.request_id)
            if key is None:
                raise EvalkitError(
                    f"adapter {adapter.name} answered unknown request {prediction.request_id!r}"
                )
            if prediction.request_id in conversion_notes:
                prediction.meta.setdefault("region_conversions", conversion_notes[prediction.request_id])
            written += store.put(key, prediction)
            done = progress.tasks[0].completed + 1
            rate = done / max(time.perf_counter() - start, 1e-9)
            progress.update(bar, advance=1, rate=f"{rate:.1f} req/s")
    return written


def run_task(
    task: Task,
    adapter: Adapter,
    model_name: str,
    data: Mapping[str, Path | None],
    output: Path,
    limit: int | None = None,
    generation_overrides: Mapping[str, Any] | None = None,
    console: Console | None = None,
) -> Results:
    t0 = time.perf_counter()
    loaded = load(task, data, limit)
    requests = task.build_requests(loaded.samples, generation_overrides)
    fingerprint = {"name": adapter.name, **adapter.fingerprint()}
    keys = {r.id: prediction_key(task.card_hash, r, fingerprint) for r in requests}
    with PredictionStore(output / STORE_FILE) as store:
        done = store.existing(keys.values())
        pending = [r for r in requests if keys[r.id] not in done]
        if console is not None and done:
            console.print(
                f"[green]resuming[/]: {len(requests) - len(pending)} of {len(requests)} "
                f"requests already in {output / STORE_FILE}"
            )
        t_gen = time.perf_counter()
        if pending:
            generate_into_store(adapter, pending, keys, store, console)
        generate_s = time.perf_counter() - t_gen
        stored = store.get_many(keys.values())
    missing = [r.id for r in requests if keys[r.id] not in stored]
    if missing:
        raise EvalkitError(
            f"adapter {adapter.name} returned no prediction for {len(missing)} request(s), "
            f"e.g. {missing[:3]}; finished ones are kept in {output / STORE_FILE}"
        )
    predictions = [stored[keys[r.id]] for r in requests]
    write_predictions(output / PREDICTIONS_FILE, requests, predictions)
    texts = {p.request_id: p.text for p in predictions}
    generation = requests[0].generation if requests else dict(task.generation)
    return finish(
        task,
        model_name,
        fingerprint,
        loaded,
        texts,
        data,
        output,
        generation,
        t0,
        generate_s,
        len(pending),
    )


def score_file(
    task: Task,
    predictions_path: Path,
    data: Mapping[str, Path | None],
    output: Path,
    model_name: str | None = None,
) -> Results:
    t0 = time.perf_counter()
    loaded = load(task, data, None)
    requests = task.build_requests(loaded.samples)
    texts = read_predictions(predictions_path, {r.id for r in requests})
    missing = [r.id for r in requests if r.id not in texts]
    if missing:
        raise PredictionsError(
            predictions_path,
            f"no prediction for {len(missing)} of {len(requests)} request ids "
            f"(first: {', '.join(missing[:5])})",
        )
    fingerprint = {"name": "predictions-file", "predictions_sha256": sha256_path(predictions_path)}
    loaded.files.append(predictions_path)
    return finish(
        task,
        model_name or predictions_path.stem,
        fingerprint,
        loaded,
        texts,
        data,
        output,
        dict(task.generation),
        t0,
        0.0,
        0,
    )


def read_predictions(path: Path, known_ids: set[str]) -> dict[str, str]:
    """``{"id", "text"}`` JSON lines -> {id: text}; unknown or repeated ids are errors."""
    texts: dict[str, str] = {}
    for lineno, obj in load_jsonl(path):
        record = f"line {lineno}"
        if not isinstance(obj, dict) or "id" not in obj or "text" not in obj:
            raise PredictionsError(path, 'expected an object with "id" and "text"', record)
        pid, text = str(obj["id"]), obj["text"]
        if not isinstance(text, str):
            raise PredictionsError(path, f'"text" of id {pid!r} is not a string', record)
        if pid not in known_ids:
            raise PredictionsError(path, f"id {pid!r} is not a sample of this task", record)
        if pid in texts:
            raise PredictionsError(path, f"id {pid!r} appears twice", record)
        texts[pid] = text
    return texts


def write_predictions(path: Path, requests: Sequence[Request], predictions: Sequence[Prediction]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for request, pred in zip(requests, predictions, strict=True):
            row = pred.to_json()
            row.setdefault("prompt", request.prompt)
            row["generation"] = request.generation
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def finish(
    task: Task,
    model_name: str,
    fingerprint: dict[str, Any],
    loaded: Loaded,
    texts: Mapping[str, str],
    data: Mapping[str, Path | None],
    output: Path,
    generation: dict[str, Any],
    t0: float,
    generate_s: float,
    n_generated: int,
) -> Results:
    t_score = time.perf_counter()
    scored: ScoreResult = task.score(loaded.samples, texts, data)
    score_s = time.perf_counter() - t_score
    write_samples(output / SAMPLES_FILE, scored.per_sample)
    wall = time.perf_counter() - t0
    n = len(loaded.samples)
    n_failed = int(scored.counts.get("failed", 0))
    provenance = Provenance(
        evalkit_version=evalkit.__version__,
        git_sha=git_sha(),
        created=now_iso(),
        task_card=task.source,
        task_card_hash=task.card_hash,
        protocol_variant=task.variant,
        data_files={str(p): sha256_path(p) for p in loaded.files},
        adapter=fingerprint,
        generation=generation,
        deviations=scored.deviations,
        notes=loaded.notes,
        timings=Timings(
            wall_s=round(wall, 3),
            generate_s=round(generate_s, 3),
            score_s=round(score_s, 3),
            samples_per_s=round(n_generated / generate_s, 3) if generate_s > 0 else 0.0,
        ),
        command=sys.argv,
    )
    results = Results(
        task=task.name,
        model=model_name,
        metrics=scored.metrics,
        n=n,
        n_scored=n - n_failed,
        n_failed=n_failed,
        counts=scored.counts,
        provenance=provenance,
        **scored.extra,
    )
    results.write(output)
    return results


def write_samples(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
