"""The run and score flows: samples -> requests -> adapter -> store -> score -> results.json."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

import evalkit
from evalkit.engine import distributed as dist
from evalkit.engine.generate import generate_into_store
from evalkit.engine.predictions_io import read_predictions, write_jsonl, write_predictions
from evalkit.engine.store import PredictionStore, adopt_previous, merge_stores, prediction_key
from evalkit.errors import EvalkitError, PredictionsError
from evalkit.hashing import sha256_path
from evalkit.models import Adapter
from evalkit.protocol import ScoreResult, ScoringContext
from evalkit.records import Sample
from evalkit.results import PREDICTIONS_FILE, SAMPLES_FILE, Provenance, Results, Timings, git_sha, now_iso
from evalkit.task import Task

STORE_FILE = "store.sqlite"


@dataclass
class Loaded:
    samples: list[Sample]
    files: list[Path]
    notes: list[str]
    skipped: list[str] = field(default_factory=list)


def load(task: Task, data: Mapping[str, Path | None], limit: int | None, on_error: str = "fail") -> Loaded:
    read = task.load_samples(data, on_error)
    samples = read.samples[:limit] if limit is not None else read.samples
    notes = list(read.notes)
    if limit is not None and limit < len(read.samples):
        notes.append(f"--limit {limit}: first {limit} of {len(read.samples)} samples")
    return Loaded(samples, read.files, notes, list(read.skipped))


def run_task(
    task: Task,
    adapter: Adapter,
    model_name: str,
    data: Mapping[str, Path | None],
    output: Path,
    limit: int | None = None,
    generation_overrides: Mapping[str, Any] | None = None,
    console: Console | None = None,
    on_error: str = "fail",
    ctx: dist.DistContext | None = None,
    scoring: ScoringContext | None = None,
) -> Results | None:
    """Run, resume and score one task. Under torchrun only rank 0 returns results."""
    ctx = ctx or dist.context_from_env()
    dist.init(ctx)
    t0 = time.perf_counter()
    loaded = load(task, data, limit, on_error)
    requests = task.build_requests(loaded.samples, generation_overrides)
    fingerprint = {"name": adapter.name, **adapter.fingerprint()}
    keys = {r.id: prediction_key(task.card_hash, r, fingerprint) for r in requests}
    output.mkdir(parents=True, exist_ok=True)
    previous = {r.id: [prediction_key(h, r, fingerprint) for h in task.store_hashes[1:]] for r in requests}
    adopt_previous(output / STORE_FILE, keys, previous)
    # Rows finished by any earlier run, whatever its world size, count as done.
    done = merge_stores(output, STORE_FILE, set(keys.values()), into_main=not ctx.distributed)
    mine = dist.shard(requests, ctx)
    pending = [r for r in mine if keys[r.id] not in done]
    if console is not None and ctx.is_main and done:
        console.print(f"[green]resuming[/]: {len(done)} of {len(requests)} requests already stored")
    store_name = STORE_FILE if not ctx.distributed else f"store.rank{ctx.rank}.sqlite"
    t_gen = time.perf_counter()
    with PredictionStore(output / store_name) as store:
        label = "generating" if not ctx.distributed else f"rank {ctx.rank}/{ctx.world_size}"
        report = generate_into_store(adapter, pending, keys, store, console, on_error, label)
        # Rank 0 may sit on another node, so a rank's rows travel to it rather than its file.
        my_rows = list(store.get_many(keys[r.id] for r in mine).items()) if ctx.distributed else []
    generate_s = time.perf_counter() - t_gen
    skipped = dict(report.skipped)
    # Counted per rank over its own shard: another rank may already have stored rows of this
    # very run by the time this one looked for finished ones, so `done` is no measure of reuse.
    n_generated = len(pending) - len(report.skipped)
    n_reused = len(mine) - len(pending)
    if ctx.distributed:
        gathered = dist.gather_to_main((my_rows, skipped, n_generated, n_reused), ctx)
        if gathered is None:
            # Leave the group cleanly: a gloo group torn down at interpreter exit aborts.
            dist.shutdown(ctx)
            return None
        n_generated = sum(g for _, _, g, _ in gathered)
        n_reused = sum(r for _, _, _, r in gathered)
        with PredictionStore(output / STORE_FILE) as main_store:
            for rows, rank_skipped, _, _ in gathered:
                skipped.update(rank_skipped)
                for key, prediction in rows:
                    main_store.put(key, prediction)
        merge_stores(output, STORE_FILE, set(keys.values()), into_main=True)
    with PredictionStore(output / STORE_FILE) as store:
        stored = store.get_many(keys.values())
    missing = [r.id for r in requests if keys[r.id] not in stored and r.id not in skipped]
    if missing:
        raise EvalkitError(
            f"adapter {adapter.name} returned no prediction for {len(missing)} request(s), "
            f"e.g. {missing[:3]}; finished ones are kept in {output / STORE_FILE}"
        )
    answered = [r for r in requests if keys[r.id] in stored]
    write_predictions(output / PREDICTIONS_FILE, answered, [stored[keys[r.id]] for r in answered])
    texts = {r.id: stored[keys[r.id]].text for r in answered}
    loaded.skipped.extend(f"{rid}: {why}" for rid, why in sorted(skipped.items()))
    skipped_samples = {r.sample_id for r in requests if r.id in skipped}
    loaded.samples = [s for s in loaded.samples if s.id not in skipped_samples]
    generation = requests[0].generation if requests else dict(task.generation)
    results = finish(
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
        n_generated,
        {"total": len(requests), "generated": n_generated, "reused": n_reused, "skipped": len(skipped)},
        scoring,
    )
    dist.shutdown(ctx)
    return results


def score_file(
    task: Task,
    predictions_path: Path,
    data: Mapping[str, Path | None],
    output: Path,
    model_name: str | None = None,
    on_error: str = "fail",
    scoring: ScoringContext | None = None,
) -> Results:
    t0 = time.perf_counter()
    loaded = load(task, data, None, on_error)
    requests = task.build_requests(loaded.samples)
    texts = read_predictions(predictions_path, {r.id for r in requests})
    missing = [r.id for r in requests if r.id not in texts]
    if missing and on_error == "fail":
        raise PredictionsError(
            predictions_path,
            f"no prediction for {len(missing)} of {len(requests)} request ids "
            f"(first: {', '.join(missing[:5])}); --on-error skip scores the rest",
        )
    if missing:
        missing_ids = set(missing)
        gone = {r.sample_id for r in requests if r.id in missing_ids}
        loaded.skipped.extend(f"{rid}: no prediction in {predictions_path}" for rid in missing)
        loaded.samples = [s for s in loaded.samples if s.id not in gone]
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
        {},
        scoring,
    )


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
    request_counts: dict[str, int],
    scoring: ScoringContext | None = None,
) -> Results:
    t_score = time.perf_counter()
    scored: ScoreResult = task.score(loaded.samples, texts, data, scoring)
    score_s = time.perf_counter() - t_score
    write_jsonl(output / SAMPLES_FILE, scored.per_sample)
    wall = time.perf_counter() - t0
    n_skipped = len(loaded.skipped)
    n = len(loaded.samples) + n_skipped
    n_failed = int(scored.counts.get("failed", 0)) + n_skipped
    counts = dict(scored.counts)
    if n_skipped:
        counts["skipped"] = n_skipped
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
        requests=request_counts,
        command=_redacted(sys.argv),
    )
    results = Results(
        task=task.name,
        model=model_name,
        metrics=scored.metrics,
        n=n,
        n_scored=n - n_failed,
        n_failed=n_failed,
        counts=counts,
        skipped=loaded.skipped,
        provenance=provenance,
        **scored.extra,
    )
    results.write(output)
    return results


def _redacted(argv: Sequence[str]) -> list[str]:
    """The command line with anything that looks like a secret in --model-args hidden."""
    out = []
    for arg in argv:
        parts = []
        for part in arg.split(","):
            key = part.split("=", 1)[0].lower()
            secret = "=" in part and any(w in key for w in ("key", "token", "secret", "password"))
            parts.append(f"{part.split('=', 1)[0]}=***" if secret else part)
        out.append(",".join(parts))
    return out
