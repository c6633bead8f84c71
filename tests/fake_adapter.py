"""A slow, deterministic fake adapter for engine tests (registered as ``slowfake``).

It answers from a hash of the request payload, sleeps ``delay`` seconds per request, and
appends each request id it computes to ``log`` so tests can count recomputation.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

from evalkit.errors import DataError
from evalkit.images import load_rgb
from evalkit.models import Adapter, register_model
from evalkit.records import Prediction, Request

ANSWERS = ["red circle", "a blue square.", "House: roof", "green", ""]


class SlowFake(Adapter):
    name = "slowfake"
    region_kinds = frozenset({"mask"})

    def __init__(self, delay: float, log: str | None, decode: bool = False):
        self.delay = delay
        self.log = log
        self.decode = decode

    def fingerprint(self) -> dict[str, Any]:
        return {"version": 1}

    def generate(self, requests: Sequence[Request]) -> Iterator[Prediction]:
        for request in requests:
            time.sleep(self.delay)
            if self.decode and request.image_path is not None:
                try:  # what a real adapter does: decode, and report bad input per request
                    load_rgb(request.image_path, request.id)
                except DataError as exc:
                    yield Prediction(request.id, "", error=str(exc))
                    continue
            digest = int(hashlib.sha256(request.payload_digest().encode()).hexdigest(), 16)
            if self.log:
                with open(self.log, "a") as fh:
                    fh.write(request.id + "\n")
            yield Prediction(request.id, ANSWERS[digest % len(ANSWERS)], prompt=request.prompt)


@register_model("slowfake")
def slowfake(delay: str = "0", log: str | None = None, decode: str = "0") -> Adapter:
    return SlowFake(float(delay), log, decode == "1")
