"""An async, bounded, retrying client for any OpenAI-compatible chat-completions endpoint.

Used both by the LLM judge and by the ``api`` adapter (a VLM under test). Each call gets at
most ``max_attempts`` tries; between tries it waits an exponentially growing, jittered delay,
and never less than the server's ``Retry-After``. Retryable: timeouts, connection errors,
HTTP 408/409/429/5xx and malformed responses. Not retryable: other 4xx (a bad request stays
bad). A call that runs out of attempts ends as an explicit failure, never silently.

:meth:`ChatClient.run` answers from the cache first, then sends the rest concurrently
(``max_concurrency`` in flight) on an event loop in a worker thread, and yields every outcome
as it arrives, so callers can store each one at once. Successful answers go into the cache
from the consuming thread.
"""

from __future__ import annotations

import asyncio
import email.utils
import queue
import random
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from evalkit.judge.cache import ResponseCache, cache_key
from evalkit.judge.settings import ClientSettings

RETRYABLE_STATUS = frozenset({408, 409, 429})


@dataclass
class ChatCall:
    id: str  # the caller's name for it (a sample or request id)
    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)  # temperature, max_tokens, seed...


@dataclass
class ChatOutcome:
    id: str
    text: str | None  # None when the call failed
    error: str | None = None
    attempts: int = 0
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.text is not None


@dataclass
class ClientStats:
    calls: int = 0
    cache_hits: int = 0
    http_requests: int = 0
    succeeded: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # kind of failed attempt -> count

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "cache_hits": self.cache_hits,
            "http_requests": self.http_requests,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "retried_errors": dict(sorted(self.errors.items())),
        }


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` (seconds or an HTTP date)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = lowered.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(
    attempt: int,
    retry_after: float | None,
    base_s: float,
    max_s: float,
    retry_after_max_s: float,
    rng: random.Random,
) -> float:
    """Delay after failed attempt ``attempt`` (1-based): capped exponential with jitter in
    [50 %, 100 %] of the step, raised to the server's ``Retry-After`` (itself capped)."""
    step = min(max_s, base_s * (2.0 ** (attempt - 1)))
    delay = step * (0.5 + 0.5 * rng.random())
    if retry_after is not None:
        delay = max(delay, min(retry_after, retry_after_max_s))
    return delay


class ChatClient:
    def __init__(self, settings: ClientSettings):
        self.settings = settings
        self.stats = ClientStats()
        self._rng = random.Random()
        self._cache = ResponseCache(settings.cache_path) if settings.cache_path else None

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    def key_of(self, call: ChatCall) -> str:
        return cache_key(self.settings.base_url, self.settings.model, call.params, call.messages)

    # ------------------------------------------------------------------ sync entry points
    def run(self, calls: Iterable[ChatCall]) -> Iterator[ChatOutcome]:
        """Every call's outcome, as it completes. Calls are consumed lazily in windows of a few
        times the concurrency, so a long run of image calls never sits in memory at once."""
        window = max(32, 4 * self.settings.max_concurrency)
        seen: set[str] = set()
        chunk: list[ChatCall] = []
        for call in calls:
            if call.id in seen:
                raise ValueError(f"ChatClient.run: call id {call.id!r} given twice")
            seen.add(call.id)
            chunk.append(call)
            if len(chunk) == window:
                yield from self._run_chunk(chunk)
                chunk = []
        if chunk:
            yield from self._run_chunk(chunk)

    def _run_chunk(self, calls: list[ChatCall]) -> Iterator[ChatOutcome]:
        self.stats.calls += len(calls)
        pending: list[tuple[ChatCall, str]] = []
        for call in calls:
            key = self.key_of(call)
            hit = self._cache.get(key) if self._cache is not None else None
            if hit is not None:
                self.stats.cache_hits += 1
                self.stats.succeeded += 1
                yield ChatOutcome(call.id, hit, attempts=0, cached=True)
            else:
                pending.append((call, key))
        if not pending:
            return
        keys = {call.id: key for call, key in pending}
        results: queue.Queue[ChatOutcome | BaseException | None] = queue.Queue()
        stop = threading.Event()
        worker = threading.Thread(
            target=self._thread_main, args=([c for c, _ in pending], results, stop), daemon=True
        )
        worker.start()
        try:
            while True:
                item = results.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                if item.ok:
                    self.stats.succeeded += 1
                    if self._cache is not None:
                        assert item.text is not None
                        self._cache.put(keys[item.id], self.settings.model, item.text)
                else:
                    self.stats.failed += 1
                yield item
        finally:
            stop.set()  # the consumer left early: let the worker wind down
            worker.join()

    def complete(self, calls: Iterable[ChatCall]) -> dict[str, ChatOutcome]:
        return {o.id: o for o in self.run(calls)}

    # ------------------------------------------------------------------ worker thread
    def _thread_main(
        self,
        calls: list[ChatCall],
        results: queue.Queue[ChatOutcome | BaseException | None],
        stop: threading.Event,
    ) -> None:
        try:
            asyncio.run(self._drive(calls, results, stop))
        except BaseException as exc:  # surfaced in the consuming thread
            results.put(exc)
        finally:
            results.put(None)

    async def _drive(
        self,
        calls: list[ChatCall],
        results: queue.Queue[ChatOutcome | BaseException | None],
        stop: threading.Event,
    ) -> None:
        from openai import AsyncOpenAI

        s = self.settings
        client = AsyncOpenAI(api_key=s.api_key(), base_url=s.base_url, timeout=s.timeout_s, max_retries=0)
        gate = asyncio.Semaphore(s.max_concurrency)

        async def one(call: ChatCall) -> None:
            async with gate:
                if stop.is_set():
                    return
                outcome = await self._with_retries(client, call, stop)
            results.put(outcome)

        try:
            await asyncio.gather(*(one(c) for c in calls))
        finally:
            await client.close()

    async def _with_retries(self, client: Any, call: ChatCall, stop: threading.Event) -> ChatOutcome:
        import openai

        s = self.settings
        last_error = "no attempt made"
        for attempt in range(1, s.max_attempts + 1):
            retry_after: float | None = None
            self.stats.http_requests += 1
            try:
                response = await client.chat.completions.create(
                    model=s.model, messages=call.messages, **call.params
                )
                text = response.choices[0].message.content
                if not isinstance(text, str):
                    raise ValueError("response has no message content")
                return ChatOutcome(call.id, text, attempts=attempt)
            except openai.APIStatusError as exc:
                status = exc.status_code
                last_error = f"HTTP {status}"
                if status not in RETRYABLE_STATUS and status < 500:
                    return ChatOutcome(call.id, None, error=f"{last_error} (not retryable)", attempts=attempt)
                retry_after = parse_retry_after(exc.response.headers)
            except openai.APITimeoutError:
                last_error = "timeout"
            except openai.APIConnectionError:
                last_error = "connection error"
            except (
                openai.APIError,
                ValueError,
                KeyError,
                IndexError,
                TypeError,
                AttributeError,
            ) as exc:
                # A 200 with a body that is not a chat completion: the server misbehaved.
                last_error = f"malformed response ({type(exc).__name__})"
            self.stats.errors[last_error] = self.stats.errors.get(last_error, 0) + 1
            if attempt == s.max_attempts or stop.is_set():
                break
            await asyncio.sleep(
                backoff_delay(
                    attempt,
                    retry_after,
                    s.backoff_base_s,
                    s.backoff_max_s,
                    s.retry_after_max_s,
                    self._rng,
                )
            )
        return ChatOutcome(call.id, None, error=f"{last_error} after {attempt} attempt(s)", attempts=attempt)
