"""refcocog_rec_candidates (RegionGPT's RefCOCOg comprehension over candidate boxes,
PROTOCOLS_WAVE2.md §I): candidate building (score threshold, top-k, ground-truth injection,
coordinate order), the prompt, the ``Region [x]`` parsing and IoU >= 0.5 scoring on
hand-computed cases, the proposals tool, and bad input."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from evalkit.tasks.closed_set.proposals import Proposal, build_candidates, from_detections, load_proposals
from evalkit.tasks.closed_set.proposals import main as proposals_main
from evalkit.tasks.closed_set.rec_candidates import parse_region_choice, region_list
from evalkit.tasks.closed_set.refer_candidates import RecCandidates

from evalkit.cli import main
from evalkit.errors import DataError
from evalkit.metrics.rec import box_iou, oracle_hit, rec_accuracy, rec_correct
from evalkit.task import get_task

GT = (10.0, 10.0, 50.0, 50.0)


def test_box_iou_and_correctness_by_hand() -> None:
    assert box_iou(GT, GT) == 1.0
    assert box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching edges: no overlap, no +1
    assert box_iou((0, 0, 20, 10), (10, 0, 30, 10)) == pytest.approx(100 / 300)
    # IoU exactly 0.5 counts: (0,0,20,10) vs (0,0,10,10) -> 100 / 200
    assert rec_correct(1, [(0, 0, 10, 10)], (0, 0, 20, 10))
    assert not rec_correct(1, [(0, 0, 9.9, 10)], (0, 0, 20, 10))
    assert not rec_correct(0, [(0, 0, 10, 10)], (0, 0, 10, 10)) and not rec_correct(None, [GT], GT)
    assert not rec_correct(2, [GT], GT)  # out of range
    assert oracle_hit([(0, 0, 1, 1), GT], GT) and not oracle_hit([(0, 0, 1, 1)], GT)
    assert rec_accuracy([True, True, False]) == pytest.approx(200 / 3) and rec_accuracy([]) == 0.0


def test_candidates_keep_the_best_proposals_inject_the_ground_truth_and_sort() -> None:
    near = (12.0, 10.0, 52.0, 50.0)  # IoU 38*40 / (2*1600 - 1520) = 0.905
    far = (100.0, 0.0, 140.0, 40.0)
    low = (10.0, 10.0, 50.0, 50.0)  # the GT itself, but below min_score
    props = [Proposal(far, 0.9), Proposal(near, 0.5), Proposal(low, 0.2), Proposal((0, 0, 5, 5), 0.95)]
    kept = build_candidates(props, GT)
    assert kept.boxes == [(0, 0, 5, 5), near, far] and not kept.gt_injected
    # max_candidates 2: near (score 0.5) is cut, nothing left overlaps: the GT joins, sorted.
    cut = build_candidates(props, GT, max_candidates=2)
    assert cut.boxes == [(0, 0, 5, 5), GT, far] and cut.gt_injected
    assert build_candidates(props, GT, min_score=0.1).boxes[1] == low  # now kept: IoU 1, no copy added
    assert build_candidates([], GT) == build_candidates(props, GT, min_score=0.99)
    assert build_candidates([], GT).boxes == [GT]
    # A proposal at IoU just under 0.5 does not count as a hit: (10,10,50,30) is 800/1600.
    assert build_candidates([Proposal((10, 10, 50, 29.9), 1.0)], GT).boxes == [(10, 10, 50, 29.9), GT]
    assert build_candidates([Proposal((10, 10, 50, 30), 1.0)], GT).boxes == [(10, 10, 50, 30)]
    # Ties in score keep file order before the cut.
    tie = [Proposal((1, 1, 2, 2), 0.5), Proposal((3, 3, 4, 4), 0.5), Proposal((5, 5, 6, 6), 0.5)]
    assert build_candidates(tie, (1, 1, 2, 2), max_candidates=2).boxes == [(1, 1, 2, 2), (3, 3, 4, 4)]


def test_the_region_list_and_the_answer_forms() -> None:
    assert region_list(1) == "<region>"
    assert region_list(2) == "<region> and <region>"
    assert region_list(5) == "<region>, <region>, <region>, <region> and <region>"
    cases = {
        "Region [3]": 3,
        "Region [3] .": 3,
        "Region 3": 3,
        "region [3]": 3,
        "The answer is REGION [12].": 12,
        "Region [2] or Region [4]": 2,
        "Region 7 and Region [2]": 2,  # the bracketed form first
        "No corresponding options found.": None,
        "Region [x]": None,
        "": None,
    }
    assert {t: parse_region_choice(t) for t in cases} == cases
    strict = {
        t: parse_region_choice(t, strict=True) for t in ("Region [3]", "Region 3", "region [3]", "Region[3]")
    }
    assert strict == {"Region [3]": 3, "Region 3": None, "region [3]": None, "Region[3]": None}


def write_refcocog(folder: Path) -> dict[str, Path]:
    """refs(umd).p, instances.json and a proposals file in the real formats: two val refs
    (one with 2 sentences), one test ref, one val ref on an image without proposals."""
    folder.mkdir(parents=True, exist_ok=True)
    images = [
        {"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "height": 100, "width": 200},
        {"id": 2, "file_name": "COCO_train2014_000000000002.jpg", "height": 60, "width": 60},
    ]
    annotations = [
        {"id": 101, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "area": 1600, "iscrowd": 0},
        {"id": 102, "image_id": 1, "category_id": 1, "bbox": [100, 20, 50, 60], "area": 3000, "iscrowd": 0},
        {"id": 201, "image_id": 2, "category_id": 2, "bbox": [5, 5, 20, 20], "area": 400, "iscrowd": 0},
    ]
    refs = [
        {"ref_id": 7, "ann_id": 101, "image_id": 1, "split": "val", "category_id": 1,
         "sentences": [{"sent_id": 70, "sent": "the left cat", "raw": "The left cat."},
                       {"sent_id": 71, "sent": "cat near the edge", "raw": "Cat near the edge"}]},
        {"ref_id": 8, "ann_id": 102, "image_id": 1, "split": "val", "category_id": 1,
         "sentences": [{"sent_id": 80, "sent": "the right cat", "raw": "the right cat"}]},
        {"ref_id": 9, "ann_id": 102, "image_id": 1, "split": "test", "category_id": 1,
         "sentences": [{"sent_id": 90, "sent": "big cat", "raw": "big cat"}]},
        {"ref_id": 10, "ann_id": 201, "image_id": 2, "split": "val", "category_id": 2,
         "sentences": [{"sent_id": 100, "sent": "a dog", "raw": "a dog"}]},
    ]  # fmt: skip
    # Image 1: a box on the left cat (IoU 0.905), a stray, one under min_score, one far.
    proposals = {
        "1": [[12, 10, 52, 50, 0.8], [0, 0, 5, 5, 0.95], [100, 20, 150, 80, 0.1], [160, 0, 190, 30, 0.4]]
    }
    paths = {
        "refs": folder / "refs(umd).p",
        "instances": folder / "instances.json",
        "proposals": folder / "proposals.json",
    }
    paths["refs"].write_bytes(pickle.dumps(refs, protocol=2))
    paths["instances"].write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": []})
    )
    paths["proposals"].write_text(json.dumps(proposals))
    return paths


def _data(paths: dict[str, Path]) -> dict[str, Path | None]:
    return {**paths, "images": None}


def test_samples_candidates_and_prompts(tmp_path: Path) -> None:
    paths = write_refcocog(tmp_path)
    task = get_task("refcocog_rec_candidates")
    read = task.load_samples(_data(paths))
    assert [s.id for s in read.samples] == ["7/70", "7/71", "8/80", "10/100"]
    infos = [s.info(RecCandidates) for s in read.samples]
    # ref 7: proposals >= 0.3 are (0,0,5,5), (12,10,52,50), (160,0,190,30); one hits: no GT.
    assert infos[0].candidates == [(0, 0, 5, 5), (12, 10, 52, 50), (160, 0, 190, 30)]
    assert not infos[0].gt_injected and infos[0].gt_box == (10, 10, 50, 50)
    # ref 8: none hits the right cat (its own proposal scores 0.1): the GT joins, sorted.
    assert infos[2].candidates == [(0, 0, 5, 5), (12, 10, 52, 50), (100, 20, 150, 80), (160, 0, 190, 30)]
    assert infos[2].gt_injected
    # ref 10: an image without proposals: the ground truth alone.
    assert infos[3].candidates == [(5, 5, 25, 25)] and infos[3].gt_injected
    assert [r.box for r in read.samples[2].regions] == infos[2].candidates
    assert read.notes[1] == (
        "candidates: proposals of proposals.json scoring >= 0.3, at most 10 by score, the "
        "ground-truth box added when none has IoU >= 0.5 (2 of 3 refs; 1 on images without "
        "proposals), sorted by (x1, y1, x2, y2); 2.75 candidates per expression"
    )
    requests = task.build_requests(read.samples)
    assert requests[0].prompt == (
        '<image>\nFrom the provided masks denoted by <region>, <region> and <region>, which one fits "the left cat"? '
        "Answer the question using the template Region [x]."
    )
    assert requests[3].prompt == (
        '<image>\nFrom the provided masks denoted by <region>, which one fits "a dog"? '
        "Answer the question using the template Region [x]."
    )
    assert all(r.prompt.count("<region>") == len(r.regions) for r in requests)
    test = get_task("refcocog_rec_candidates_test").load_samples(_data(paths))
    assert [s.id for s in test.samples] == ["9/90"]


def _score(tmp_path: Path, paths: dict[str, Path], answers: dict[str, str], *extra: str) -> dict[str, Any]:
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in answers.items()))
    out = tmp_path / "out"
    args = ["score", "--task", "refcocog_rec_candidates", "--predictions", str(preds), "--output", str(out)]
    data = [a for key, path in paths.items() for a in ("--data", f"{key}={path}")]
    assert main([*args, *data, *extra]) == 0
    results: dict[str, Any] = json.loads((out / "results.json").read_text())
    return results


def test_scoring_by_hand(tmp_path: Path) -> None:
    paths = write_refcocog(tmp_path / "data")
    answers = {
        "7/70": "Region [2].",  # (12,10,52,50): IoU 0.905 with the left cat: right
        "7/71": "region 1",  # (0,0,5,5): wrong
        "8/80": "Region [3]",  # the injected GT: right
        "10/100": "Region [2]",  # only one candidate: out of range, wrong
    }
    results = _score(tmp_path, paths, answers)
    assert results["metrics"] == {"acc@0.5": 50.0, "oracle@0.5": 100.0, "candidates": 2.75}
    assert results["counts"] == {"samples": 4, "unparsed": 0, "out_of_range": 1, "gt_injected": 2}
    answers.update({"7/71": "Region 2", "10/100": "No corresponding options found."})
    again = _score(tmp_path, paths, answers)
    assert again["metrics"]["acc@0.5"] == 75.0 and again["counts"]["unparsed"] == 1
    strict = _score(tmp_path, paths, answers, "--protocol", "strict")
    assert strict["metrics"]["acc@0.5"] == 50.0  # "Region 2" no longer counts
    assert any("RegionGPT released no code or proposals" in d for d in strict["provenance"]["deviations"])


def test_the_proposals_tool_turns_detections_into_the_file_the_reader_takes(tmp_path: Path) -> None:
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [12, 10, 40, 40], "score": 0.8},
        {"image_id": 1, "category_id": 5, "bbox": [13, 10, 40, 40], "score": 0.6},  # a duplicate
        {"image_id": 1, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 0.95},
        {"image_id": 2, "category_id": 2, "bbox": [1, 1, 9, 9], "score": 0.05},
    ]
    assert from_detections(dets, min_score=0.1) == {
        "1": [[0.0, 0.0, 5.0, 5.0, 0.95], [12.0, 10.0, 52.0, 50.0, 0.8], [13.0, 10.0, 53.0, 50.0, 0.6]]
    }
    assert from_detections(dets, nms=0.5, top_k=1) == {
        "1": [[0.0, 0.0, 5.0, 5.0, 0.95]],
        "2": [[1.0, 1.0, 10.0, 10.0, 0.05]],
    }
    src, out = tmp_path / "dets.json", tmp_path / "proposals.json"
    src.write_text(json.dumps(dets))
    assert proposals_main([str(src), str(out), "--nms", "0.7"]) == 0
    loaded = load_proposals(out)
    assert [p.box for p in loaded[1]] == [(0.0, 0.0, 5.0, 5.0), (12.0, 10.0, 52.0, 50.0)]
    src.write_text(json.dumps({"not": "a list"}))
    assert proposals_main([str(src), str(out)]) == 2


def test_bad_proposals_are_one_clear_line(tmp_path: Path) -> None:
    paths = write_refcocog(tmp_path)
    task = get_task("refcocog_rec_candidates")
    for content, message in [
        (
            {"1": [[12, 10, 52, 50]]},
            r"proposals.json, record image 1, proposal 0: expected \[x1, y1, x2, y2, score\]",
        ),
        ({"1": [[12, 10, 40, 8, 0.9]]}, r"record image 1, proposal 0: box .* is empty"),
        ({"one": []}, r"record image 'one': key 'one' is not an image id"),
        ({"1": [[500, 500, 600, 600, 0.9]]}, r"proposals.json, record image 1: box .* lies outside"),
    ]:
        paths["proposals"].write_text(json.dumps(content))
        with pytest.raises(DataError, match=message):
            task.load_samples(_data(paths))
