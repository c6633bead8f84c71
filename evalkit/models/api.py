"""``api``: any OpenAI-compatible vision-language endpoint as the model under test.

Each request becomes one user message: the prompt, then the image with the request's regions
drawn on it as Set-of-Marks (:mod:`evalkit.render`, mark ``N`` = the N-th region). In the
prompt the ``<image>`` placeholder is removed and the i-th ``<region>`` becomes
``region {i}`` (1-based), naming the mark. Generation settings map to ``temperature``,
``max_tokens`` (from ``max_new_tokens``) and ``seed``.

Model args: ``base_url`` and ``model`` (required), ``api_key_env`` (name of the variable with
the key; default ``EVALKIT_API_KEY``, and ``OPENAI_API_KEY`` only when ``base_url`` is
OpenAI's own host; the key itself is never an argument), ``max_concurrency``, ``timeout``,
``max_attempts``, ``backoff_base``, ``backoff_max``, ``detail`` (image detail, default
``high``), ``cache`` (a path, or ``off``; default ``api_cache.sqlite`` in the cache folder,
:func:`evalkit.files.cache_dir`: ``$EVALKIT_CACHE``, else ``~/.cache/evalkit``).

A request that still fails after ``max_attempts`` is not answered: the engine reports it and
keeps every finished answer, so the next run retries only the failures.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from evalkit.errors import ConfigError
from evalkit.hashing import sha256_bytes
from evalkit.judge.client import ChatCall, ChatClient
from evalkit.judge.prompts import png_data_url
from evalkit.judge.settings import ClientSettings, cache_path_from, key_vars_for, parse_numbers
from evalkit.models import Adapter, register_model
from evalkit.records import IMAGE_PLACEHOLDER, REGION_PLACEHOLDER, Prediction, Request
from evalkit.redact import redact_url
from evalkit.render import marks_png

RENDER_VERSION = "som-1"  # bump when the drawing changes: cached answers depend on it
# Some Osprey prompts put a stray "." after the placeholder ("<image>.\n"): drop it too.
_IMAGE_LINE = re.compile(re.escape(IMAGE_PLACEHOLDER) + r"\.?\n?")


def rewrite_prompt(prompt: str, n_regions: int) -> str:
    """``<image>`` (and the newline after it) removed; i-th ``<region>`` -> ``region i``."""
    parts = _IMAGE_LINE.sub("", prompt).split(REGION_PLACEHOLDER)
    if len(parts) - 1 > n_regions:
        raise ConfigError(
            f"prompt has {len(parts) - 1} {REGION_PLACEHOLDER} placeholders for {n_regions} region(s)"
        )
    out = parts[0]
    for i, tail in enumerate(parts[1:], start=1):
        out += f"region {i}" + tail
    return out


class ApiAdapter(Adapter):
    name = "api"
    region_kinds = frozenset({"mask", "box", "points", "scribble"})

    def __init__(self, settings: ClientSettings, detail: str = "high"):
        self.settings = settings
        self.detail = detail
        self.client = ChatClient(settings)

    def fingerprint(self) -> dict[str, Any]:
        return {
            # recorded in results: a key inside the URL is masked (identity otherwise, so
            # store keys of URLs without secrets are unchanged)
            "base_url": redact_url(self.settings.base_url),
            "model": self.settings.model,
            "render": RENDER_VERSION,
            "detail": self.detail,
        }

    def messages(self, request: Request) -> tuple[list[dict[str, Any]], str, str | None]:
        text = rewrite_prompt(request.prompt, len(request.regions))
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        digest = None
        if request.image_path is not None:
            png = marks_png(request.image_path, request.regions)
            digest = sha256_bytes(png)
            content.append(
                {
                    "type": "image_url",
                    "image_url": {"url": png_data_url(png), "detail": self.detail},
                }
            )
        elif request.regions:
            raise ConfigError(f"request {request.id}: regions without an image to draw them on")
        return [{"role": "user", "content": content}], text, digest

    @staticmethod
    def params(generation: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"temperature": float(generation.get("temperature", 0.0))}
        if "max_new_tokens" in generation:
            out["max_tokens"] = int(generation["max_new_tokens"])
        if generation.get("seed") is not None:
            out["seed"] = int(generation["seed"])
        if generation.get("top_p") is not None:
            out["top_p"] = float(generation["top_p"])
        return out

    def generate(self, requests: Sequence[Request]) -> Iterator[Prediction]:
        rendered: dict[str, tuple[str, str | None]] = {}

        def calls() -> Iterator[ChatCall]:  # lazy: one window of rendered images at a time
            for request in requests:
                messages, text, digest = self.messages(request)
                rendered[request.id] = (text, digest)
                yield ChatCall(request.id, messages, self.params(request.generation))

        for outcome in self.client.run(calls()):
            if not outcome.ok:
                print(f"api: request {outcome.id} failed: {outcome.error}", file=sys.stderr)
                continue
            assert outcome.text is not None
            text, digest = rendered[outcome.id]
            meta: dict[str, Any] = {"attempts": outcome.attempts, "cached": outcome.cached}
            if digest is not None:
                meta["set_of_marks_sha256"] = digest
            yield Prediction(outcome.id, outcome.text, prompt=text, meta=meta)

    def close(self) -> None:
        self.client.close()


@register_model("api")
def api(
    base_url: str | None = None,
    model: str | None = None,
    api_key_env: str | None = None,
    max_concurrency: str | None = None,
    timeout: str | None = None,
    max_attempts: str | None = None,
    backoff_base: str | None = None,
    backoff_max: str | None = None,
    detail: str = "high",
    cache: str | None = None,
    **unknown: str,
) -> Adapter:
    if unknown:
        if any("key" in k.lower() and k != "api_key_env" for k in unknown):
            raise ConfigError(
                "api: pass the API key in an environment variable (api_key_env=NAME), "
                "never on the command line"
            )
        raise ConfigError(f"api: unknown model args {sorted(unknown)}")
    if not base_url or not model:
        raise ConfigError("api needs --model-args base_url=URL,model=NAME")
    settings = ClientSettings(
        base_url=base_url,
        model=model,
        api_key_vars=key_vars_for(base_url, api_key_env, "EVALKIT_API_KEY", "api: api_key_env"),
        cache_path=cache_path_from(cache, "api_cache.sqlite"),
        **parse_numbers(
            {
                "max_concurrency": ("api: max_concurrency", max_concurrency),
                "timeout_s": ("api: timeout", timeout),
                "max_attempts": ("api: max_attempts", max_attempts),
                "backoff_base_s": ("api: backoff_base", backoff_base),
                "backoff_max_s": ("api: backoff_max", backoff_max),
            }
        ),
    )
    return ApiAdapter(settings, detail)
