"""The command line's shared options and their parsing, for ``evalkit/cli.py`` and the
command groups that live beside their code (``evalkit/report/commands.py``).

Below both in the import graph: ``cli.py`` imports the command groups, the command groups
import this, so registering a group is a plain import and never a cycle.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from evalkit.errors import ConfigError
from evalkit.protocol import ScoringContext
from evalkit.shown_regions import RegionShown


def kv_list(values: Sequence[str] | None, flag: str, form: str = "KEY=VALUE") -> dict[str, str]:
    """Repeated ``KEY=VALUE`` options (``--data``, ``--gen``) as a dict."""
    out: dict[str, str] = {}
    for item in values or []:
        if "=" not in item:
            raise ConfigError(f"{flag} {item!r}: expected {form}")
        key, value = item.split("=", 1)
        out[key.strip()] = value
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# The generation settings ``--gen`` may override: what the adapters read (the Osprey
# adapter: max_new_tokens, temperature, seed, logprobs; the api adapter also top_p), each
# with its check. Anything else would be carried into the store key and ignored.
GEN_KEYS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "max_new_tokens": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "temperature": ("a number >= 0", lambda v: _is_number(v) and v >= 0),
    "seed": ("an integer", _is_int),
    "top_p": ("a number in (0, 1]", lambda v: _is_number(v) and 0 < v <= 1),
    "logprobs": ("true or false", lambda v: isinstance(v, bool)),
}


def parse_gen(values: Sequence[str] | None) -> dict[str, Any]:
    """``--gen KEY=VALUE`` values as JSON where they parse (numbers, booleans), else text;
    each key must be one the adapters read (:data:`GEN_KEYS`), with a value of its kind."""
    out: dict[str, Any] = {}
    for key, value in kv_list(values, "--gen").items():
        if key not in GEN_KEYS:
            close = difflib.get_close_matches(key, list(GEN_KEYS), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"--gen {key}={value}: unknown setting{hint} (known: {', '.join(GEN_KEYS)})")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        kind, ok = GEN_KEYS[key]
        if not ok(parsed):
            raise ConfigError(f"--gen {key}={value}: expected {kind}")
        out[key] = parsed
    return out


def positive_int(text: str) -> int:
    """argparse type of ``--limit``: an integer >= 1 (0 would score nothing, -1 would drop
    the last sample as a Python slice does)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def task_names(values: Sequence[str]) -> list[str]:
    """``--task a,b --task c`` (and ``--tasks``) -> ``[a, b, c]``: repeated and comma-separated
    names all count, in order; a name given twice runs once."""
    out: list[str] = []
    for value in values:
        for name in value.split(","):
            name = name.strip()
            if name and name not in out:
                out.append(name)
    if not out:
        raise ConfigError("--task: give a task or group name (see `evalkit tasks`)")
    return out


def add_task_args(p: argparse.ArgumentParser, several: bool = False) -> None:
    """The task options; ``several``: ``--task``/``--tasks`` take comma-separated names and
    may repeat (``run``), else exactly one task."""
    if several:
        p.add_argument(
            "--task",
            "--tasks",
            dest="task",
            action="append",
            required=True,
            metavar="TASK[,TASK...]",
            help="task or group names, comma-separated or repeated (see `evalkit tasks`)",
        )
    else:
        p.add_argument("--task", required=True, help="task or group name (see `evalkit tasks`)")
    p.add_argument("--data", action="append", metavar="KEY=PATH", help="override a data path")
    p.add_argument("--protocol", default="default", help="protocol variant: default | reference")
    p.add_argument(
        "--output", "--output_path", "--output-path", dest="output", type=Path, help="output directory"
    )
    p.add_argument(
        "--on-error",
        choices=("fail", "skip"),
        default="fail",
        help="bad input: stop with a clear error (default) or skip, count and list it",
    )
    g = p.add_argument_group("regions shown to the model (over the card's region_kind)")
    g.add_argument("--region-kind", metavar="KIND", help="box | point | scribble | mask")
    g.add_argument(
        "--region-method", metavar="M", help="tight_box | free_form | seeded | visual_centre | ..."
    )
    g.add_argument("--region-seed", type=int, metavar="N", help="seed of seeded methods (default 0)")


def add_judge_args(p: argparse.ArgumentParser) -> None:
    """The LLM judge of judged tasks (scored at `run` and `score` time). The key is never an
    option: it is read from an environment variable (EVALKIT_JUDGE_API_KEY, or the one
    --judge-api-key-env names; OPENAI_API_KEY only for OpenAI's own host)."""
    g = p.add_argument_group("LLM judge (judged tasks)")
    g.add_argument(
        "--judge-base-url", metavar="URL", help="OpenAI-compatible endpoint (or EVALKIT_JUDGE_BASE_URL)"
    )
    g.add_argument("--judge-model", help="judge model (default: the paper's judge)")
    g.add_argument("--judge-api-key-env", metavar="VAR", help="environment variable with the key")
    g.add_argument("--judge-concurrency", type=int, help="requests in flight (default 8)")
    g.add_argument("--judge-cache", metavar="PATH|off", help="judge response cache (SQLite)")


def scoring_context(args: argparse.Namespace) -> ScoringContext:
    """The ``--judge-*`` options, handed to scoring explicitly (never via the environment)."""
    from evalkit.judge.settings import JudgeOptions

    judge = JudgeOptions(
        base_url=args.judge_base_url,
        model=args.judge_model,
        api_key_env=args.judge_api_key_env,
        concurrency=args.judge_concurrency,
        cache=args.judge_cache,
    )
    return ScoringContext(judge=judge)


def region_shown(args: argparse.Namespace) -> RegionShown | None:
    """``--region-kind`` and friends, or None (the card decides)."""
    if args.region_kind is None:
        if args.region_method is not None or args.region_seed is not None:
            raise ConfigError("--region-method / --region-seed need --region-kind")
        return None
    try:
        return RegionShown.parse(args.region_kind, args.region_method, args.region_seed)
    except ValueError as exc:
        raise ConfigError(f"--region-kind: {exc}") from exc
