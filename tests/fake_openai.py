"""A fake OpenAI-compatible chat-completions server for tests (judge and model under test).

Threaded but bounded (at most ``max_workers`` requests handled at once, ``max_requests`` in
all, and it shuts itself down after ``lifetime_s``), on 127.0.0.1 with an OS-chosen port.
Faults are injected deterministically: attempt ``k`` of a given message list fails with
probability ``fault_rate`` (seeded by the messages and ``k``) as a 429 with ``Retry-After``,
a 500, a timeout (the server stalls past the client's timeout) or a connection reset.
Judge calls (recognised by the judge's system prompt) answer a deterministic score line,
some of them malformed; model calls answer a text with a ``[x1, y1, x2, y2]`` box in it.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

JUDGE_SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."
FAULTS = ("429", "500", "timeout", "reset")


def text_of(messages: list[dict[str, Any]]) -> str:
    parts = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(c.get("text", "") for c in content if c.get("type") == "text")
    return "\n".join(parts)


def images_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        if isinstance(m.get("content"), list):
            out.extend(c["image_url"] for c in m["content"] if c.get("type") == "image_url")
    return out


def judge_reply(user_text: str, malformed_rate: float) -> str:
    h = int(hashlib.sha256(user_text.encode()).hexdigest(), 16)
    ref, model = 1 + h % 10, 1 + (h // 10) % 10
    if (h // 100) % 1000 < malformed_rate * 1000:
        # Lines LLaVA's parser rejects: three fields, or "a, b" (the comma leaves two spaces).
        bad = [
            f"Assistant 1: {ref}\nAssistant 2: {model}",
            f"{ref}, {model}\nok",
            f"{ref}/10 {model}/10 x",
        ]
        return bad[(h // 10**6) % 3]
    pair = f"{ref} {model}" if h % 3 else f"{ref}.5 {model}" if h % 2 else f"{ref},{model}"
    return f"{pair}\nAssistant 2 is compared with Assistant 1 on helpfulness and accuracy."


def model_reply(user_text: str) -> str:
    h = int(hashlib.sha256(user_text.encode()).hexdigest(), 16) % 997
    return f"The region 1 [0.{h:03d}, 0.100, 0.500, 0.600] holds an object near the table [0.1, 0.2]."


class FakeOpenAI:
    def __init__(
        self,
        fault_rate: float = 0.3,
        malformed_rate: float = 0.0,
        seed: int = 0,
        stall_s: float = 0.6,
        retry_after: str = "0.02",
        api_key: str | None = None,
        always_fail: Callable[[str], bool] | None = None,
        max_requests: int = 5000,
        max_workers: int = 32,
        lifetime_s: float = 300.0,
    ):
        self.fault_rate = fault_rate
        self.malformed_rate = malformed_rate
        self.seed = seed
        self.stall_s = stall_s
        self.retry_after = retry_after
        self.api_key = api_key
        self.always_fail = always_fail or (lambda text: False)
        self.max_requests = max_requests
        self.lifetime_s = lifetime_s
        self.lock = threading.Lock()
        self.requests = 0  # every HTTP request received
        self.attempts: dict[str, int] = {}  # messages fingerprint -> attempts seen
        self.successes: dict[str, int] = {}  # fingerprint -> successful answers sent
        self.faults: dict[str, int] = {}
        self.bodies: list[dict[str, Any]] = []  # bodies answered successfully
        self.auth_failures = 0
        self.authorizations: list[str | None] = []  # every request's Authorization header
        self._slots = threading.BoundedSemaphore(max_workers)
        self._server = self._make_server()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._timer = threading.Timer(lifetime_s, self._server.shutdown)
        self._timer.daemon = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ server
    def _make_server(self) -> ThreadingHTTPServer:
        fake = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def process_request(self, request: Any, client_address: Any) -> None:
                fake._slots.acquire()  # bounded: the accept loop waits for a free slot
                super().process_request(request, client_address)

            def process_request_thread(self, request: Any, client_address: Any) -> None:
                try:
                    super().process_request_thread(request, client_address)
                finally:
                    fake._slots.release()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                fake._handle(self)

        return Server(("127.0.0.1", 0), Handler)

    def _send(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length", 0))
        body = json.loads(h.rfile.read(length))
        messages = body.get("messages", [])
        fp = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
        with self.lock:
            self.requests += 1
            if self.requests > self.max_requests:
                self._send(h, 503, {"error": {"message": "request budget exhausted"}})
                return
            attempt = self.attempts.get(fp, 0) + 1
            self.attempts[fp] = attempt
            self.authorizations.append(h.headers.get("Authorization"))
        if self.api_key is not None and h.headers.get("Authorization") != f"Bearer {self.api_key}":
            with self.lock:
                self.auth_failures += 1
            self._send(h, 401, {"error": {"message": "bad key"}})
            return
        user_text = text_of(messages)
        rng = random.Random(f"{self.seed}:{fp}:{attempt}")
        fault = None
        if self.always_fail(user_text):
            fault = "500"
        elif rng.random() < self.fault_rate:
            fault = FAULTS[rng.randrange(len(FAULTS))]
        if fault is not None:
            with self.lock:
                self.faults[fault] = self.faults.get(fault, 0) + 1
        if fault == "429":
            self._send(h, 429, {"error": {"message": "slow down"}}, {"Retry-After": self.retry_after})
            return
        if fault == "500":
            self._send(h, 500, {"error": {"message": "boom"}})
            return
        if fault == "timeout":
            time.sleep(self.stall_s)
            h.close_connection = True
            return
        if fault == "reset":
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.close_connection = True
            h.connection.close()
            return
        is_judge = bool(messages) and messages[0].get("content") == JUDGE_SYSTEM
        reply = judge_reply(user_text, self.malformed_rate) if is_judge else model_reply(user_text)
        with self.lock:
            self.successes[fp] = self.successes.get(fp, 0) + 1
            self.bodies.append(body)
        self._send(
            h,
            200,
            {
                "id": f"chatcmpl-{fp[:12]}",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "fake"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )
