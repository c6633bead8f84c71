"""A slow, deterministic fake adapter for engine tests (registered as ``slowfake``).

It answers from a hash of the request payload, sleeps ``delay`` seconds per request, and
appends each request id it computes to ``log`` so tests can count recomputation.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

from evalkit.models import Adapter, register_model
from evalkit.records import Prediction, Request

ANSWERS = ["red circle", "a blue square.", "House: roof", "green", ""]


class SlowFake(Adapter):
    name = "slowfake"
    region_kinds = frozenset({"mask"})

    def __init__(self, delay: float, log: str | None):
        self.delay = delay
        self.log = log

    def fingerprint(self) -> dict[str, Any]:
        return {"version": 1}

    def generate(self, requests: Sequence[Request]) -> Iterator[Prediction]:
        for request in requests:
            time.sleep(self.delay)
            digest = int(hashlib.sha256(request.payload_digest().encode()).hexdigest(), 16)
            if self.log:
                with open(self.log, "a") as fh:
                    fh.write(request.id + "\n")
            yield Prediction(request.id, ANSWERS[digest % len(ANSWERS)], prompt=request.prompt)


@register_model("slowfake")
def slowfake(delay: str = "0", log: str | None = None) -> Adapter:
    return SlowFake(float(delay), log)
