"""The newcomer's first command: the bundled tiny Osprey through the whole CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit.models import MODELS
from evalkit.models.osprey import bundled_tiny_path

REPO = Path(__file__).resolve().parents[1]


def test_bundled_weights_are_small_and_complete() -> None:
    path = bundled_tiny_path()
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        assert (path / name).is_file(), name
    total = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    assert total <= 20 * 2**20
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "osprey" and config["mm_projector_type"] == "mlp2x_gelu"


def test_osprey_names_are_registered() -> None:
    assert {"osprey7b", "osprey-chat-7b", "osprey-tiny"} <= set(MODELS.names())


@pytest.mark.slow
def test_run_osprey_tiny_on_shapes_cls(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "evalkit",
            "run",
            "--model",
            "osprey-tiny",
            "--task",
            "shapes_cls",
            "--limit",
            "12",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 12
    for row in rows:
        assert {"id", "text", "prompt", "generation", "token_ids"} <= set(row)
        assert row["prompt"].endswith("Using only one word or phrase. ASSISTANT:")
        assert "<mask><pos>" in row["prompt"]
        assert row["generation"]["temperature"] == 0.0
        assert row["token_ids"] and row["token_ids"][-1] == 2  # answers end with </s>
    results = json.loads((out / "results.json").read_text())
    assert results["n"] == 12
    # The trained model answers shapes questions: well above chance on a dozen regions.
    assert results["metrics"]["ss"] > 70 and results["metrics"]["s_iou"] > 50
    assert results["provenance"]["adapter"]["checkpoint"]["model.safetensors"]
