"""``evalkit`` command line: tasks, models, samples, run, score (and the report and data commands)."""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from rich.console import Console
from rich.table import Table

import evalkit
from evalkit.cards import CardCatalog
from evalkit.cli_args import (
    add_judge_args,
    add_task_args,
    kv_list,
    parse_gen,
    positive_int,
    region_shown,
    scoring_context,
    task_names,
)
from evalkit.data import commands as data_commands
from evalkit.errors import ConfigError, EvalkitError
from evalkit.report import commands as report_commands
from evalkit.results import Results

if TYPE_CHECKING:
    from evalkit.task import Task

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
    rows: list[dict[str, Any]] = []
    for name in catalog.names():
        loaded = catalog.load(name)
        card = loaded.card
        rows.append(
            {
                "task": name,
                "family": loaded.family,
                "group": list(card.tasks) if card.is_group else None,
                "protocol": None if card.is_group else card.protocol,
                "metrics": list(card.metrics),
                "paper": card.paper,
                "data": sorted(card.data),
                "description": " ".join(card.description.split()),
            }
        )
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        return 0
    console = Console()
    # The description gets about two lines of what the terminal leaves, cut at a word.
    width = 2 * max(24, console.width - 70)
    table = Table("task", "protocol", "metrics", "description")
    table.columns[0].no_wrap = True  # a task name is what users copy: never cut or wrapped
    for row in rows:
        kind = "group: " + ", ".join(row["group"]) if row["group"] else str(row["protocol"])
        description = textwrap.shorten(str(row["description"]), width=width, placeholder=" …")
        table.add_row(str(row["task"]), kind, ", ".join(row["metrics"]), description)
    console.print(table)
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
    members = expand_tasks(catalog, task_names(args.task))
    # Everything that can be checked without the model is checked before it loads (a 7B load
    # takes minutes): every member's card and protocol args, every data file, the judge.
    tasks = [get_task(name, args.protocol, catalog, region_shown(args)) for name in members]
    datas = resolve_all(tasks, kv_list(args.data, "--data"))
    scoring = scoring_context(args)
    for task in tasks:
        task.protocol.check_ready(scoring)
    generation = parse_gen(args.gen)
    adapter = build_adapter(args.model, model_args(args, parse_model_args(args.model_args)))
    try:
        for name, task, data in zip(members, tasks, datas, strict=True):
            out = _output_dir(args, args.model, name, len(members) > 1)
            results = run_task(
                task,
                adapter,
                args.model,
                data,
                out,
                args.limit,
                generation,
                _console,
                args.on_error,
                scoring=scoring,
            )
            if results is not None:  # None on the non-zero ranks of a torchrun
                print_metrics(results)
                _console.print(f"results: {out / 'results.json'}")
    finally:
        adapter.close()
    return 0


def expand_tasks(catalog: CardCatalog, names: Sequence[str]) -> list[str]:
    """Tasks and groups -> the tasks to run, in order, each once."""
    out: list[str] = []
    for name in names:
        out.extend(m for m in catalog.expand(name) if m not in out)
    return out


def resolve_all(tasks: Sequence[Task], overrides: dict[str, str]) -> list[dict[str, Path | None]]:
    """Each task's data paths; one error naming every missing file of every task. With
    several tasks each takes the ``--data`` keys it has, and a key none has is an error."""
    from evalkit.task import MissingDataError

    if len(tasks) > 1:
        known = {k for t in tasks for k in t.card.data}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(
                f"--data {unknown[0]}: none of the tasks {', '.join(t.name for t in tasks)} has this "
                f"data key (their keys: {', '.join(sorted(known))})"
            )
    out: list[dict[str, Path | None]] = []
    missing: list[str] = []
    for task in tasks:
        given = overrides if len(tasks) == 1 else {k: v for k, v in overrides.items() if k in task.card.data}
        try:
            out.append(task.resolve_data(given))
        except MissingDataError as exc:
            missing.append(str(exc))
    if missing:
        raise ConfigError(" || ".join(missing))
    return out


def model_args(args: argparse.Namespace, given: dict[str, str]) -> dict[str, str]:
    """``--model-args`` plus the lm-eval style ``--batch_size`` / ``--device`` options."""
    out = dict(given)
    for key in ("batch_size", "device"):
        value = getattr(args, key, None)
        if value is None:
            continue
        if key in out and out[key] != str(value):
            raise ConfigError(f"--{key} {value} and --model-args {key}={out[key]} disagree: give one")
        out[key] = str(value)
    return out


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


class Parser(argparse.ArgumentParser):
    """argparse with a "did you mean" for a misspelt option (``--taks``) or command."""

    given: Sequence[str] = ()

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self.given = list(sys.argv[1:] if args is None else args)  # for error()'s suggestion
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}{suggestion(self, message)}\n")


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    found: list[str] = []
    for action in parser._actions:
        found += [o for o in action.option_strings if o.startswith("--")]
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _option_strings(sub)
    return sorted(set(found))


def suggestion(parser: argparse.ArgumentParser, message: str) -> str:
    """``; did you mean --task?`` for the first unknown option (or command) of ``message``."""
    known = _option_strings(parser)
    if message.startswith("unrecognized arguments: "):
        words = [w.split("=", 1)[0] for w in message.split(": ", 1)[1].split() if w.startswith("-")]
    elif message.startswith("the following arguments are required: "):
        # `--taks x` leaves --task missing: the misspelt option is among the words given
        given = getattr(parser, "given", ())
        words = [w.split("=", 1)[0] for w in given if w.startswith("--") and w.split("=", 1)[0] not in known]
    elif message.startswith("argument command: invalid choice: "):
        words = [message.split("'")[1]] if "'" in message else []
        known = [a for x in parser._actions if isinstance(x, argparse._SubParsersAction) for a in x.choices]
    else:
        return ""
    for word in words:
        close = difflib.get_close_matches(word, known, n=2, cutoff=0.6)
        if close:
            return f" (did you mean {' or '.join(close)}?)"
    return ""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="evalkit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"evalkit {evalkit.__version__}")
    parser.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PATH",
        help="also load the task cards of this folder",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tasks", help="list task cards")
    p.add_argument("--json", action="store_true", help="every card's name, metrics, data keys as JSON")
    p.set_defaults(handler=cmd_tasks)
    sub.add_parser("models", help="list adapters").set_defaults(handler=cmd_models)

    p = sub.add_parser("samples", help="print a task's samples as JSON lines")
    add_task_args(p)
    p.add_argument("--limit", type=positive_int)
    p.set_defaults(handler=cmd_samples)

    p = sub.add_parser("run", help="run a model on a task and score it (resumable)")
    p.add_argument("--model", required=True)
    p.add_argument("--model-args", "--model_args", dest="model_args", default="", metavar="k=v,...")
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=positive_int,
                   help="the adapter's batch_size model arg")  # fmt: skip
    p.add_argument("--device", help="the adapter's device model arg (cpu, cuda, cuda:1)")
    add_task_args(p, several=True)
    p.add_argument("--limit", type=positive_int, help="only the first N samples (for a quick look)")
    p.add_argument(
        "--gen",
        action="append",
        metavar="KEY=VALUE",
        help="override a generation setting (max_new_tokens, temperature, seed, top_p, logprobs)",
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
    except BrokenPipeError:
        # `evalkit samples ... | head`: the reader left; stop quietly (no traceback), and keep
        # Python from complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as other command-line tools end


if __name__ == "__main__":
    sys.exit(main())
