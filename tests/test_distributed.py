"""torchrun data parallelism: same results as one process; resume across world sizes."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit.engine.distributed import DistContext, shard
from evalkit.records import Request

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = shutil.which("torchrun") or ""  # "": tests that need it skip


def requests_for(images: dict[str, int]) -> list[Request]:
    return [
        Request(f"{img}#{k}", f"{img}#{k}", img, "p", [], {}) for img, n in images.items() for k in range(n)
    ]


def test_sharding_keeps_images_together_balanced_and_deterministic():
    reqs = requests_for({"a": 5, "b": 1, "c": 3, "d": 2, "e": 2})
    shards = [shard(reqs, DistContext(r, 2)) for r in range(2)]
    assert sorted(x.id for s in shards for x in s) == sorted(x.id for x in reqs)
    for s in shards:  # an image's requests never straddle ranks
        for x in s:
            assert all(y.image_path != x.image_path for t in shards if t is not s for y in t)
    assert sorted(len(s) for s in shards) == [6, 7]
    assert [x.id for x in shard(list(reversed(reqs)), DistContext(0, 2))] == [
        x.id for x in reversed(shards[0])
    ]


def run(args, env, nproc=None):
    if nproc:
        cmd = [TORCHRUN, "--standalone", f"--nproc-per-node={nproc}", str(REPO / "tests" / "fake_cli.py")]
    else:
        cmd = [sys.executable, str(REPO / "tests" / "fake_cli.py")]
    proc = subprocess.run([*cmd, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert proc.returncode == 0, (errors, proc.stderr[-3000:])
    return proc


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN, reason="torchrun not on PATH")
def test_torchrun_two_ranks_equals_one_process_and_resumes_with_one(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}

    def args(out, log):
        return [
            "run",
            "--model",
            "slowfake",
            "--model-args",
            f"log={log}",
            "--task",
            "shapes_cls",
            "--limit",
            "40",
            "--output",
            str(out),
        ]

    run(args(tmp_path / "one", tmp_path / "one.log"), env)
    run(args(tmp_path / "two", tmp_path / "two.log"), env, nproc=2)
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert one["metrics"] == two["metrics"] and one["n"] == two["n"] == 40
    assert (tmp_path / "one" / "predictions.jsonl").read_text() == (
        tmp_path / "two" / "predictions.jsonl"
    ).read_text()
    assert len((tmp_path / "two.log").read_text().split()) == 40  # each request computed once
    assert two["provenance"]["requests"] == {"total": 40, "generated": 40, "reused": 0, "skipped": 0}
    assert not list((tmp_path / "two").glob("store.rank*"))  # merged into one store
    with sqlite3.connect(tmp_path / "two" / "store.sqlite") as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM predictions").fetchone() == (
            40,
            40,
        )
    # Resume the 2-rank run with one process: nothing recomputed.
    run(args(tmp_path / "two", tmp_path / "two.log"), env)
    assert len((tmp_path / "two.log").read_text().split()) == 40
    requests = json.loads((tmp_path / "two" / "results.json").read_text())["provenance"]["requests"]
    assert requests == {"total": 40, "generated": 0, "reused": 40, "skipped": 0}


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN, reason="torchrun not on PATH")
def test_torchrun_counts_reuse_per_rank_when_rank0_starts_late(tmp_path):
    """Rank 1 stores its rows before rank 0 looks for finished ones: they are still this run's."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out, log = tmp_path / "late", tmp_path / "late.log"
    run(
        [
            "run",
            "--model",
            "slowfake",
            "--model-args",
            f"log={log},stall_rank0=4",
            "--task",
            "shapes_cls",
            "--limit",
            "40",
            "--output",
            str(out),
        ],
        env,
        nproc=2,
    )
    assert len(log.read_text().split()) == 40
    results = json.loads((out / "results.json").read_text())
    assert results["provenance"]["requests"] == {"total": 40, "generated": 40, "reused": 0, "skipped": 0}
    # Half done by an earlier run, then rank 0 starts late again: reuse is the earlier run's rows only.
    shutil.rmtree(out)
    run(["run", "--model", "slowfake", "--task", "shapes_cls", "--limit", "20", "--output", str(out)], env)
    run(
        [
            "run",
            "--model",
            "slowfake",
            "--model-args",
            "stall_rank0=4",
            "--task",
            "shapes_cls",
            "--limit",
            "40",
            "--output",
            str(out),
        ],
        env,
        nproc=2,
    )
    results = json.loads((out / "results.json").read_text())
    assert results["provenance"]["requests"] == {"total": 40, "generated": 20, "reused": 20, "skipped": 0}


def tiny_args(out: Path, limit: int) -> list[str]:
    return [
        "run",
        "--model",
        "osprey-tiny",
        "--model-args",
        "batch_size=4",
        "--task",
        "shapes_cls",
        "--limit",
        str(limit),
        "--output",
        str(out),
    ]


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN, reason="torchrun not on PATH")
def test_torchrun_with_the_tiny_model_equals_one_process(tmp_path):
    """The acceptance form: ``torchrun -m evalkit run`` with osprey-tiny on shapes (CPU, gloo)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(
        [sys.executable, "-m", "evalkit", *tiny_args(one, 48)],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    proc = subprocess.run(
        [TORCHRUN, "--standalone", "--nproc-per-node=2", "-m", "evalkit", *tiny_args(two, 48)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = json.loads((one / "results.json").read_text())
    b = json.loads((two / "results.json").read_text())
    assert a["metrics"] == b["metrics"] and a["n"] == b["n"] == 48
    drop = ("generation",)  # identical rows, token ids included
    rows_a = [
        {k: v for k, v in json.loads(x).items() if k not in drop}
        for x in (one / "predictions.jsonl").read_text().splitlines()
    ]
    rows_b = [
        {k: v for k, v in json.loads(x).items() if k not in drop}
        for x in (two / "predictions.jsonl").read_text().splitlines()
    ]
    assert rows_a == rows_b and all(r["token_ids"] for r in rows_a)
    assert b["provenance"]["requests"]["generated"] == 48
    subprocess.run(
        [sys.executable, "-m", "evalkit", *tiny_args(two, 48)],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    c = json.loads((two / "results.json").read_text())
    assert c["provenance"]["requests"] == {"total": 48, "generated": 0, "reused": 48, "skipped": 0}
    assert c["metrics"] == a["metrics"]
