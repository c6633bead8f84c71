"""The data commands: ``evalkit data check TASK`` and ``evalkit data prepare DATASET SRC DEST``.

``evalkit/cli.py`` imports this module and calls :func:`register`, as it does the report
commands; the options both share live below both, in :mod:`evalkit.cli_args`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from evalkit.cards import CardCatalog
from evalkit.cli_args import kv_list
from evalkit.errors import ConfigError


# ---------------------------------------------------------------------- check
def cmd_check(args: argparse.Namespace) -> int:
    from evalkit.data.check import check_task

    catalog = CardCatalog(args.include)
    members = catalog.expand(args.task)
    overrides = kv_list(args.data, "--data", "KEY=PATH")
    loaded = [catalog.load(name) for name in members]
    if len(members) > 1:
        keys = {k for card in loaded for k in card.card.data}
        unknown = sorted(set(overrides) - keys)
        if unknown:
            raise ConfigError(f"no task of group {args.task} has data key(s) {unknown}")
    checks = [
        check_task(
            card,
            overrides if len(members) == 1 else {k: v for k, v in overrides.items() if k in card.card.data},
            args.images,
        )
        for card in loaded
    ]
    can_run = all(c.can_run for c in checks)
    if args.json:
        payload = {"task": args.task, "can_run": can_run, "tasks": [c.model_dump() for c in checks]}
        sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    else:
        console = _stdout_console()
        for check in checks:
            _render_check(check, console)
    return 0 if can_run else 1


def _stdout_console() -> Console:
    console = Console(highlight=False)
    # Piped output (CI logs, grep) gets whole lines rather than an 80-column wrap.
    return console if console.is_terminal else Console(highlight=False, width=220)


def _status(k: Any) -> Text:
    if k.found:
        return Text("found", style="green")
    if k.required:
        return Text("MISSING", style="bold red")
    return Text("generated" if k.path is None else "absent (optional)", style="dim")


def _records(k: Any) -> str:
    if k.records is None:
        return f"? (expected {k.expected_records:,})" if k.expected_records is not None else ""
    if k.expected_records is None:
        return f"{k.records:,}"
    mark = "" if k.records == k.expected_records else " ≠"
    return f"{k.records:,}{mark} (expected {k.expected_records:,})"


def _revision(k: Any) -> Text:
    if k.revision is not None:
        return Text(k.revision, style="green")
    if k.known_revision is False:
        return Text(f"unknown (sha256 {k.sha256[:12]}…)", style="yellow")
    if k.sha256 is not None:
        return Text(f"sha256 {k.sha256[:12]}…", style="dim")
    return Text("")


def _render_check(check: Any, console: Console) -> None:
    verdict = "[green]can run[/]" if check.can_run else "[bold red]cannot run[/]"
    table = Table(title=f"{check.task} ({check.card}) — {verdict}", title_justify="left")
    for column in ("key", "status", "path", "records", "revision", "download"):
        table.add_column(column, overflow="fold")
    for k in check.keys:
        path = Text(k.path or "(no default)")
        if k.source == "--data":
            path.append(" (--data)", style="dim")
        table.add_row(k.key, _status(k), path, _records(k), _revision(k), Text(k.url, style="dim"))
    console.print(table)
    say = lambda line, style="": console.print(Text(line, style=style), soft_wrap=True)  # noqa: E731
    for k in check.keys:
        if k.required and not k.found:
            where = k.path or "no default path"
            line = f"missing {k.key}: {where} ({'--data' if k.source == '--data' else 'default'})"
            say(line + (f"; download: {k.url}" if k.url else ""), "red")
            if k.description:
                say(f"  {k.key}: {k.description}", "dim")
            if k.hint:
                say(f"  {k.hint}", "dim")
        elif k.note and not k.note.startswith("these bytes"):  # said among the warnings
            say(f"{k.key}: {k.note}", "dim")
    if check.samples is not None:
        say(f"reader: {check.samples:,} samples" + "".join(f"; {n}" for n in check.reader_notes))
    if check.images_checked:
        say(f"images: {check.images_opened} of {check.images_checked} sampled image files open")
    for line in check.warnings:
        say(f"warning: {line}", "yellow")
    for line in check.problems:
        if line.split(":")[0] not in {k.key for k in check.keys if not k.found}:
            say(f"problem: {line}", "red")
    if check.can_run:
        say(f"{check.task} can run.", "green")
    else:
        say(f"{check.task} cannot run: {len(check.problems)} problem(s) above.", "bold red")


# ---------------------------------------------------------------------- prepare
def cmd_prepare(args: argparse.Namespace) -> int:
    from evalkit.data.prepare import PREPARERS, PrepareOptions, get_preparer, print_result, stderr_console

    console = stderr_console()
    if args.dataset == "list":
        for name in PREPARERS.names():
            preparer = get_preparer(name)
            print(f"{name:12s} {preparer.summary}\n{'':12s} SRC: {preparer.source}")
        return 0
    if args.src is None or args.dest is None:
        raise ConfigError("evalkit data prepare DATASET SRC DEST (or `evalkit data prepare list`)")
    preparer = get_preparer(args.dataset)
    options = PrepareOptions(
        split=args.split,
        jobs=args.jobs,
        seed=args.seed,
        coco=args.coco,
        force=args.force,
        progress=not args.no_progress,
    )
    preparer.check_options(options)
    if not args.src.exists():
        raise ConfigError(f"SRC {args.src}: not found ({preparer.source})")
    args.dest.mkdir(parents=True, exist_ok=True)
    try:
        result = preparer.prepare(args.src, args.dest, options, console)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: what was converted is kept; rerun the same command to resume")
        return 130
    print_result(result, console)
    return 0


def register(sub: Any) -> None:
    data = sub.add_parser("data", help="check a task's data files; prepare official downloads")
    dsub = data.add_subparsers(dest="data_command", required=True)

    p = dsub.add_parser(
        "check",
        help="can TASK run on its data? found, sha256 / known revision, record counts, images",
        description="Exit 0 only if the task can run: every key it needs is found, its reader "
        "loads the data and the sampled images open.",
    )
    p.add_argument("task", metavar="TASK", help="task or group name (see `evalkit tasks`)")
    p.add_argument("--data", action="append", metavar="KEY=PATH", help="override a data path")
    p.add_argument("--images", type=int, default=8, metavar="N", help="image files to open (default 8)")
    p.add_argument("--json", action="store_true", help="print the check as JSON")
    p.set_defaults(handler=cmd_check)

    p = dsub.add_parser(
        "prepare",
        help="convert an official download into the files a task reads (`prepare list`: the datasets)",
        description="Parallel over images, with a progress bar; rerun the same command to resume.",
    )
    p.add_argument(
        "dataset", metavar="DATASET", help="ade20k | cityscapes | lvis-1k | paco-1k | refcocog | list"
    )
    p.add_argument("src", metavar="SRC", type=Path, nargs="?", help="the official download")
    p.add_argument("dest", metavar="DEST", type=Path, nargs="?", help="where to write (may be SRC)")
    p.add_argument("--split", help="split to convert (default val)")
    p.add_argument("--jobs", type=int, default=0, metavar="N", help="processes (default: one per CPU)")
    p.add_argument("--seed", type=int, default=0, help="seed of seeded choices (default 0, as the cards)")
    p.add_argument("--coco", type=Path, metavar="DIR", help="COCO 2017 root (train2017/, val2017/)")
    p.add_argument("--force", action="store_true", help="start over instead of resuming")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or lines")
    p.set_defaults(handler=cmd_prepare)
