"""Secrets out of what evalkit records: URLs' passwords and secret query values, secret-named
``k=v`` arguments, and keys pasted where a variable *name* belongs.

Provenance (``results.json``'s command line, the judge's and the ``api`` adapter's
``base_url``) and the HTML report are shared with others; a key inside a base URL
(``http://user:KEY@host/v1``, ``...?api-key=KEY``) must never reach them. Only what is
*recorded* is redacted: the settings that reach the network (and the cache keys built from
them) keep the URL as given.

Low level on purpose: nothing here imports the rest of evalkit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# Words that make a key=value (a model arg, a query parameter) a secret.
SECRET_WORDS = ("key", "token", "secret", "passw", "credential", "signature")
# Whole names that are secrets too, though too short to look for inside other names.
SECRET_NAMES = frozenset({"sig", "auth", "authorization", "code", "session", "sid"})
# A URL inside arbitrary text: scheme://, then anything up to white space, a quote or a comma
# (model args are comma-separated).
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s,'\"<>]+")
# What an environment variable's name looks like (POSIX): anything else is taken for a key.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_secret_name(name: str) -> bool:
    """``api_key``, ``access_token``, ``sig``... (case-insensitive)."""
    lowered = name.lower().lstrip("-")
    return lowered in SECRET_NAMES or any(word in lowered for word in SECRET_WORDS)


def is_env_name(text: str) -> bool:
    """Whether ``text`` can be the name of an environment variable (a pasted key cannot)."""
    return _ENV_NAME.fullmatch(text) is not None


def redact_url(url: str) -> str:
    """``url`` with the password of its userinfo (or a lone user, which is often a token)
    and the values of secret-named query parameters replaced by ``***``.

    Example:
        >>> redact_url("http://me:sk-1@host:8000/v1?api-key=sk-2&x=1")
        'http://me:***@host:8000/v1?api-key=***&x=1'
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return MASK  # not a URL we can take apart: record nothing of it
    netloc, query = parts.netloc, parts.query
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
        netloc = f"{user}:{MASK}@{host}" if user else f"{MASK}@{host}"
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(is_secret_name(k) for k, _ in pairs):
        query = urlencode([(k, MASK if is_secret_name(k) else v) for k, v in pairs], safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # nothing secret: the text as given (store keys built on it stay the same)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Every URL inside ``text`` passed through :func:`redact_url`."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line as provenance may record it: URLs redacted (:func:`redact_text`),
    secret-named ``k=v`` parts (``--model-args api_key=...``) masked, and the value of an
    option that takes a variable *name* (``--judge-api-key-env``, ``api_key_env=``) masked
    when it is not one, because then it is a pasted key.

    Example:
        >>> redact_argv(["--judge-api-key-env", "sk-live-1", "--model-args", "token=x,n=1"])
        ['--judge-api-key-env', '***', '--model-args', 'token=***,n=1']
    """
    out: list[str] = []
    takes_name = False
    for arg in argv:
        if takes_name:
            out.append(arg if is_env_name(arg) else MASK)
            takes_name = False
            continue
        if arg.startswith("--") and "=" in arg:
            flag, value = arg.split("=", 1)
            if flag == "--judge-api-key-env":
                out.append(f"{flag}={value if is_env_name(value) else MASK}")
                continue
        if arg == "--judge-api-key-env":
            takes_name = True
            out.append(arg)
            continue
        parts = []
        for part in redact_text(arg).split(","):
            key, eq, value = part.partition("=")
            if eq and key.endswith("_env") and not key.startswith("-"):
                parts.append(f"{key}={value if is_env_name(value) else MASK}")
            elif eq and is_secret_name(key) and not key.endswith("_env") and not key.startswith("-"):
                parts.append(f"{key}={MASK}")
            else:
                parts.append(part)
        out.append(",".join(parts))
    return out
