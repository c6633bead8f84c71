"""A slow, deterministic fake adapter for engine tests (registered as ``slowfake``).

It answers from a hash of the request payload, sleeps ``delay`` seconds per request, and
appends each request id it computes to ``log`` so tests can count recomputation. With
``stall_rank0`` seconds, torchrun's rank 0 waits in its first ``fingerprint()`` call: after the
process group is up and before the runner looks for finished rows, so the other ranks store
rows of the same run first (the race a slow-starting rank 0 meets in CI).
"""

from __future__ import annotations

import hashlib
import os
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

    def __init__(self, delay: float, log: str | None, decode: bool = False, stall_rank0: float = 0.0):
        self.delay = delay
        self.log = log
        self.decode = decode
        self.stall_rank0 = stall_rank0

    def fingerprint(self) -> dict[str, Any]:
        if self.stall_rank0 and os.environ.get("RANK") == "0":
            time.sleep(self.stall_rank0)
            self.stall_rank0 = 0.0
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
def slowfake(delay: str = "0", log: str | None = None, decode: str = "0", stall_rank0: str = "0") -> Adapter:
    return SlowFake(float(delay), log, decode == "1", float(stall_rank0))
