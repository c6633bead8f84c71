"""Where an OpenAI-compatible endpoint is and how hard to try it.

Settings come from (later wins) the task card's defaults, the environment (a user-facing
default only) and :class:`JudgeOptions` — the CLI's ``--judge-*`` options, which reach
scoring explicitly in the engine's scoring context.

The API key is never a setting: only the *name* of the environment variable that holds it
is. The key is read at the moment the client is built and is never written, logged, hashed
into a cache key or copied into results.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from evalkit.errors import ConfigError
from evalkit.files import cache_dir
from evalkit.redact import is_env_name, redact_url

OPENAI_BASE_URL = "https://api.openai.com/v1"
# Local servers (vLLM, llama.cpp) accept any key; the client library insists on one.
PLACEHOLDER_KEY = "EMPTY"

ENV_BASE_URL = "EVALKIT_JUDGE_BASE_URL"
ENV_MODEL = "EVALKIT_JUDGE_MODEL"
ENV_KEY_VAR = "EVALKIT_JUDGE_API_KEY_ENV"
ENV_CONCURRENCY = "EVALKIT_JUDGE_CONCURRENCY"
ENV_TIMEOUT = "EVALKIT_JUDGE_TIMEOUT"
ENV_MAX_ATTEMPTS = "EVALKIT_JUDGE_MAX_ATTEMPTS"
ENV_BACKOFF_BASE = "EVALKIT_JUDGE_BACKOFF_BASE"
ENV_BACKOFF_MAX = "EVALKIT_JUDGE_BACKOFF_MAX"
ENV_CACHE = "EVALKIT_JUDGE_CACHE"
DEFAULT_KEY_VARS = ("EVALKIT_JUDGE_API_KEY", "OPENAI_API_KEY")
# OPENAI_API_KEY is OpenAI's: sent only to OpenAI's own host unless a user names it.
OPENAI_KEY_VAR = "OPENAI_API_KEY"
OPENAI_HOSTS = frozenset({"api.openai.com"})


def is_openai_host(base_url: str) -> bool:
    try:
        host = urlsplit(base_url).hostname
    except ValueError:
        return False
    return host in OPENAI_HOSTS


def key_vars_for(base_url: str, named: str | None, own: str, flag: str) -> tuple[str, ...]:
    """The environment variables whose key may be sent to ``base_url``: the one the user
    named (``flag``), else the endpoint kind's ``own`` variable, plus ``OPENAI_API_KEY``
    only for OpenAI's host: a default key never travels to a host nobody chose it for.

    A ``named`` value that cannot be a variable's name is a key pasted in the wrong place:
    an error that does not repeat it (so no log or results file records it)."""
    if named is not None:
        if not is_env_name(named):
            raise ConfigError(
                f"{flag} takes the NAME of an environment variable holding the key "
                f"(e.g. {own}), not the key itself; the value given was not recorded"
            )
        return (named,)
    return (own, OPENAI_KEY_VAR) if is_openai_host(base_url) else (own,)


@dataclass(frozen=True)
class ClientSettings:
    """One endpoint and the retry policy used against it."""

    base_url: str
    model: str
    api_key_vars: tuple[str, ...] = DEFAULT_KEY_VARS  # first one that is set wins
    max_concurrency: int = 8
    timeout_s: float = 120.0
    max_attempts: int = 6
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    retry_after_max_s: float = 300.0
    cache_path: Path | None = None  # None: no cache

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {self.max_concurrency}")
        if self.max_attempts < 1:
            raise ConfigError(f"max attempts must be >= 1, got {self.max_attempts}")
        if self.timeout_s <= 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {self.timeout_s}")

    def api_key(self) -> str:
        for name in self.api_key_vars:
            value = os.environ.get(name)
            if value:
                return value
        return PLACEHOLDER_KEY

    def has_key(self) -> bool:
        return self.api_key() != PLACEHOLDER_KEY

    def describe(self) -> dict[str, Any]:
        """What results may record: everything but the key (only its variable's name)."""
        out = asdict(self)
        out["base_url"] = redact_url(self.base_url)  # a key inside the URL is never written
        out["cache_path"] = str(self.cache_path) if self.cache_path else None
        out["api_key_vars"] = list(self.api_key_vars)
        return out


def cache_path_from(
    value: str | None, default_name: str, environ: Mapping[str, str] | None = None
) -> Path | None:
    """A response cache's path: ``value`` as given, ``off`` for none, or by default
    ``default_name`` in evalkit's cache folder (:func:`evalkit.files.cache_dir`)."""
    if value is None or value == "":
        return cache_dir(environ) / default_name
    if value.lower() in {"off", "none", "0", "false"}:
        return None
    return Path(value).expanduser()


# ClientSettings' numeric fields and their types, for settings given as text.
NUMERIC_FIELDS: dict[str, type] = {
    "max_concurrency": int,
    "timeout_s": float,
    "max_attempts": int,
    "backoff_base_s": float,
    "backoff_max_s": float,
}
_ENV_NUMBERS = {
    "max_concurrency": ENV_CONCURRENCY,
    "timeout_s": ENV_TIMEOUT,
    "max_attempts": ENV_MAX_ATTEMPTS,
    "backoff_base_s": ENV_BACKOFF_BASE,
    "backoff_max_s": ENV_BACKOFF_MAX,
}


def parse_numbers(texts: Mapping[str, tuple[str, str | None]]) -> dict[str, Any]:
    """``{field: (name, text)}`` -> ``{field: number}`` for the :data:`NUMERIC_FIELDS` given.

    A ``None`` text is left out, so :class:`ClientSettings`' default applies; ``name`` is
    what the :class:`ConfigError` for an unparsable text calls the setting."""
    out: dict[str, Any] = {}
    for field_name, (name, text) in texts.items():
        if text is None:
            continue
        kind = NUMERIC_FIELDS[field_name]
        try:
            out[field_name] = kind(text)
        except ValueError as exc:
            raise ConfigError(f"{name}={text!r} is not a {kind.__name__}") from exc
    return out


@dataclass(frozen=True)
class JudgeOptions:
    """The judge options a command was given (``--judge-*``); None = not given."""

    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    concurrency: int | None = None
    cache: str | None = None


def judge_settings(
    default_model: str, options: JudgeOptions | None = None, environ: Mapping[str, str] | None = None
) -> ClientSettings:
    """The judge's settings for scoring: ``options`` over the environment over card defaults."""
    opts = options or JudgeOptions()
    env = os.environ if environ is None else environ
    key_var = opts.api_key_env or env.get(ENV_KEY_VAR) or None
    base_url = opts.base_url or env.get(ENV_BASE_URL)
    flag = "--judge-api-key-env" if opts.api_key_env else ENV_KEY_VAR
    key_vars = key_vars_for(base_url or OPENAI_BASE_URL, key_var, DEFAULT_KEY_VARS[0], flag)
    texts = {f: (f"environment variable {var}", env.get(var) or None) for f, var in _ENV_NUMBERS.items()}
    if opts.concurrency is not None:
        texts["max_concurrency"] = ("--judge-concurrency", str(opts.concurrency))
    numbers = parse_numbers(texts)
    cache = opts.cache if opts.cache is not None else env.get(ENV_CACHE)
    settings = ClientSettings(
        base_url=base_url or OPENAI_BASE_URL,
        model=opts.model or env.get(ENV_MODEL) or default_model,
        api_key_vars=key_vars,
        cache_path=cache_path_from(cache, "judge_cache.sqlite", env),
        **numbers,
    )
    if not base_url and not settings.has_key():
        raise ConfigError(
            "this task is scored by an LLM judge: give --judge-base-url URL (or "
            f"{ENV_BASE_URL}) for a local OpenAI-compatible server, or put an OpenAI key in "
            f"{' or '.join(key_vars)}"
        )
    return settings
