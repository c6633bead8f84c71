"""The run and score flows: samples -> requests -> adapter -> store -> score -> results.json.

``run_task`` is a sequence of small steps over typed records: plan (load samples, build
requests and their store keys) -> resume (adopt rows of earlier card hashes, merge rank
stores) -> generate (this rank's pending requests) -> gather (distributed: rank 0 collects
every rank's rows) -> collect (read the answers back from the store) -> finish (score,
write samples.jsonl and results.json). ``score_file`` skips the model: load -> read the
predictions file -> finish.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console

import evalkit
from evalkit.engine import distributed as dist
from evalkit.engine.generate import generate_into_store, input_kinds
from evalkit.engine.predictions_io import read_predictions, write_jsonl, write_predictions
from evalkit.engine.sample_rows import with_sample_blocks
from evalkit.engine.store import PredictionStore, adopt_previous, merge_stores, prediction_key
from evalkit.errors import ConfigError, EvalkitError, PredictionsError
from evalkit.hashing import sha256_path
from evalkit.models import Adapter, check_serves
from evalkit.protocol import ScoreResult, ScoringContext
from evalkit.records import Prediction, Request, Sample
from evalkit.redact import redact_argv
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
    if limit is not None and limit < 1:
        # 0 would score nothing; -1 would drop the last sample (a Python slice)
        raise ConfigError(f"limit must be >= 1, got {limit}")
    read = task.load_samples(data, on_error)
    samples = read.samples[:limit] if limit is not None else read.samples
    notes = list(read.notes)
    if limit is not None and limit < len(read.samples):
        notes.append(f"--limit {limit}: first {limit} of {len(read.samples)} samples")
    return Loaded(samples, read.files, notes, list(read.skipped))


@dataclass(frozen=True)
class RequestCounts:
    """How a run got its predictions: ``provenance.requests`` of its results."""

    total: int
    generated: int  # asked of the adapter by this run and answered
    reused: int  # found in the store, finished by an earlier run (resume)
    skipped: int  # not answered: bad input under --on-error skip

    def to_json(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class RunPlan:
    """One run's samples, its requests and the store key of each."""

    loaded: Loaded
    requests: list[Request]
    fingerprint: dict[str, Any]  # the adapter's name and fingerprint, part of every key
    keys: dict[str, str]  # request id -> store key


@dataclass
class ShardOutcome:
    """What one rank did with its shard; under torchrun it travels (pickled) to rank 0."""

    skipped: dict[str, str]  # request id -> why it has no answer
    generated: int
    reused: int
    rows: list[tuple[str, Prediction]] = field(default_factory=list)  # (key, row); distributed only


@dataclass
class GenerationOutcome:
    """What finish needs of the predictions, however they were obtained."""

    outputs: dict[str, Prediction]  # request id -> the adapter's answer
    counts: RequestCounts | None = None  # None: read from a predictions file, nothing generated
    generate_s: float = 0.0
    inputs: dict[str, list[str]] | None = None  # request id -> region kinds the model was given


@dataclass
class RunInputs:
    """What a run was given, as its results record it."""

    task: Task
    model_name: str
    fingerprint: dict[str, Any]
    loaded: Loaded
    requests: list[Request]
    data: Mapping[str, Path | None]
    output: Path
    generation: dict[str, Any]
    started: float  # time.perf_counter() when the run began: wall time includes loading


def shown_record(run: RunInputs, outcome: GenerationOutcome) -> dict[str, Any]:
    """What results.json says of the regions shown to the model, when the task converted them
    (a card's or --region-kind): the kind (the board's Input column), how, and each
    conversion with its count. Empty otherwise, so default runs' results are as before."""
    shown = run.task.shown
    if shown is None:
        return {}
    # counted without each region's derived seed (per prediction, meta.shown_regions has it)
    notes = Counter(replace(c, seed=None).note() for r in run.requests for c in r.conversions)
    record: dict[str, Any] = {
        "input": shown.kind,
        "region_shown": shown.to_json(),
        "region_conversions": dict(sorted(notes.items())),
    }
    if outcome.inputs is not None:
        # what the adapter was then sent (it converts what it cannot take: a box to a mask)
        record["model_input"] = sorted({k for kinds in outcome.inputs.values() for k in kinds})
    return record


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
    plan = plan_run(task, adapter, data, limit, generation_overrides, on_error)
    output.mkdir(parents=True, exist_ok=True)
    done = resume(task, plan, output, ctx)
    if console is not None and ctx.is_main and done:
        console.print(f"[green]resuming[/]: {len(done)} of {len(plan.requests)} requests already stored")
    t_gen = time.perf_counter()
    mine = generate_shard(adapter, plan, done, output, ctx, console, on_error)
    generate_s = time.perf_counter() - t_gen
    outcome = gather(mine, plan, output, ctx)
    if outcome is None:
        # Leave the group cleanly: a gloo group torn down at interpreter exit aborts.
        dist.shutdown(ctx)
        return None
    outputs = collect(plan, adapter.name, output, outcome.skipped)
    drop_unanswered(plan.loaded, plan.requests, sorted(outcome.skipped.items()))
    counts = RequestCounts(
        total=len(plan.requests),
        generated=outcome.generated,
        reused=outcome.reused,
        skipped=len(outcome.skipped),
    )
    inputs = RunInputs(
        task=task,
        model_name=model_name,
        fingerprint=plan.fingerprint,
        loaded=plan.loaded,
        requests=plan.requests,
        data=data,
        output=output,
        generation=plan.requests[0].generation if plan.requests else dict(task.generation),
        started=t0,
    )
    given = {r.id: input_kinds(adapter.region_kinds, r) for r in plan.requests}
    generated = GenerationOutcome(outputs=outputs, counts=counts, generate_s=generate_s, inputs=given)
    results = finish(inputs, generated, scoring)
    dist.shutdown(ctx)
    return results


def plan_run(
    task: Task,
    adapter: Adapter,
    data: Mapping[str, Path | None],
    limit: int | None,
    generation_overrides: Mapping[str, Any] | None,
    on_error: str,
) -> RunPlan:
    loaded = load(task, data, limit, on_error)
    requests = task.build_requests(loaded.samples, generation_overrides)
    check_serves(adapter, requests, task.name)  # before any model work
    fingerprint = {"name": adapter.name, **adapter.fingerprint()}
    keys = {r.id: prediction_key(task.card_hash, r, fingerprint) for r in requests}
    return RunPlan(loaded, requests, fingerprint, keys)


def resume(task: Task, plan: RunPlan, output: Path, ctx: dist.DistContext) -> set[str]:
    """Keys already answered by any earlier run, whatever its world size."""
    previous = {
        r.id: [prediction_key(h, r, plan.fingerprint) for h in task.store_hashes[1:]] for r in plan.requests
    }
    adopt_previous(output / STORE_FILE, plan.keys, previous)
    return merge_stores(output, STORE_FILE, set(plan.keys.values()), into_main=not ctx.distributed)


def generate_shard(
    adapter: Adapter,
    plan: RunPlan,
    done: set[str],
    output: Path,
    ctx: dist.DistContext,
    console: Console | None,
    on_error: str,
) -> ShardOutcome:
    """This rank's pending requests, answered into its store file."""
    mine = dist.shard(plan.requests, ctx)
    pending = [r for r in mine if plan.keys[r.id] not in done]
    store_name = STORE_FILE if not ctx.distributed else f"store.rank{ctx.rank}.sqlite"
    with PredictionStore(output / store_name) as store:
        label = "generating" if not ctx.distributed else f"rank {ctx.rank}/{ctx.world_size}"
        report = generate_into_store(adapter, pending, plan.keys, store, console, on_error, label)
        # Rank 0 may sit on another node, so a rank's rows travel to it rather than its file.
        rows = list(store.get_many(plan.keys[r.id] for r in mine).items()) if ctx.distributed else []
    # Counted per rank over its own shard: another rank may already have stored rows of this
    # very run by the time this one looked for finished ones, so `done` is no measure of reuse.
    return ShardOutcome(
        dict(report.skipped), len(pending) - len(report.skipped), len(mine) - len(pending), rows
    )


def gather(mine: ShardOutcome, plan: RunPlan, output: Path, ctx: dist.DistContext) -> ShardOutcome | None:
    """Every rank's outcome combined, on rank 0, its rows in the main store (None elsewhere).
    A single process's outcome is already complete."""
    if not ctx.distributed:
        return mine
    gathered: list[ShardOutcome] | None = dist.gather_to_main(mine, ctx)
    if gathered is None:
        return None
    skipped = dict(mine.skipped)
    with PredictionStore(output / STORE_FILE) as main_store:
        for shard in gathered:
            skipped.update(shard.skipped)
            for key, prediction in shard.rows:
                main_store.put(key, prediction)
    merge_stores(output, STORE_FILE, set(plan.keys.values()), into_main=True)
    return ShardOutcome(
        skipped=skipped,
        generated=sum(g.generated for g in gathered),
        reused=sum(g.reused for g in gathered),
    )


def collect(
    plan: RunPlan, adapter_name: str, output: Path, skipped: Mapping[str, str]
) -> dict[str, Prediction]:
    """Every answer, read back from the store and written to predictions.jsonl; an error
    when a request that was not skipped has none."""
    keys = plan.keys
    with PredictionStore(output / STORE_FILE) as store:
        stored = store.get_many(keys.values())
    missing = [r.id for r in plan.requests if keys[r.id] not in stored and r.id not in skipped]
    if missing:
        raise EvalkitError(
            f"adapter {adapter_name} returned no prediction for {len(missing)} request(s), "
            f"e.g. {missing[:3]}; finished ones are kept in {output / STORE_FILE}"
        )
    answered = [r for r in plan.requests if keys[r.id] in stored]
    write_predictions(output / PREDICTIONS_FILE, answered, [stored[keys[r.id]] for r in answered])
    return {r.id: stored[keys[r.id]] for r in answered}


def drop_unanswered(loaded: Loaded, requests: Sequence[Request], reasons: Sequence[tuple[str, str]]) -> None:
    """Samples of requests without an answer left out of scoring; each listed with why."""
    loaded.skipped.extend(f"{rid}: {why}" for rid, why in reasons)
    unanswered = {rid for rid, _ in reasons}
    gone = {r.sample_id for r in requests if r.id in unanswered}
    loaded.samples = [s for s in loaded.samples if s.id not in gone]


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
    outputs = read_predictions(predictions_path, {r.id: r for r in requests})
    missing = [r.id for r in requests if r.id not in outputs]
    if missing and on_error == "fail":
        raise PredictionsError(
            predictions_path,
            f"no prediction for {len(missing)} of {len(requests)} request ids "
            f"(first: {', '.join(missing[:5])}); --on-error skip scores the rest",
        )
    drop_unanswered(loaded, requests, [(rid, f"no prediction in {predictions_path}") for rid in missing])
    fingerprint = {"name": "predictions-file", "predictions_sha256": sha256_path(predictions_path)}
    loaded.files.append(predictions_path)
    inputs = RunInputs(
        task=task,
        model_name=model_name or predictions_path.stem,
        fingerprint=fingerprint,
        loaded=loaded,
        requests=requests,
        data=data,
        output=output,
        generation=dict(task.generation),
        started=t0,
    )
    return finish(inputs, GenerationOutcome(outputs=outputs), scoring)


def finish(run: RunInputs, outcome: GenerationOutcome, scoring: ScoringContext | None = None) -> Results:
    """Score the answers; write samples.jsonl and results.json."""
    loaded = run.loaded
    t_score = time.perf_counter()
    scored: ScoreResult = run.task.score(loaded.samples, outcome.outputs, run.data, scoring)
    score_s = time.perf_counter() - t_score
    rows = with_sample_blocks(scored.per_sample, loaded.samples, run.requests, outcome.inputs)
    write_jsonl(run.output / SAMPLES_FILE, rows)
    wall = time.perf_counter() - run.started
    n_generated = outcome.counts.generated if outcome.counts is not None else 0
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
        task_card=run.task.source,
        task_card_hash=run.task.card_hash,
        protocol_variant=run.task.variant,
        data_files={str(p): sha256_path(p) for p in loaded.files},
        adapter=run.fingerprint,
        generation=run.generation,
        deviations=scored.deviations,
        notes=loaded.notes,
        timings=Timings(
            wall_s=round(wall, 3),
            generate_s=round(outcome.generate_s, 3),
            score_s=round(score_s, 3),
            samples_per_s=round(n_generated / outcome.generate_s, 3) if outcome.generate_s > 0 else 0.0,
        ),
        # A predictions file has no such counts: its results keep the empty {} they always had.
        requests=outcome.counts.to_json() if outcome.counts is not None else {},
        command=redact_argv(sys.argv),
    )
    results = Results(
        task=run.task.name,
        model=run.model_name,
        metrics=scored.metrics,
        n=n,
        n_scored=n - n_failed,
        n_failed=n_failed,
        counts=counts,
        skipped=loaded.skipped,
        provenance=provenance,
        # A protocol may say which region kind it showed (extra "input"); regions the engine
        # converted (shown_record) say it instead.
        **{**scored.extra, **shown_record(run, outcome)},
    )
    results.write(run.output)
    return results
