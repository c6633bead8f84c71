"""Regenerate ``leaderboards/shapes.md``: two models on the embedded shapes benchmark.

Default: the bundled tiny Osprey (``evalkit run --model osprey-tiny``) on every shapes task,
beside a deterministic replay baseline on ``shapes_cls``, ``replay-sloppy`` (often the shape
without its colour, sometimes a wrong shape), scored with ``evalkit score``.
``--model NAME[:k=v,...]`` and ``--replay careful|sloppy`` (both repeatable) choose others.

Everything goes through the ``evalkit`` CLI entry point, and the board is written with
``--reproducible``, so the same inputs give the same bytes on every machine:

    python leaderboards/make_shapes.py                 # rewrite leaderboards/shapes.md
    python leaderboards/make_shapes.py --out /tmp/s.md # check: diff against the committed one
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TITLE = "evalkit leaderboard · shapes (the embedded default benchmark)"


def _bucket(sample_id: str, salt: str, n: int) -> int:
    """A stable pseudo-random choice per sample (same on every machine and Python)."""
    return int(hashlib.sha256(f"{salt}:{sample_id}".encode()).hexdigest(), 16) % n


def replay_answers(style: str) -> list[dict[str, str]]:
    from evalkit.tasks.shapes.scenes import COLOURS, SHAPES, category_phrase

    from evalkit.task import get_task

    task = get_task("shapes_cls")
    samples = task.load_samples(task.resolve_data({}, command="score")).samples
    colours, shapes = sorted(COLOURS), sorted(SHAPES)
    rows = []
    for s in samples:
        category = str(s.target)
        answer = category_phrase(category)
        if category.startswith("house:"):
            part = category.split(":", 1)[1]
            if style == "sloppy" and _bucket(s.id, "house", 3) == 0:
                answer = "house"  # names the object, not the part
            elif style == "sloppy" and _bucket(s.id, "house", 3) == 1:
                answer = part
        else:
            colour, shape = category.split("_", 1)
            k = _bucket(s.id, style, 20)
            if style == "careful" and k < 2:
                answer = f"{colours[(colours.index(colour) + 1) % len(colours)]} {shape}"
            elif style == "sloppy" and k < 9:
                answer = shape
            elif style == "sloppy" and k < 13:
                answer = f"{colour} {shapes[(shapes.index(shape) + 1) % len(shapes)]}"
        rows.append({"id": s.id, "text": answer})
    return rows


def evalkit(*args: str) -> None:
    """``evalkit ARGS`` through the real CLI entry point (in this process: one model load)."""
    from evalkit.cli import main

    with contextlib.redirect_stdout(io.StringIO()):
        code = main(list(args))
    if code != 0:
        raise SystemExit(f"failed ({code}): evalkit {' '.join(args)}")


# The views the committed board was made with; the board stays byte for byte when a new
# shapes task arrives (shapes_choice, likelihood ranking: add it with --task shapes_choice).
# RegionGPT's closed-set views joined it with their issue (15).
BOARD_TASKS = (
    "shapes_cap",
    "shapes_cls",
    "shapes_ovseg",
    "shapes_pope",
    "shapes_region_cls",
    "shapes_rec_candidates",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "leaderboards" / "shapes.md")
    parser.add_argument("--workdir", type=Path, help="keep the runs here (default: a temp dir)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME[:k=v,...]")
    parser.add_argument("--replay", action="append", default=[], choices=("careful", "sloppy"))
    parser.add_argument(
        "--task", action="append", default=[], help="another shapes task to run the models on"
    )
    args = parser.parse_args(argv)
    if not args.model and not args.replay:
        args.model, args.replay = ["osprey-tiny"], ["sloppy"]
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="evalkit-shapes-") as tmp:
        work = args.workdir or Path(tmp)
        for spec in args.model:
            name, _, model_args = spec.partition(":")
            for task in [*BOARD_TASKS, *args.task]:
                evalkit(
                    "run",
                    "--model",
                    name,
                    "--model-args",
                    model_args,
                    "--task",
                    task,
                    "--output",
                    str(work / name / task),
                )
        for style in args.replay:
            name = f"replay-{style}"
            preds = work / f"{name}.jsonl"
            preds.parent.mkdir(parents=True, exist_ok=True)
            preds.write_text("".join(json.dumps(r) + "\n" for r in replay_answers(style)))
            evalkit(
                "score",
                "--task",
                "shapes_cls",
                "--predictions",
                str(preds),
                "--model-name",
                name,
                "--output",
                str(work / name / "shapes_cls"),
            )
        evalkit(
            "leaderboard",
            str(work),
            "--reproducible",
            "--title",
            TITLE,
            "--out",
            str(args.out.resolve()),
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
