"""refcocog_brief_cap: SPHINX-V's RefCOCOg brief captions (§G) on the real ground-truth file,
the eval-file pairing, the extraction quirks, and METEOR / CIDEr parity with pycocoevalcap."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from evalkit.tasks.sphinx_v.region_lines import caption_lines

from evalkit.cli import main
from evalkit.errors import DataError
from evalkit.task import get_task
from tests.coco_reference import pycocoevalcap_scores
from tests.helpers import write_predictions
from tests.sphinx_v_helpers import write_flat_images, write_json

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="needs Java")
CAPTIONS = [
    "a bush of plant behind middle woman",
    "black and white dog with pointy ears",
    "small cow laying down",
]


def _gt(path: Path, captions: list[str]) -> Path:
    return write_json(
        path, {str(k): [{"image_id": k, "id": k, "caption": [c]}] for k, c in enumerate(captions, 1)}
    )


def _eval_file(path: Path, captions: list[str]) -> Path:
    records = [
        {
            "image_name": f"COCO_train2014_{k:012d}.jpg",
            "question": "Please provide a brief description of each marked region in the image.",
            "question_id": 900 + k,
            "dataset_name": "RefCOCOg_brief_caption",
            "gt_answers": f"Region 1: {c}\n",
            "bbox": [[2.0 + k, 3.0, 20.5, 10.0]],
        }
        for k, c in enumerate(captions)
    ]
    return write_json(path, records)


def test_the_real_ground_truth_file_reads_as_4896_references(shared_dir: Path) -> None:
    path = shared_dir / "fixtures" / "sphinx_v" / "RefCOCOg_brief_caption_gt.json"
    samples = get_task("refcocog_brief_cap").load_samples({"annotations": path, "questions": None}).samples
    assert len(samples) == 4896 and [s.id for s in samples[:3]] == ["1", "2", "3"]
    assert samples[0].target == ["a bush of plant behind middle woman"] and samples[0].regions == []
    assert all(isinstance(s.target, list) and len(s.target) == 1 for s in samples)


def test_the_eval_file_pairs_by_position_and_must_match_the_ground_truth(tmp_path: Path) -> None:
    gt = _gt(tmp_path / "gt.json", CAPTIONS)
    questions = _eval_file(tmp_path / "q.json", CAPTIONS)
    images = write_flat_images(tmp_path / "img", [f"COCO_train2014_{k:012d}.jpg" for k in range(3)])
    task = get_task("refcocog_brief_cap")
    samples = task.load_samples({"annotations": gt, "questions": questions, "images": images}).samples
    assert [s.id for s in samples] == ["1", "2", "3"] and samples[1].target == [CAPTIONS[1]]
    assert samples[2].regions[0].box == (4.0, 3.0, 24.5, 13.0)
    (first, *_) = task.build_requests(samples)
    assert (
        first.prompt
        == "<image>\nRegion 1: <region>\nPlease provide a brief description of each marked region in the image."
    )
    _eval_file(questions, [CAPTIONS[0], CAPTIONS[2], CAPTIONS[1]])
    with pytest.raises(DataError, match="not the eval file that ground truth was made from"):
        task.load_samples({"annotations": gt, "questions": questions, "images": None})


def test_extraction_needs_the_final_newline() -> None:
    assert caption_lines("Region 1: a red car") == []  # §G: the caption is lost
    assert caption_lines("Region 1: a red car\nRegion 2: a tree\n") == ["a red car", "a tree"]
    default = get_task("refcocog_brief_cap").protocol
    reference = get_task("refcocog_brief_cap", "reference").protocol
    assert default.caption("Region 1: a red car") == ("a red car", True)  # type: ignore[attr-defined]
    assert reference.caption("Region 1: a red car") == (None, False)  # type: ignore[attr-defined]
    assert default.caption("Region 1: a\nRegion 2: b\n") == ("a", False)  # type: ignore[attr-defined]


@needs_java
@pytest.mark.slow
def test_score_cli_equals_pycocoevalcap_on_the_first_extracted_caption(tmp_path: Path) -> None:
    captions = [
        *CAPTIONS,
        "the zebra on the left",
        "a man in a red shirt holding a bat",
        "the plate of food on the right",
    ]
    gt = _gt(tmp_path / "gt.json", captions)
    answers = [
        "Region 1: a bush behind the woman\n",
        "Region 1: black and white dog\nRegion 2: ignored\n",
        "Region 1: a cow lying down",  # no final newline: appended by default
        "I see a zebra.",  # no Region line: the empty caption
        "Region 1: a man in a red shirt holding a bat\n",
        "Region 1: plate of food.\n",
    ]
    write_predictions(tmp_path / "p.jsonl", [(str(k), a) for k, a in enumerate(answers, 1)])
    out = tmp_path / "out"
    args = [
        "score",
        "--task",
        "refcocog_brief_cap",
        "--data",
        f"annotations={gt}",
        "--predictions",
        str(tmp_path / "p.jsonl"),
    ]
    assert main([*args, "--output", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    extracted = [
        "a bush behind the woman",
        "black and white dog",
        "a cow lying down",
        "",
        "a man in a red shirt holding a bat",
        "plate of food.",
    ]
    expected = pycocoevalcap_scores(
        {str(k): [c] for k, c in enumerate(captions, 1)}, {str(k): e for k, e in enumerate(extracted, 1)}
    )
    for metric in ("meteor", "cider"):
        assert results["metrics"][metric] == pytest.approx(expected["corpus"][metric], abs=1e-9)
    assert set(results["metrics"]) == {"meteor", "cider"}
    assert results["counts"] == {
        **results["counts"],
        "no_caption": 1,
        "newline_appended": 1,
        "several_captions": 1,
    }
    assert len(results["provenance"]["deviations"]) == 2
