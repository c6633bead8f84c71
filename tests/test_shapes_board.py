"""Acceptance: `evalkit leaderboard` over two models' shapes runs reproduces
leaderboards/shapes.md byte for byte."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_shapes_board_regenerates_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "shapes.md"
    done = subprocess.run(
        [
            sys.executable,
            "leaderboards/make_shapes.py",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "runs"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    committed = (REPO / "leaderboards" / "shapes.md").read_bytes()
    assert out.read_bytes() == committed
    # Two models (osprey-tiny on the six shapes tasks, a replay baseline on one), a
    # provenance footnote per run, and the better one in bold.
    text = committed.decode()
    assert (
        text.count("\n[^") == 7
        and "| osprey-tiny [^1] [^2] [^3] [^4] [^5] [^6] | —, mask | this run | **" in text
    )
    assert "| replay-sloppy [^7] | — | this run | 82.36 | 65.89 |" in text
    # The same command on the same runs, named in another order, gives the same bytes.
    again = tmp_path / "again.md"
    runs = sorted(str(p) for p in (tmp_path / "runs").rglob("results.json"))[::-1]
    title = "evalkit leaderboard · shapes (the embedded default benchmark)"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "evalkit",
            "leaderboard",
            *runs,
            "--reproducible",
            "--title",
            title,
            "--out",
            str(again),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    assert again.read_bytes() == committed
