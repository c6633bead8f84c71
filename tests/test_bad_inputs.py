"""Every file of the bad-input corpus gets one clear error naming the file and the record;
``--on-error skip`` counts and lists what it leaves out."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tests.fake_adapter  # noqa: F401  (registers slowfake for the in-process runs)
from evalkit.cli import main
from tests.bad_inputs import build

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, str(REPO / "tests" / "fake_cli.py")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return {c.name: c for c in build(tmp_path_factory.mktemp("bad_inputs"))}


CASES = [
    "corrupt_jpeg",
    "missing_image",
    "image_size_mismatch",
    "empty_mask",
    "polygon_two_points",
    "rle_wrong_size",
    "region_outside_image",
    "duplicate_ids",
    "wrong_json_types",
    "length_mismatch",
    "non_utf8",
    "malformed_json",
    "predictions_unknown_id",
    "predictions_missing_id",
    "image_path_traversal",
    "image_path_absolute",
    "polygon_nan",
    "polygon_infinite",
    "polygon_huge",
    "rle_short",
    "rle_long",
    "rle_garbage",
    "rle_negative",
]


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


def test_skip_counts_and_lists_what_it_left_out(corpus, capsys):
    case = corpus["missing_image"]
    assert main([*case.args, "--on-error", "skip"]) == 0, capsys.readouterr().err[-2000:]
    out = Path(case.args[case.args.index("--output") + 1])
    results = json.loads((out / "results.json").read_text())
    assert results["n"] == 6 and results["n_failed"] == 2 and results["counts"]["skipped"] == 2
    assert [s.split(":")[0] for s in results["skipped"]] == ["img2#0", "img2#1"]
    assert "image file not found" in results["skipped"][0]
    scored = [json.loads(line)["id"] for line in (out / "samples.jsonl").read_text().splitlines()]
    assert scored == ["img0#0", "img0#1", "img1#0", "img1#1"]
    # Skipping bad records at read time is counted the same way.
    case = corpus["polygon_two_points"]
    assert main([*case.args, "--on-error", "skip"]) == 0, capsys.readouterr().err[-2000:]
    out = Path(case.args[case.args.index("--output") + 1])
    results = json.loads((out / "results.json").read_text())
    assert results["counts"]["skipped"] == 1 and "annotation 0" in results["skipped"][0]
    assert results["n"] == 6 and results["n_scored"] == 5


def test_hostile_sample_ids_never_become_paths(tmp_path, capsys):
    """Ids come from the data; nothing may be written outside the output folder because of one."""
    from tests.bad_inputs import _good_records
    from tests.helpers import write_images

    records = _good_records()
    records[0]["file_name"] = "../../../escape/../../x.jpg"  # id "x#k": the stem, no path
    records[1]["file_name"] = "/etc/passwd.jpg"
    (tmp_path / "ann.json").write_text(json.dumps(records))
    write_images(tmp_path / "imgs" / "a" / "b" / "c", records[2:])
    out = tmp_path / "nested" / "out"
    preds = tmp_path / "p.jsonl"
    ids = ["x#0", "x#1", "passwd#0", "passwd#1", "img2#0", "img2#1"]
    preds.write_text("".join(json.dumps({"id": i, "text": "dog"}) + "\n" for i in ids))
    before = {p for p in tmp_path.rglob("*")}
    code = main(
        [
            "score",
            "--task",
            "lvis_cls",
            "--data",
            f"annotations={tmp_path / 'ann.json'}",
            "--predictions",
            str(preds),
            "--output",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err[-2000:]
    created = {p for p in tmp_path.rglob("*")} - before
    assert created and all(out in p.parents or p == out or p in out.parents for p in created)
    assert {p.name for p in out.iterdir()} == {"results.json", "samples.jsonl"}
    # A hostile id from a COCO-style file (image ids are free-form there) stays a string.
    raw = {
        "images": [{"id": "../../evil", "height": 40, "width": 50, "file_name": "e.jpg"}],
        "annotations": [
            {"id": 1, "image_id": "../../evil", "category_id": 1, "segmentation": [[10, 10, 30, 10, 30, 30]]}
        ],
        "categories": [{"id": 1, "name": "dog"}],
    }
    (tmp_path / "raw.json").write_text(json.dumps(raw))
    (tmp_path / "q.jsonl").write_text(json.dumps({"id": "../../evil/1", "text": "dog"}) + "\n")
    code = main(
        [
            "score",
            "--task",
            "lvis_cls",
            "--data",
            f"annotations={tmp_path / 'raw.json'}",
            "--predictions",
            str(tmp_path / "q.jsonl"),
            "--output",
            str(out / "coco"),
        ]
    )
    assert code == 0, capsys.readouterr().err[-2000:]
    assert not (tmp_path.parent / "evil").exists() and not (out.parent / "evil").exists()
    assert json.loads((out / "coco" / "samples.jsonl").read_text())["id"] == "../../evil/1"


def test_real_adapter_reports_a_corrupt_image_by_file_and_request(corpus, capsys):
    """osprey-tiny decodes images itself: a truncated JPEG fails that request, clearly."""
    case = corpus["corrupt_jpeg"]
    args = list(case.args)
    args[args.index("slowfake")] = "osprey-tiny"
    args[args.index("--model-args") + 1] = "batch_size=2"  # img0 answered in a batch of its own
    code = main(args)
    stderr = capsys.readouterr().err
    assert code == 2, stderr[-2000:]
    line = next(x for x in stderr.splitlines() if x.startswith("error: "))
    assert "request img1#0" in line and "img1.jpg" in line and "cannot decode image" in line
    out = Path(args[args.index("--output") + 1])
    assert main([*args, "--on-error", "skip"]) == 0, capsys.readouterr().err[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert results["counts"]["skipped"] == 2 and results["n_scored"] == 4
    assert results["provenance"]["requests"]["reused"] == 2  # img0 answered before the failure
