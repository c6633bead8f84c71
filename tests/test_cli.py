"""The CLI forms of DESIGN.md and the clear, non-zero errors for bad input."""

import json
import subprocess
import sys

import pytest

from evalkit.cli import main
from tests.helpers import LVIS_NAMES, run_replay, write_images, write_osprey_subset, write_predictions


def evalkit(*args, check=False):
    return subprocess.run(
        [sys.executable, "-m", "evalkit", *args], capture_output=True, text=True, check=check
    )


def test_tasks_and_models_list_builtins(capsys):
    assert main(["models"]) == 0
    assert "replay" in capsys.readouterr().out.split()
    proc = evalkit("tasks", check=True)
    for name in ("lvis_cls", "paco_cls", "shapes_cls"):
        assert name in proc.stdout


def test_samples_prints_the_contract_fields(tmp_path, capsys):
    records = write_osprey_subset(tmp_path / "a.json", LVIS_NAMES, 3)
    assert main(["samples", "--task", "lvis_cls", "--data", f"annotations={tmp_path / 'a.json'}"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == sum(len(r["categories"]) for r in records)
    assert rows[0]["id"] == f"{records[0]['file_name'][:-4]}#0"
    assert rows[0]["image"] == records[0]["file_name"]
    assert rows[0]["target"] == records[0]["categories"][0]  # exactly as in the file
    assert rows[0]["prompt"].endswith("What is the category of <region>? Using only one word or phrase.")


@pytest.fixture
def lvis(tmp_path):
    records = write_osprey_subset(tmp_path / "a.json", LVIS_NAMES, 3)
    write_images(tmp_path, records)
    ids = [f"{r['file_name'][:-4]}#{i}" for r in records for i in range(len(r["categories"]))]
    return tmp_path, ids


def score(tmp_path, preds):
    return evalkit(
        "score",
        "--task",
        "lvis_cls",
        "--data",
        f"annotations={tmp_path / 'a.json'}",
        "--predictions",
        str(preds),
        "--output",
        str(tmp_path / "out"),
    )


def test_unknown_id_in_predictions_names_file_and_line(lvis):
    tmp_path, ids = lvis
    write_predictions(tmp_path / "p.jsonl", [(i, "dog") for i in ids] + [("999#9", "cat")])
    proc = score(tmp_path, tmp_path / "p.jsonl")
    assert proc.returncode == 2
    assert f"p.jsonl, record line {len(ids) + 1}: id '999#9' is not a sample of this task" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_ids_and_malformed_lines_are_clear_errors(lvis):
    tmp_path, ids = lvis
    write_predictions(tmp_path / "p.jsonl", [(i, "dog") for i in ids[1:]])
    proc = score(tmp_path, tmp_path / "p.jsonl")
    assert proc.returncode == 2 and f"no prediction for 1 of {len(ids)}" in proc.stderr
    (tmp_path / "q.jsonl").write_text('{"id": "x", "text": "a"}\n{"id": \n')
    proc = score(tmp_path, tmp_path / "q.jsonl")
    assert proc.returncode == 2 and "q.jsonl, record line 2: malformed JSON" in proc.stderr


def test_config_errors(tmp_path):
    proc = evalkit("samples", "--task", "nope")
    assert proc.returncode == 2 and "unknown task 'nope'" in proc.stderr
    proc = evalkit("samples", "--task", "lvis_cls", "--data", "bogus=1")
    assert proc.returncode == 2 and "no data key(s) ['bogus']" in proc.stderr
    proc = evalkit("samples", "--task", "lvis_cls", "--data", f"annotations={tmp_path / 'x.json'}")
    assert proc.returncode == 2 and "x.json: file not found" in proc.stderr


def test_run_with_replay_then_score_agree(lvis):
    tmp_path, ids = lvis
    write_predictions(
        tmp_path / "p.jsonl", [(i, "dog" if k % 2 else "teddy bear") for k, i in enumerate(ids)]
    )
    a = run_replay(
        "lvis_cls",
        tmp_path / "p.jsonl",
        tmp_path / "run",
        "--data",
        f"annotations={tmp_path / 'a.json'}",
        "--data",
        f"images={tmp_path}",
    )
    assert (
        main(
            [
                "score",
                "--task",
                "lvis_cls",
                "--data",
                f"annotations={tmp_path / 'a.json'}",
                "--predictions",
                str(tmp_path / "p.jsonl"),
                "--output",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    b = json.loads((tmp_path / "out" / "results.json").read_text())
    assert a["metrics"] == b["metrics"]
    prov = a["provenance"]
    assert prov["adapter"]["name"] == "replay" and len(prov["adapter"]["predictions_sha256"]) == 64
    assert str(tmp_path / "a.json") in prov["data_files"]
    assert prov["task_card_hash"] and prov["protocol_variant"] == "default"
