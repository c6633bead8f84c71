"""`evalkit samples` on every SPHINX-V-suite task, on small files in the released formats:
one JSON line per sample with its id, target and prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalkit.cli import main
from tests.sphinx_v_helpers import sphinx_v_records, write_flat_images, write_json
from tests.test_llava_bench import QUESTIONS, write_bench
from tests.test_lvis_binary_choice import _records as ferret_records
from tests.test_lvis_binary_choice import _write as write_jsonl
from tests.test_vcr import _vcr


def _data(task: str, root: Path, shared: Path) -> tuple[list[str], list[str]]:
    """(--data arguments, expected sample ids) for ``task``."""
    if task.startswith("sphinxv_roc_") or task == "cocotext_regional_ocr":
        name = {"cocotext_regional_ocr": "COCOText_box"}.get(task) or "_".join(task.split("_")[2:]).replace(
            "lvis", "LVIS"
        ).replace("paco", "PACO")
        records = sphinx_v_records(name, 3, seed=7)
        path = write_json(root / f"{name}.json", records)
        images = write_flat_images(root / "img", [r["image_name"] for r in records])
        return ["--data", f"annotations={path}", "--data", f"images={images}"], [
            f"{name}/{r['question_id']}" for r in records
        ]
    if task == "lvis_binary_choice":
        records = ferret_records(4)
        return ["--data", f"questions={write_jsonl(root / 'q.jsonl', records)}"], [
            str(r["id"]) for r in records
        ]
    if task == "refcocog_brief_cap":
        gt = write_json(root / "gt.json", {"1": [{"image_id": 1, "id": 1, "caption": ["a red car"]}]})
        return ["--data", f"annotations={gt}"], ["1"]
    if task == "llava_bench_coco":
        return write_bench(root / "bench", shared), [str(q[0]) for q in QUESTIONS]
    path, images, lines = _vcr(root)
    return ["--data", f"annotations={path}", "--data", f"images={images}"], [x["annot_id"] for x in lines]


@pytest.mark.parametrize(
    "task",
    [
        "sphinxv_roc_lvis_box",
        "sphinxv_roc_lvis_point",
        "sphinxv_roc_paco_box",
        "sphinxv_roc_paco_point",
        "cocotext_regional_ocr",
        "lvis_binary_choice",
        "refcocog_brief_cap",
        "llava_bench_coco",
        "vcr_qa",
        "vcr_qar",
        "vcr_q_ar",
    ],
)
def test_samples_lists_every_sample_with_its_prompt(
    task: str, tmp_path: Path, shared_dir: Path, capsys
) -> None:
    args, ids = _data(task, tmp_path, shared_dir)
    capsys.readouterr()
    assert main(["samples", "--task", task, *args]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows] == ids
    assert all(r["prompt"].startswith("<image>\n") and r["target"] is not None for r in rows)
