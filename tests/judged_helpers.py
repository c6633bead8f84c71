"""Shared pieces of the judged-task tests: the key that must never be written, the judge
environment (tiny timeouts and backoff), data helpers, and the released summariser's
arithmetic written independently from the spec."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.fake_openai import JUDGE_SYSTEM, FakeOpenAI

KEY = "sk-test-NEVER-WRITE-ME-5b1e"
JUDGE_ENV = {
    "EVALKIT_JUDGE_TIMEOUT": "0.3",
    "EVALKIT_JUDGE_MAX_ATTEMPTS": "6",
    "EVALKIT_JUDGE_BACKOFF_BASE": "0.001",
    "EVALKIT_JUDGE_BACKOFF_MAX": "0.005",
}
FAST_API = "timeout=0.3,max_attempts=8,backoff_base=0.001,backoff_max=0.005"


@pytest.fixture
def judge_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Judge and api settings for a test; use with ``usefixtures`` and read the cache folder
    from ``cache_dir()``."""
    for name in ("BASE_URL", "MODEL", "API_KEY_ENV", "CONCURRENCY", "CACHE"):
        monkeypatch.delenv(f"EVALKIT_JUDGE_{name}", raising=False)  # restored after the test
    for name, value in JUDGE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("EVALKIT_JUDGE_API_KEY", KEY)
    monkeypatch.setenv("EVALKIT_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("EVALKIT_CACHE", str(cache))
    yield cache


def ferret_data(shared: Path, folder: str = "refer_caption") -> list[str]:
    f = shared / "fixtures" / "ferret"
    keys = {"questions": "question.jsonl", "answers": "answer.jsonl", "context": "context.jsonl"}
    out = [f"{k}={f / folder / v}" for k, v in keys.items()] + [f"rule={f / 'rule.json'}"]
    return [x for item in out for x in ("--data", item)]


def make_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(sorted(set(names))):
        # COCO-sized: Osprey's Ferret conversion has polygons in the real images' pixels.
        w, h = 640 + 8 * (k % 5), 640 + 6 * (k % 3)
        rng = np.random.default_rng(k)
        # Large flat blocks: realistic size, yet small files (the api adapter re-encodes them
        # as PNG for every request, against short test timeouts).
        tile = rng.integers(0, 255, (h // 80 + 1, w // 80 + 1, 3), dtype=np.uint8)
        pixels = np.kron(tile, np.ones((80, 80, 1), dtype=np.uint8))[:h, :w]
        Image.fromarray(pixels).save(folder / name)


def ferret_images(shared: Path, folder: Path, split: str = "refer_caption") -> Path:
    """Stand-in images for every image a Ferret-Bench ``split``'s questions name."""
    make_images(folder, [q["image"] for q in rows(shared / "fixtures/ferret" / split / "question.jsonl")])
    return folder


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def released_summary(reviews: list[str | None], digits: int, minus_one: bool) -> float:
    """The released summarise arithmetic, written from the spec: first line, commas to spaces,
    exactly two space-separated floats else [-1, -1]; numpy means rounded to 3; ratio x 100."""
    tuples = []
    for review in reviews:
        pair = [-1.0, -1.0]
        if review is not None:
            fields = review.split("\n")[0].replace(",", " ").split(" ")
            try:
                if len(fields) == 2:
                    pair = [float(fields[0]), float(fields[1])]
            except ValueError:
                pass
        if pair == [-1.0, -1.0] and not minus_one:
            continue
        tuples.append(pair)
    stats = [round(x, 3) for x in np.asarray(tuples).mean(0).tolist()]
    return round(stats[1] / stats[0] * 100, digits)


def assert_no_key(*folders: Path) -> None:
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                assert KEY.encode() not in path.read_bytes(), f"API key found in {path}"


def judge_bodies(srv: FakeOpenAI) -> list[dict[str, Any]]:
    return [b for b in srv.bodies if b["messages"][0].get("content") == JUDGE_SYSTEM]


def cache_dir() -> Path:
    return Path(os.environ["EVALKIT_CACHE"])
