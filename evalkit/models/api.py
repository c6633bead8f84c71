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

``region=text`` sends the image as it is and writes each ``<region>`` as coordinates in the
served model's own convention (:mod:`evalkit.models.region_text`): ``coords=NAME``, or the
family named by ``model`` (``Qwen/Qwen2-VL-7B-Instruct`` -> ``qwen2_vl``). Masks reach it as
their tight boxes (recorded per prediction). Qwen2.5-VL's pixel coordinates assume the
checkpoint's default resizing (``min_pixels`` 3136, ``max_pixels`` 1003520), what a vLLM
server of it does unless started with other ``mm_processor_kwargs``.

A request that still fails after ``max_attempts`` is not answered: the engine reports it and
keeps every finished answer, so the next run retries only the failures.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import Any

from evalkit.errors import ConfigError, DataError
from evalkit.hashing import sha256_bytes
from evalkit.images import load_rgb
from evalkit.judge.client import ChatCall, ChatClient
from evalkit.judge.prompts import png_data_url
from evalkit.judge.settings import ClientSettings, cache_path_from, key_vars_for, parse_numbers
from evalkit.models import Adapter, register_model
from evalkit.models.region_text import (
    TextFormat,
    View,
    fill_regions,
    format_for_model,
    mark_names,
    no_format_error,
    region_texts,
    strip_image,
    text_format,
)
from evalkit.records import Prediction, Request
from evalkit.redact import redact_url
from evalkit.regions import RegionError
from evalkit.render import marks_png, png_bytes

RENDER_VERSION = "som-1"  # bump when the drawing changes: cached answers depend on it
REGION_MODES = ("som", "text")


def rewrite_prompt(prompt: str, n_regions: int) -> str:
    """``<image>`` (and the newline after it) removed; i-th ``<region>`` -> ``region i``."""
    return fill_regions(strip_image(prompt), mark_names(n_regions))


class ApiAdapter(Adapter):
    name = "api"
    region_kinds = frozenset({"mask", "box", "points", "scribble"})

    def __init__(self, settings: ClientSettings, detail: str = "high", text: TextFormat | None = None):
        self.settings = settings
        self.detail = detail
        # region=text: regions written as coordinates, the image sent unmarked; the engine
        # converts what the format cannot write (a mask to its box) and records it.
        self.text = text
        if text is not None:
            self.region_kinds = text.kinds  # type: ignore[misc]  # per instance
        self.client = ChatClient(settings)

    def fingerprint(self) -> dict[str, Any]:
        fp: dict[str, Any] = {
            # recorded in results: a key inside the URL is masked (identity otherwise, so
            # store keys of URLs without secrets are unchanged)
            "base_url": redact_url(self.settings.base_url),
            "model": self.settings.model,
            "render": RENDER_VERSION,
            "detail": self.detail,
        }
        if self.text is not None:  # only then: Set-of-Marks runs keep their store keys
            fp.update(region="text", coords=self.text.name)
            del fp["render"]
        return fp

    def messages(self, request: Request) -> tuple[list[dict[str, Any]], str, str | None]:
        if self.text is not None:
            return self.text_messages(request, self.text)
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

    def text_messages(
        self, request: Request, fmt: TextFormat
    ) -> tuple[list[dict[str, Any]], str, str | None]:
        """The prompt with regions as ``fmt`` coordinates, then the image as it is (PNG)."""
        if request.image_path is None:
            if request.regions:
                raise ConfigError(f"request {request.id}: regions without an image")
            text = strip_image(request.prompt)
            return [{"role": "user", "content": [{"type": "text", "text": text}]}], text, None
        image = load_rgb(request.image_path, request.id)
        view = View(image.width, image.height)
        try:
            text = fill_regions(strip_image(request.prompt), region_texts(fmt, request.regions, view))
        except RegionError as exc:
            raise DataError(request.image_path, f"region: {exc}", request.id) from exc
        png = png_bytes(image)
        content: list[dict[str, Any]] = [
            {"type": "text", "text": text},
            {"type": "image_url", "image_url": {"url": png_data_url(png), "detail": self.detail}},
        ]
        return [{"role": "user", "content": content}], text, sha256_bytes(png)

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
            if self.text is not None:
                meta["region_encoding"] = "text"
                meta["coords"] = self.text.name
                if digest is not None:
                    meta["image_sha256"] = digest
            elif digest is not None:
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
    region: str = "som",
    coords: str | None = None,
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
    if region not in REGION_MODES:
        raise ConfigError(f"api: region={region}: expected one of {', '.join(REGION_MODES)}")
    fmt = None
    if region == "text":
        name = coords or format_for_model(model)
        if name is None:
            raise no_format_error("api", model)
        fmt = text_format(name, "api")
    elif coords is not None:
        raise ConfigError("api: coords= applies to region=text only")
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
    return ApiAdapter(settings, detail, fmt)
