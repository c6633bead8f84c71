"""``evalkit`` command line: tasks, models, samples, run, score (and the report and data commands)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from evalkit.cards import CardCatalog
from evalkit.cli_args import add_judge_args, add_task_args, kv_list, parse_gen, region_shown, scoring_context
from evalkit.data import commands as data_commands
from evalkit.errors import EvalkitError
from evalkit.report import commands as report_commands
from evalkit.results import Results

Handler = Callable[[argparse.Namespace], int]
_console = Console(stderr=True)


def _catalog(args: argparse.Namespace) -> CardCatalog:
    return CardCatalog(args.include)


def print_metrics(results: Results) -> None:
    table = Table(title=f"{results.task} — {results.model}", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in results.metrics.items():
        table.add_row(name, f"{value:.2f}")
    table.add_row("n", str(results.n))
    if results.n_failed:
        table.add_row("failed", str(results.n_failed))
    Console().print(table)
    # Metrics a task could not compute (e.g. mask recall without its phrase model): one line
    # each, saying what to pass.
    for line in (results.model_extra or {}).get("not_computed", {}).values():
        _console.print(line, style="yellow", markup=False, highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------- commands
def cmd_tasks(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    table = Table("task", "protocol", "metrics", "description")
    for name in catalog.names():
        card = catalog.load(name).card
        kind = "group: " + ", ".join(card.tasks) if card.is_group else card.protocol
        table.add_row(name, kind, ", ".join(card.metrics), card.description.strip()[:70])
    Console(width=160).print(table)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from evalkit.models import MODELS

    for name in MODELS.names():
        print(name)
    return 0


def cmd_samples(args: argparse.Namespace) -> int:
    from evalkit.task import get_task

    task = get_task(args.task, args.protocol, _catalog(args), region_shown(args))
    data = task.resolve_data(kv_list(args.data, "--data"), command="samples")
    read = task.load_samples(data)
    samples = read.samples[: args.limit] if args.limit is not None else read.samples
    requests = {r.sample_id: r for r in task.build_requests(samples)}
    out = sys.stdout
    for sample in samples:
        row = sample.to_json()
        for key, value in sample.meta.to_json().items():  # e.g. segment_id, at top level for jq/grep
            row.setdefault(key, value)
        if sample.id in requests:
            row["prompt"] = requests[sample.id].prompt
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return 0


def _output_dir(args: argparse.Namespace, model: str, task: str, group: bool) -> Path:
    if args.output is not None:
        return args.output / task if group else args.output
    suffix = "" if args.protocol == "default" else f"@{args.protocol}"
    return Path("evalkit_runs") / model / f"{task}{suffix}"


def cmd_run(args: argparse.Namespace) -> int:
    from evalkit.engine.runner import run_task
    from evalkit.models import build_adapter, parse_model_args
    from evalkit.task import get_task

    catalog = _catalog(args)
    members = catalog.expand(args.task)
    # Every member's card (and its protocol args) is checked before the model loads.
    tasks = [get_task(name, args.protocol, catalog, region_shown(args)) for name in members]
    adapter = build_adapter(args.model, parse_model_args(args.model_args))
    overrides = kv_list(args.data, "--data")
    try:
        for name, task in zip(members, tasks, strict=True):
            data = task.resolve_data(
                overrides
                if len(members) == 1
                else {k: v for k, v in overrides.items() if k in task.card.data}
            )
            out = _output_dir(args, args.model, name, len(members) > 1)
            results = run_task(
                task,
                adapter,
                args.model,
                data,
                out,
                args.limit,
                parse_gen(args.gen),
                _console,
                args.on_error,
                scoring=scoring_context(args),
            )
            if results is not None:  # None on the non-zero ranks of a torchrun
                print_metrics(results)
                _console.print(f"results: {out / 'results.json'}")
    finally:
        adapter.close()
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from evalkit.engine.runner import score_file
    from evalkit.task import get_task

    task = get_task(args.task, args.protocol, _catalog(args), region_shown(args))
    data = task.resolve_data(kv_list(args.data, "--data"), command="score")
    out = args.output or args.predictions.parent
    results = score_file(
        task, args.predictions, data, out, args.model_name, args.on_error, scoring_context(args)
    )
    print_metrics(results)
    _console.print(f"results: {out / 'results.json'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evalkit", description=__doc__)
    parser.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PATH",
        help="also load the task cards of this folder",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("tasks", help="list task cards").set_defaults(handler=cmd_tasks)
    sub.add_parser("models", help="list adapters").set_defaults(handler=cmd_models)

    p = sub.add_parser("samples", help="print a task's samples as JSON lines")
    add_task_args(p)
    p.add_argument("--limit", type=int)
    p.set_defaults(handler=cmd_samples)

    p = sub.add_parser("run", help="run a model on a task and score it (resumable)")
    p.add_argument("--model", required=True)
    p.add_argument("--model-args", default="", metavar="k=v,...")
    add_task_args(p)
    p.add_argument("--limit", type=int)
    p.add_argument(
        "--gen",
        action="append",
        metavar="KEY=VALUE",
        help="override a generation setting (max_new_tokens, temperature, seed)",
    )
    add_judge_args(p)
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("score", help="score a predictions JSONL ({id, text} per line)")
    add_task_args(p)
    p.add_argument("--predictions", required=True, type=Path)
    p.add_argument("--model-name", default=None, help="name for the results (default: file stem)")
    add_judge_args(p)
    p.set_defaults(handler=cmd_score)

    report_commands.register(sub)
    data_commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        handler: Handler = args.handler
        return handler(args)
    except EvalkitError as exc:
        # Plain text on one line: errors are grepped by scripts and CI logs.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _console.print("[yellow]interrupted[/]: finished predictions are kept in the store")
        return 130


if __name__ == "__main__":
    sys.exit(main())
