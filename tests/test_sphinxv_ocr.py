"""SPHINX-V regional OCR (cocotext_regional_ocr) against OCR_eval.py.

``reference_ocr`` restates the released script (Draw-and-Understand ``28a1bd1``,
``accessory/eval/Regional_OCR/OCR_eval.py``) from its text, with the key mapping the protocol
notes (``annotation`` := ``gt_answers``, ``answer`` := the model's output).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from evalkit.tasks.sphinx_v.region_lines import ocr_answers, ocr_targets

from evalkit.cli import main
from evalkit.metrics.regional_ocr import ocr_accuracy, ocr_matches
from evalkit.task import get_task
from tests.helpers import write_predictions
from tests.sphinx_v_helpers import write_json


def reference_ocr(items: list[dict]) -> float:
    def extract_region_texts(annotation: str) -> list[str]:
        texts = []
        for region in annotation.split("\n"):
            parts = region.split(": ")
            if len(parts) > 1:
                texts.append(parts[1])
        return texts

    def extract_text_in_parentheses(answer: str) -> list[str]:
        pattern = r"Region \d+: .*?\((.*?)\)\n|Region \d+: (.*?)\n"
        result = []
        for match in re.findall(pattern, answer):
            key_string = next(filter(None, match), "BLANK")
            result.append(key_string if key_string else "BLANK")
        return result

    sum_count = match_count = 0
    for item in items:
        pred_list = extract_text_in_parentheses(item["answer"])
        gt_list = extract_region_texts(item["annotation"])
        assert len(pred_list) == len(gt_list)
        sum_count += len(pred_list)
        for i in range(len(gt_list)):
            if pred_list[i].lower() == gt_list[i].lower():
                match_count += 1
    return match_count / sum_count * 100


def test_protocols_vector_5_the_final_newline() -> None:
    gt = "Region 1: STOP\nRegion 2: EXIT\n"
    prediction = "Region 1: STOP\nRegion 2: EXIT"
    assert ocr_targets(gt) == ["STOP", "EXIT"]
    assert ocr_answers(prediction) == ["STOP"]  # the reference's extraction: its assert fails
    with pytest.raises(AssertionError):
        reference_ocr([{"answer": prediction, "annotation": gt}])
    assert ocr_answers(prediction + "\n") == ["STOP", "EXIT"]
    assert ocr_accuracy([ocr_matches(ocr_answers(prediction + "\n"), ocr_targets(gt))]) == 100.0


def test_extraction_quirks() -> None:
    assert ocr_answers("Region 1: STOP (sign)\n") == ["sign"]  # the parenthesised text wins
    assert ocr_answers("Region 1: \n") == ["BLANK"]
    assert ocr_answers("<Region 1>: X\nRegion 2:Y\n") == []  # neither matches 'Region \d+: '
    assert ocr_answers("Region 1: (a) b\nRegion 2: x (y)\n") == ["(a) b", "y"]
    assert ocr_targets("Region 1: 12: 30\nRegion 2: OPEN") == ["12", "OPEN"]  # cut at ": "
    assert ocr_matches(["Stop", "Exit "], ["STOP", "EXIT"]) == [True, False]  # no strip


def _file(tmp_path: Path) -> tuple[Path, list[dict]]:
    texts = [["STOP", "EXIT"], ["Coca-Cola"], ["12", "OPEN", "24h"], ["sale"]]
    records = [
        {
            "image_name": f"{k:012d}.jpg",
            "question": "Please provide the ocr results of each marked region in the image.",
            "question_id": k,
            "dataset_name": "COCOText_box",
            "gt_answers": "".join(f"Region {i + 1}: {t}\n" for i, t in enumerate(ts)),
            "bbox": [[1.0, 2.0, 10.0, 5.0] for _ in ts],
        }
        for k, ts in enumerate(texts, start=7)
    ]
    return write_json(tmp_path / "COCOText_box.json", records), records


def test_score_cli_equals_the_reference_where_it_runs_and_records_departures(tmp_path: Path) -> None:
    path, records = _file(tmp_path)
    answers = [
        "Region 1: stop\nRegion 2: EXIT (arrow)\n",  # 1 of 2 (the parenthesis wins)
        "Region 1: coca-cola\n",  # 1 of 1
        "Region 1: 12\nRegion 2: OPEN\nRegion 3: 24H\n",  # 3 of 3
        "Region 1: Sale",  # no final newline
    ]
    ids = [f"COCOText_box/{r['question_id']}" for r in records]
    write_predictions(tmp_path / "p.jsonl", list(zip(ids, answers, strict=True)))
    out = tmp_path / "out"
    args = ["score", "--task", "cocotext_regional_ocr", "--data", f"annotations={path}"]
    assert main([*args, "--predictions", str(tmp_path / "p.jsonl"), "--output", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["metrics"]["accuracy"] == pytest.approx(600 / 7)
    fixed = [
        {"answer": a if a.endswith("\n") else a + "\n", "annotation": r["gt_answers"]}
        for a, r in zip(answers, records, strict=True)
    ]
    assert results["metrics"]["accuracy"] == pytest.approx(reference_ocr(fixed))
    assert results["counts"]["newline_appended"] == 1 and results["counts"]["count_mismatches"] == 0
    assert any("'\\n'" in d for d in results["provenance"]["deviations"])
    # the reference reading: the last image's only line is lost -> 0 of 1 and a count mismatch
    ref = tmp_path / "ref"
    assert (
        main(
            [
                *args,
                "--protocol",
                "reference",
                "--predictions",
                str(tmp_path / "p.jsonl"),
                "--output",
                str(ref),
            ]
        )
        == 0
    )
    reference = json.loads((ref / "results.json").read_text())
    assert reference["metrics"]["accuracy"] == pytest.approx(500 / 7)
    assert reference["counts"]["count_mismatches"] == 1
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert rows[0]["predicted_texts"] == ["stop", "arrow"] and rows[0]["accuracy"] == 50.0


def test_requests_list_the_boxes_and_carry_the_files_question(tmp_path: Path) -> None:
    from tests.sphinx_v_helpers import write_flat_images

    path, records = _file(tmp_path)
    images = write_flat_images(tmp_path / "img", [r["image_name"] for r in records])
    task = get_task("cocotext_regional_ocr")
    samples = task.load_samples({"annotations": path, "images": images}).samples
    request = task.build_requests(samples)[2]
    assert request.prompt == (
        "<image>\nRegion 1: <region>\nRegion 2: <region>\nRegion 3: <region>\n"
        "Please provide the ocr results of each marked region in the image."
    )
    assert [r.box for r in request.regions] == [(1.0, 2.0, 11.0, 7.0)] * 3
