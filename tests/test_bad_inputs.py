"""Every file of the bad-input corpus gets one clear error naming the file and the record;
``--on-error skip`` counts and lists what it leaves out."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bad_inputs import build

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, str(REPO / "tests" / "fake_cli.py")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return {c.name: c for c in build(tmp_path_factory.mktemp("bad_inputs"))}


CASES = ["corrupt_jpeg", "missing_image", "image_size_mismatch", "empty_mask", "polygon_two_points",
         "rle_wrong_size", "region_outside_image", "duplicate_ids", "wrong_json_types",
         "length_mismatch", "non_utf8", "malformed_json", "predictions_unknown_id",
         "predictions_missing_id"]


def evalkit(args):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def test_corpus_covers_every_case(corpus):
    assert sorted(corpus) == sorted(CASES)


@pytest.mark.parametrize("name", CASES)
def test_each_bad_input_fails_clearly(corpus, name):
    case = corpus[name]
    proc = evalkit(case.args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-2000:]
    for piece in case.expect:
        assert piece in lines[0], (piece, lines[0])
    assert "Traceback" not in proc.stderr


def test_skip_counts_and_lists_what_it_left_out(corpus):
    case = corpus["missing_image"]
    proc = evalkit([*case.args, "--on-error", "skip"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = Path(case.args[case.args.index("--output") + 1])
    results = json.loads((out / "results.json").read_text())
    assert results["n"] == 6 and results["n_failed"] == 2 and results["counts"]["skipped"] == 2
    assert [s.split(":")[0] for s in results["skipped"]] == ["img2#0", "img2#1"]
    assert "image file not found" in results["skipped"][0]
    scored = [json.loads(line)["id"] for line in (out / "samples.jsonl").read_text().splitlines()]
    assert scored == ["img0#0", "img0#1", "img1#0", "img1#1"]
    # Skipping bad records at read time is counted the same way.
    case = corpus["polygon_two_points"]
    proc = evalkit([*case.args, "--on-error", "skip"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = Path(case.args[case.args.index("--output") + 1])
    results = json.loads((out / "results.json").read_text())
    assert results["counts"]["skipped"] == 1 and "annotation 0" in results["skipped"][0]
    assert results["n"] == 6 and results["n_scored"] == 5
