"""The run engine: streaming into the store, resume after SIGKILL, no duplicates."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalkit.engine.store import PredictionStore, StoreError
from evalkit.records import Prediction

REPO = Path(__file__).resolve().parents[1]


def evalkit_cmd(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "tests" / "fake_cli.py"), *args]


def run_args(out: Path, log: Path, delay: float, limit: int = 60) -> list[str]:
    return [
        "run",
        "--model",
        "slowfake",
        "--model-args",
        f"delay={delay},log={log}",
        "--task",
        "shapes_cls",
        "--limit",
        str(limit),
        "--output",
        str(out),
    ]


def store_rows(out: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(out / "store.sqlite") as db:
        return db.execute("SELECT key, request_id FROM predictions").fetchall()


def assert_same_as_clean(out: Path, clean: Path, n: int) -> None:
    """A resumed run's store holds each request once, and its results equal a clean run's."""
    rows = store_rows(out)
    assert len(rows) == n and len({k for k, _ in rows}) == n and len({r for _, r in rows}) == n
    a = json.loads((out / "results.json").read_text())
    b = json.loads((clean / "results.json").read_text())
    assert a["metrics"] == b["metrics"] and a["n"] == b["n"] == n
    assert (out / "predictions.jsonl").read_text() == (clean / "predictions.jsonl").read_text()


@pytest.mark.slow
def test_sigkill_midway_then_resume_equals_uninterrupted_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # Uninterrupted run.
    clean = tmp_path / "clean"
    subprocess.run(
        evalkit_cmd(*run_args(clean, tmp_path / "clean.log", 0.0)),
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
    )
    # Interrupted run: kill once at least 15 rows are committed.
    out, log = tmp_path / "killed", tmp_path / "killed.log"
    proc = subprocess.Popen(
        evalkit_cmd(*run_args(out, log, 0.05)),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (out / "store.sqlite").exists():
            try:
                if len(store_rows(out)) >= 15:
                    break
            except sqlite3.OperationalError:
                pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished_before = {rid for _, rid in store_rows(out)}
    assert 15 <= len(finished_before) < 60, "the kill must land midway"
    assert not (out / "results.json").exists()
    computed_first = log.read_text().split()

    subprocess.run(evalkit_cmd(*run_args(out, log, 0.0)), cwd=REPO, env=env, check=True, capture_output=True)
    computed_second = log.read_text().split()[len(computed_first) :]
    assert not finished_before & set(computed_second), "finished requests were recomputed"
    assert len(computed_second) == 60 - len(finished_before)
    assert_same_as_clean(out, clean, 60)


@pytest.mark.slow
def test_rerun_recomputes_nothing_and_new_settings_recompute(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out, log = tmp_path / "run", tmp_path / "log"
    subprocess.run(
        evalkit_cmd(*run_args(out, log, 0.0, limit=10)), cwd=REPO, env=env, check=True, capture_output=True
    )
    subprocess.run(
        evalkit_cmd(*run_args(out, log, 0.0, limit=10)), cwd=REPO, env=env, check=True, capture_output=True
    )
    assert len(log.read_text().split()) == 10
    # Different generation settings are different requests: computed anew, old rows kept.
    subprocess.run(
        evalkit_cmd(*run_args(out, log, 0.0, limit=10), "--gen", "max_new_tokens=5"),
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
    )
    assert len(log.read_text().split()) == 20
    assert len(store_rows(out)) == 20
    pred = json.loads((out / "predictions.jsonl").read_text().splitlines()[0])
    assert pred["generation"]["max_new_tokens"] == 5
    assert set(pred) >= {"id", "text", "prompt", "generation"}


def test_store_never_duplicates_and_rejects_garbage(tmp_path):
    with PredictionStore(tmp_path / "s.sqlite") as store:
        assert store.put("k1", Prediction("a", "x"))
        assert not store.put("k1", Prediction("a", "y"))
        assert store.count() == 1
        assert store.get_many(["k1"])["k1"].text == "x"
    (tmp_path / "bad.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="bad.sqlite: not a usable prediction store"):
        PredictionStore(tmp_path / "bad.sqlite")


@pytest.mark.slow
def test_sigkill_at_twenty_random_moments(tmp_path):
    """Kill at 20 seeded-random moments (start-up, generation, writing results); the final
    results equal an uninterrupted run's and the store holds each request once."""
    import random

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    clean = tmp_path / "clean"
    subprocess.run(
        evalkit_cmd(*run_args(clean, tmp_path / "clean.log", 0.0, limit=80)),
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
    )
    out, log = tmp_path / "killed", tmp_path / "killed.log"
    rng = random.Random(20)
    for _ in range(20):
        proc = subprocess.Popen(
            evalkit_cmd(*run_args(out, log, 0.02, limit=80)),
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            proc.wait(timeout=rng.uniform(0.3, 2.5))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    subprocess.run(
        evalkit_cmd(*run_args(out, log, 0.0, limit=80)), cwd=REPO, env=env, check=True, capture_output=True
    )
    assert_same_as_clean(out, clean, 80)
    assert len(set(log.read_text().split())) == 80


@pytest.mark.slow
def test_sigkill_the_tiny_model_twenty_times(tmp_path):
    """osprey-tiny killed by SIGKILL 20 times mid-generation (after a random number of newly
    stored rows); the final results equal an uninterrupted run's, with no duplicate rows."""
    import random

    def tiny(out):
        return [
            sys.executable,
            "-m",
            "evalkit",
            "run",
            "--model",
            "osprey-tiny",
            "--model-args",
            "batch_size=1",
            "--task",
            "shapes_cls",
            "--limit",
            "160",
            "--output",
            str(out),
        ]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    clean, out = tmp_path / "clean", tmp_path / "killed"
    subprocess.run(tiny(clean), env=env, check=True, capture_output=True, timeout=300)
    rng = random.Random(6)
    kills = 0
    while kills < 20:
        before = len(store_rows(out)) if (out / "store.sqlite").exists() else 0
        target = before + rng.randint(1, 6)
        proc = subprocess.Popen(tiny(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if (out / "store.sqlite").exists() and len(store_rows(out)) >= target:
                    break
            except sqlite3.OperationalError:
                pass
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.05))
        if proc.poll() is not None:
            break  # finished before the kill: nothing left to interrupt
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        assert not (out / "results.json").exists()
    assert kills == 20
    subprocess.run(tiny(out), env=env, check=True, capture_output=True, timeout=300)
    assert_same_as_clean(out, clean, 160)
