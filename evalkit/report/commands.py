"""The report commands: ``evalkit leaderboard``, ``evalkit compare``, ``evalkit report``.

``evalkit/cli.py`` imports this module and calls :func:`register`; the options both share
live below both, in :mod:`evalkit.cli_args`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from evalkit.cli_args import kv_list
from evalkit.errors import ConfigError

_console = Console(stderr=True)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from evalkit.report.baselines import default_path, load_baselines
    from evalkit.report.leaderboard import build_tables, render_markdown, to_frame
    from evalkit.report.runs import load_runs

    runs = load_runs(args.results)
    path = None if args.no_baselines else (args.baselines or default_path())
    if path is None and not args.no_baselines:
        _console.print(
            "[yellow]note[/]: no baselines file found; showing runs only "
            "(--baselines FILE or $EVALKIT_BASELINES)"
        )
    tables = build_tables(runs, load_baselines(path), args.all_boards)
    if args.plots and (args.out is None or args.format != "md"):
        raise ConfigError("--plots writes PNGs next to the Markdown: give --out FILE.md")
    if args.format == "md":
        plots: dict[str, str] = {}
        if args.plots:
            from evalkit.report.plots import board_chart

            for table in tables:
                png = args.out.with_name(f"{args.out.stem}.{table.board.name}.png")
                args.out.parent.mkdir(parents=True, exist_ok=True)
                board_chart(table, png)
                plots[table.board.name] = png.name
        text = render_markdown(tables, reproducible=args.reproducible, title=args.title, plots=plots)
    else:
        frame = to_frame(tables)
        if args.format == "csv":
            text = frame.to_csv(index=False, lineterminator="\n")
        else:
            text = (
                json.dumps(json.loads(frame.to_json(orient="records")), indent=2, ensure_ascii=False) + "\n"
            )
    _write(text, args.out)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from evalkit.report.compare import compare_runs, parse_tolerances, render_markdown
    from evalkit.report.runs import load_run

    comparison = compare_runs(
        load_run(args.candidate),
        load_run(args.baseline),
        parse_tolerances(args.tolerance),
        force=args.force,
    )
    sys.stdout.write(render_markdown(comparison))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(comparison.to_json(), indent=2) + "\n", "utf-8")
    return 1 if comparison.regressed else 0


def cmd_report(args: argparse.Namespace) -> int:
    from evalkit.report.html_report import write_report
    from evalkit.report.runs import load_run

    run = load_run(args.run_dir)
    out = args.out or run.folder / "report.html"
    overrides = kv_list(args.data, "--data", "KEY=PATH")
    write_report(run, out, overrides, args.images, args.max_cards)
    _console.print(f"report: {out}")
    return 0


def _write(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, "utf-8")
    _console.print(f"wrote {out}")


def register(sub: Any) -> None:
    p = sub.add_parser("leaderboard", help="Markdown leaderboards: runs beside the papers' numbers")
    p.add_argument(
        "results",
        nargs="*",
        type=Path,
        metavar="RESULTS",
        help="results.json files or run folders (folders are searched)",
    )
    p.add_argument("--out", type=Path, help="write here instead of stdout")
    p.add_argument("--format", choices=("md", "csv", "json"), default="md")
    p.add_argument("--plots", action="store_true", help="a PNG bar chart per board next to --out")
    p.add_argument("--baselines", type=Path, help="published numbers (default: leaderboards/baselines.yaml)")
    p.add_argument("--no-baselines", action="store_true", help="runs only")
    p.add_argument("--all-boards", action="store_true", help="also boards no run appears on")
    p.add_argument(
        "--reproducible",
        action="store_true",
        help="leave out run dates and git commits (for committed, regenerated boards)",
    )
    p.add_argument("--title", default="evalkit leaderboard")
    p.set_defaults(handler=cmd_leaderboard)

    p = sub.add_parser("compare", help="CI gate: exit 1 when CANDIDATE regresses against BASELINE")
    p.add_argument("candidate", type=Path, metavar="CANDIDATE", help="run folder or results.json")
    p.add_argument("baseline", type=Path, metavar="BASELINE", help="run folder or results.json")
    p.add_argument(
        "--tolerance",
        action="append",
        metavar="METRIC=DELTA",
        help="allowed drop in points for a metric (repeatable)",
    )
    p.add_argument("--force", action="store_true", help="compare even when task card or data hashes differ")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the comparison as JSON")
    p.set_defaults(handler=cmd_compare)

    p = sub.add_parser("report", help="a self-contained HTML page about one run")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--out", type=Path, help="HTML file (default: RUN_DIR/report.html)")
    p.add_argument("--images", type=Path, help="the images folder, if not where the run read it")
    p.add_argument("--data", action="append", metavar="KEY=PATH", help="override a data path")
    p.add_argument("--max-cards", type=int, default=200, help="gallery size (worst first)")
    p.set_defaults(handler=cmd_report)
