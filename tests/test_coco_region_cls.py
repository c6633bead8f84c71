"""coco_region_cls (RegionGPT's COCO closed-set classification, PROTOCOLS_WAVE2.md §H): the
COCO instances reader, the answer parsing, accuracy, and AP against pycocotools' COCOeval
run here on the same file and the same detections (built by the test from the answers), by
generated-name probability, lm_rank and constant scores; errors name the file and record."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from evalkit.tasks.closed_set.closed_set_cls import parse_class_name, span_logprob
from evalkit.tasks.closed_set.coco_instances import RegionClass
from pycocotools import mask as mask_utils

from evalkit.cli import main
from evalkit.errors import DataError, PredictionsError
from evalkit.metrics.coco_detection import BoxDetection, coco_box_ap
from evalkit.outputs import parse_prediction
from evalkit.task import get_task

CATEGORIES = [
    {"id": 1, "name": "cat"},
    {"id": 3, "name": "dog"},
    {"id": 5, "name": "person"},
    {"id": 7, "name": "dining table"},
    {"id": 9, "name": "airplane"},
]
NAMES = [c["name"] for c in CATEGORIES]


def _square(x: float, y: float, s: float) -> list[list[float]]:
    return [[x, y, x + s, y, x + s, y + s, x, y + s]]


def _ann(ann_id: int, image_id: int, cat: int, x: float, y: float, s: float, **extra: Any) -> dict[str, Any]:
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": cat,
        "segmentation": _square(x, y, s),
        "area": s * s,
        "bbox": [x, y, s, s],
        "iscrowd": 0,
        **extra,
    }


def write_instances(path: Path) -> dict[str, Any]:
    """A small instances_val2017.json in COCO's format: polygons, a compressed RLE, an
    uncompressed crowd RLE, non-contiguous category ids, an image without annotations."""
    rle = mask_utils.encode(np.asfortranarray(np.pad(np.ones((40, 40), np.uint8), ((10, 78), (10, 78)))))
    crowd = np.zeros((80, 100), np.uint8)
    crowd[50:80, 0:30] = 1
    runs: list[int] = []
    value, count = 0, 0
    for v in crowd.ravel(order="F").tolist():  # uncompressed RLE, column-major as COCO writes it
        if v != value:
            runs.append(count)
            value, count = v, 0
        count += 1
    runs.append(count)
    data = {
        "images": [
            {"id": 1, "file_name": "000000000001.jpg", "height": 80, "width": 100},
            {"id": 2, "file_name": "000000000002.jpg", "height": 128, "width": 128},
            {"id": 3, "file_name": "000000000003.jpg", "height": 50, "width": 50},
        ],
        "annotations": [
            _ann(11, 1, 1, 5, 5, 20),  # A: cat
            _ann(12, 1, 3, 60, 40, 15),  # B: dog
            {
                "id": 13,
                "image_id": 1,
                "category_id": 5,
                "segmentation": {"size": [80, 100], "counts": runs},
                "area": 900.0,
                "bbox": [0, 50, 30, 30],
                "iscrowd": 1,
            },
            {  # C: cat, as a compressed RLE, medium (40 x 40)
                "id": 21,
                "image_id": 2,
                "category_id": 1,
                "segmentation": {"size": [128, 128], "counts": rle["counts"].decode()},
                "area": 1600.0,
                "bbox": [10, 10, 40, 40],
                "iscrowd": 0,
            },
            _ann(22, 2, 7, 80, 80, 15),  # D: dining table
            _ann(23, 2, 9, 60, 10, 12),  # E: airplane
        ],
        "categories": CATEGORIES,
    }
    path.write_text(json.dumps(data))
    return data


# (sample id, answer text, token texts, token log-probabilities, parsed name, name's p)
ANSWERS = [
    (
        "1/11",
        "It is a cat.",
        ["It", " is", " a", " cat", "."],
        [-0.1, -0.1, -0.1, math.log(0.9), math.log(0.5)],
        "cat",
        0.9,
    ),
    ("1/12", "Cat", ["Cat", ""], [math.log(0.8), 0.0], "cat", 0.8),  # wrong: a dog
    (
        "2/21",
        "cat\nIt is on the left.",
        ["cat", "\n", "It is on the left."],
        [math.log(0.7), -1.0, -1.0],
        "cat",
        0.7,
    ),
    (
        "2/22",
        "Dining  table!",
        ["Din", "ing", " ", " table", "!"],
        [math.log(0.5), math.log(0.8), 0.0, math.log(0.5), -2.0],
        "dining table",
        0.2,
    ),
    ("2/23", "Aircraft.", ["Air", "craft", "."], [-0.2, -0.2, -0.2], "aircraft", None),  # out of vocabulary
]
BOXES = {"1/11": (1, [5, 5, 20, 20]), "1/12": (1, [60, 40, 15, 15]), "2/21": (2, [10, 10, 40, 40]),
         "2/22": (2, [80, 80, 15, 15]), "2/23": (2, [60, 10, 12, 12])}  # fmt: skip


def pycocotools_stats(instances: Path, detections: list[dict[str, Any]]) -> list[float]:
    """COCOeval as anyone runs it: the file, loadRes, evaluate, accumulate, summarize."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(instances))
        ev = COCOeval(gt, gt.loadRes(detections), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


def _score(tmp_path: Path, rows: list[dict[str, Any]], *extra: str) -> dict[str, Any]:
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    args = ["score", "--task", "coco_region_cls", "--predictions", str(preds)]
    assert (
        main([*args, "--data", f"instances={tmp_path / 'instances.json'}", *extra, "--output", str(out)]) == 0
    )
    results: dict[str, Any] = json.loads((out / "results.json").read_text())
    return results


@pytest.fixture
def instances(tmp_path: Path) -> Path:
    write_instances(tmp_path / "instances.json")
    return tmp_path / "instances.json"


def test_parsing_takes_the_first_line_drops_it_is_and_punctuation_and_keeps_the_span() -> None:
    for text, name in [
        ("It is a cat.", "cat"),
        ("It is an airplane!", "airplane"),
        ("It is tv", "tv"),
        ("  Dining   Table . ", "dining table"),
        ("Car.\nPerson.", "car"),
        ("cell phone</s>", "cell phone"),
        ("Aircraft.", "aircraft"),
        ("it is a cat", "it is a cat"),  # the openings are RegionGPT's, capitalised
        ("Car, person, kite.", "car, person, kite"),  # a multi-region answer names no class
        ("", ""),
        ("\n\n", ""),
    ]:
        parsed = parse_class_name(text)
        assert parsed.name == name, text
        assert " ".join(text[parsed.start : parsed.end].lower().split()) == name
    assert parse_class_name("It is a cat.") == parse_class_name("It is a cat.")
    assert (parse_class_name(" It is a cat.").start, parse_class_name(" It is a cat.").end) == (9, 12)


def test_span_logprob_takes_the_tokens_overlapping_the_name() -> None:
    texts, lps = ["It", " is", " a", " ca", "t.", ""], [-1.0, -1.0, -1.0, -0.5, -0.25, -0.125]
    # "It is a cat." -> the name "cat" is [8, 11): " ca" and "t." overlap it (t. straddles).
    assert span_logprob(texts, lps, 8, 11) == -0.75
    assert span_logprob(texts, lps, 0, 2) == -1.0
    assert span_logprob(texts, lps, 12, 12) == 0.0  # the stop token adds no text


def test_reader_one_sample_per_non_crowd_annotation(instances: Path) -> None:
    task = get_task("coco_region_cls")
    read = task.load_samples({"instances": instances, "images": instances.parent})
    assert [s.id for s in read.samples] == ["1/11", "1/12", "2/21", "2/22", "2/23"]
    assert [s.target for s in read.samples] == ["cat", "dog", "cat", "dining table", "airplane"]
    first = read.samples[0].info(RegionClass)
    assert first.vocabulary == NAMES and first.category_ids == [1, 3, 5, 7, 9]
    assert [c.ann_id for c in first.crowd] == [13]  # the image's crowd, as an ignore region
    assert read.samples[2].info(RegionClass).crowd == []
    assert read.samples[0].regions[0].area() == 400 and read.samples[2].regions[0].area() == 1600
    assert "vocabulary" not in read.samples[0].to_json().get("meta", {})  # not 80 names per row
    assert read.notes == [
        "instances.json: 5 non-crowd regions of 2 images, 5 categories (1 crowd annotations are ignore regions, not asked)"
    ]
    requests = task.build_requests(read.samples)
    assert requests[0].prompt == (
        "<image>\nWhat category name best describes the region represented by <region>? "
        "Answer the question using COCO-80 category names."
    )
    assert requests[0].needs() == {"generate", "token_logprobs"} and requests[0].choices is None
    assert requests[0].regions[0].kind == "mask"
    boxed = get_task("coco_region_cls", "box").build_requests(read.samples)
    assert [r.regions[0].box for r in boxed][:2] == [(5.0, 5.0, 25.0, 25.0), (60.0, 40.0, 75.0, 55.0)]
    ranked = get_task("coco_region_cls", "lm_rank").build_requests(read.samples)
    assert ranked[0].choices == tuple(NAMES) and ranked[0].needs() == {"rank"}


def test_accuracy_and_ap_from_the_generated_names_probability(tmp_path: Path, instances: Path) -> None:
    rows = [{"id": i, "text": t, "token_texts": tt, "token_logprobs": lp} for i, t, tt, lp, _, _ in ANSWERS]
    results = _score(tmp_path, rows)
    m = results["metrics"]
    assert m["acc"] == 60.0  # A, C, D right; B named "cat" (a dog), E "aircraft" (not a name)
    # By hand: cat = detections 0.9 TP, 0.8 FP, 0.7 TP over 2 ground truths: precision
    # [1, 1/2, 2/3] made monotone [1, 2/3, 2/3], 101 recall points: (51 + 50 * 2/3) / 101;
    # dog and airplane 0 (never detected), dining table 1; person has only a crowd: left out.
    assert m["ap"] == pytest.approx(100 * ((51 + 50 * 2 / 3) / 101 + 0 + 1 + 0) / 4)
    # pycocotools itself, on the file and the detections the answers give.
    cat_id = {c["name"]: c["id"] for c in CATEGORIES}
    dets = []
    for sid, _, _, _, name, p in ANSWERS:
        if p is not None:
            image_id, bbox = BOXES[sid]
            dets.append({"image_id": image_id, "category_id": cat_id[name], "bbox": bbox, "score": p})
    stats = pycocotools_stats(instances, dets)
    for key, k in {"ap": 0, "ap50": 1, "ap75": 2, "ap_s": 3, "ap_m": 4}.items():
        assert m[key] == pytest.approx(100 * stats[k], abs=1e-9), key
    assert stats[5] == -1 and "ap_l" not in m  # no large region: undefined, not 0
    assert results["score"] == "generated" and "constant_scores" not in results["counts"]
    assert results["counts"] == {"samples": 5, "in_vocabulary": 4, "detections": 4}
    assert any("RegionGPT released no evaluation code" in d for d in results["provenance"]["deviations"])
    per = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert [r.get("score") for r in per] == [0.9, 0.8, 0.7, 0.2, None]
    assert [r["prediction"] for r in per] == ["cat", "cat", "cat", "dining table", "aircraft"]


def test_answers_without_log_probabilities_score_one_and_are_counted(tmp_path: Path, instances: Path) -> None:
    rows: list[dict[str, Any]] = [{"id": i, "text": t} for i, t, *_ in ANSWERS]
    results = _score(tmp_path, rows)
    assert results["counts"]["constant_scores"] == 4
    assert any("4 of 4 detections scored 1.0" in d for d in results["provenance"]["deviations"])
    cat_id = {c["name"]: c["id"] for c in CATEGORIES}
    dets = [
        {"image_id": BOXES[sid][0], "category_id": cat_id[name], "bbox": BOXES[sid][1], "score": 1.0}
        for sid, _, _, _, name, p in ANSWERS
        if p is not None
    ]
    assert results["metrics"]["ap"] == pytest.approx(100 * pycocotools_stats(instances, dets)[0], abs=1e-9)
    # Log-probabilities without token texts: the whole answer's probability, counted.
    rows = [{"id": i, "text": t, "token_logprobs": lp} for i, t, _, lp, _, _ in ANSWERS]
    whole = _score(tmp_path, rows)
    assert whole["counts"]["whole_answer_scores"] == 4
    per = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert per[0]["score"] == pytest.approx(0.9 * 0.5 * math.exp(-0.3), abs=1e-6)


def test_the_constant_variant_is_flagged(tmp_path: Path, instances: Path) -> None:
    rows = [{"id": i, "text": t} for i, t, *_ in ANSWERS]
    results = _score(tmp_path, rows, "--protocol", "constant")
    assert results["score"] == "constant" and results["provenance"]["protocol_variant"] == "constant"
    assert any("constant scores" in d for d in results["provenance"]["deviations"])
    assert results["metrics"]["acc"] == 60.0
    task = get_task("coco_region_cls", "constant")
    read = task.load_samples({"instances": instances})
    assert task.build_requests(read.samples)[0].needs() == {"generate"}  # no log-probs asked


def test_lm_rank_scores_every_name_by_its_softmax(tmp_path: Path, instances: Path) -> None:
    rng = np.random.default_rng(0)
    rows, dets, right = [], [], 0
    targets = {"1/11": "cat", "1/12": "dog", "2/21": "cat", "2/22": "dining table", "2/23": "airplane"}
    for sid, (image_id, bbox) in BOXES.items():
        logprobs = [float(v) for v in rng.normal(-4, 2, len(NAMES))]
        rows.append({"id": sid, "text": "", "choice_logprobs": logprobs, "choice_tokens": [1, 1, 1, 2, 2]})
        z = np.exp(np.array(logprobs) - max(logprobs))
        probs = z / z.sum()
        right += NAMES[int(np.argmax(logprobs))] == targets[sid]
        dets += [
            {"image_id": image_id, "category_id": c["id"], "bbox": bbox, "score": float(p)}
            for c, p in zip(CATEGORIES, probs, strict=True)
        ]
    results = _score(tmp_path, rows, "--protocol", "lm_rank")
    assert results["metrics"]["acc"] == pytest.approx(100 * right / 5)
    assert results["counts"]["detections"] == 25 and results["score"] == "lm_rank"
    stats = pycocotools_stats(instances, dets)
    assert results["metrics"]["ap"] == pytest.approx(100 * stats[0], abs=1e-9)
    assert results["metrics"]["ap50"] == pytest.approx(100 * stats[1], abs=1e-9)


def test_coco_box_ap_without_detections_is_zero_where_defined() -> None:
    gt = {
        "images": [{"id": 1}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50], "area": 2500, "iscrowd": 0}
        ],
        "categories": [{"id": 1, "name": "cat"}],
    }
    assert coco_box_ap(gt, []) == {"ap": 0.0, "ap50": 0.0, "ap75": 0.0, "ap_m": 0.0}
    one = coco_box_ap(gt, [BoxDetection(1, 1, (0, 0, 50, 50), 0.3)])
    assert one == pytest.approx({"ap": 100.0, "ap50": 100.0, "ap75": 100.0, "ap_m": 100.0})


def test_bad_instances_and_predictions_are_one_clear_line(tmp_path: Path, instances: Path) -> None:
    data = json.loads(instances.read_text())
    data["annotations"][1]["category_id"] = 4
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(
        DataError, match=r"bad.json, record annotations\[1\] \(id 12\): category_id 4 is not in"
    ):
        get_task("coco_region_cls").load_samples({"instances": bad})
    skipped = get_task("coco_region_cls").load_samples({"instances": bad}, on_error="skip")
    assert len(skipped.samples) == 4 and len(skipped.skipped) == 1
    data = json.loads(instances.read_text())
    data["annotations"][0]["bbox"] = [5, 5, 0, 20]
    bad.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"record annotations\[0\] \(id 11\): bbox .* is empty"):
        get_task("coco_region_cls").load_samples({"instances": bad})
    with pytest.raises(PredictionsError, match="do not join"):
        parse_prediction(
            tmp_path / "p.jsonl",
            {"id": "a", "text": "cat", "token_texts": ["ca"], "token_logprobs": [-1.0]},
            "line 1",
        )
    with pytest.raises(PredictionsError, match='needs "token_logprobs"'):
        parse_prediction(tmp_path / "p.jsonl", {"id": "a", "text": "cat", "token_texts": ["cat"]}, "line 1")


def test_osprey_token_texts_join_to_the_decoded_answer() -> None:
    from tests.osprey_helpers import tiny_tokenizer

    tok = tiny_tokenizer()
    ids = [*tok.tokenizer.encode("red circle.", add_special_tokens=False).ids, tok.eos_id]
    pieces = tok.token_texts(ids)
    assert pieces is not None and "".join(pieces) == tok.decode(ids) == "red circle."
    assert pieces[-1] == "" and len(pieces) == len(ids)
    name = parse_class_name(tok.decode(ids))
    lps = [-0.5] * len(ids)
    # "." is outside the name: only the name's own tokens are summed.
    n_name = sum(1 for k, p in enumerate(pieces) if p and sum(map(len, pieces[:k])) < name.end)
    assert span_logprob(pieces, lps, name.start, name.end) == -0.5 * n_name
    assert n_name < len(ids) - 1


def test_a_subset_is_scored_against_its_own_regions(instances: Path) -> None:
    """Under --limit (or skipped records) AP counts only the regions asked, and their images'
    crowds: no miss is charged for a region never asked about."""
    from evalkit.records import Prediction

    task = get_task("coco_region_cls")
    samples = task.load_samples({"instances": instances}).samples[:2]  # A (cat) and B (dog), image 1
    outputs = {
        sid: Prediction(sid, text, token_logprobs=lp, token_texts=tt)
        for sid, text, tt, lp, _, _ in ANSWERS
        if sid in {"1/11", "1/12"}
    }
    scored = task.score(samples, outputs, {})
    # cat: 0.9 TP (A), 0.8 FP (B named cat) over one ground truth -> AP 1; dog: missed -> 0.
    assert scored.metrics["ap"] == pytest.approx(50.0) and scored.metrics["acc"] == 50.0
