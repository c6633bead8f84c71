"""SPHINX-V multi-region referring classification against ROC_eval.py's arithmetic.

``reference_roc`` restates the released loop (Draw-and-Understand ``28a1bd1``,
``accessory/eval/Referring_Object_Classification/ROC_eval.py``) from its text: per record,
``extract_categories_from_string`` on GT and prediction, a loop over the predicted lines,
``_``/``:`` -> space on the GT only, one ``SentenceTransformer.encode`` per string,
``util.cos_sim``, ``SemanticIOU`` on lower-cased strings, running sums.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from evalkit.tasks.sphinx_v.region_lines import roc_lines
from evalkit.tasks.sphinx_v.sphinx_v_json import SphinxVQuestion
from evalkit.tasks.sphinx_v.sphinxv_roc import roc_category, roc_scores

from evalkit.cli import main
from evalkit.errors import DataError
from evalkit.task import get_task
from tests.helpers import PACO_NAMES, write_osprey_subset, write_predictions
from tests.sphinx_v_helpers import sphinx_v_records, write_flat_images, write_json


def reference_roc(records: list[dict], predictions: list[str], bert) -> tuple[float, float]:
    from sentence_transformers import util

    def extract(string: str) -> list[str]:
        return [line.split(": ")[1] for line in string.strip().split("\n") if ": " in line]

    all_sim, all_iou, all_num = 0.0, 0.0, 0
    for data, prediction in zip(records, predictions, strict=True):
        gt_list = extract(data["gt_answers"])
        output_list = extract(prediction)
        for i in range(len(output_list)):
            outputs = output_list[i]
            category = gt_list[i].replace("_", " ").replace(":", " ")
            a = bert.encode(outputs, convert_to_tensor=True)
            b = bert.encode(category, convert_to_tensor=True)
            all_sim += float(util.cos_sim(a, b)[0][0])
            v, t = set(outputs.lower().split()), set(category.lower().split())
            all_iou += len(v & t) / len(v | t)
            all_num += 1
    return all_sim / all_num * 100, all_iou / all_num * 100


def toy_encoder(texts):
    """Equal strings -> cosine 1; distinct -> orthogonal-ish, deterministic."""
    return np.array([[1.0, float(len(t) % 7), float(t.count("o"))] for t in texts])


def test_protocols_vector_6_positional_lines_and_raw_predictions() -> None:
    # PROTOCOLS_WAVE2.md §P item 6.
    gt = "Region 1: bow_(weapon)\nRegion 2: dog"
    assert roc_lines("Region 1: bow (weapon)\nsome note\nRegion 2: dog") == ["bow (weapon)", "dog"]
    assert [roc_category(c) for c in roc_lines(gt)] == ["bow (weapon)", "dog"]
    both = roc_scores([gt], ["Region 1: bow (weapon)\nsome note\nRegion 2: dog"], toy_encoder)
    assert [line.s_iou for line in both.images[0].lines] == [1.0, 1.0]
    assert both.s_iou == 100.0 and both.n_scored == 2
    raw = roc_scores([gt], ["Region 1: bow_(weapon)"], toy_encoder)
    assert raw.n_scored == 1 and raw.n_gt == 2
    assert raw.images[0].lines[0].s_iou == 0.0  # {bow_(weapon)} vs {bow, (weapon)}: no normalisation
    assert raw.s_iou == 0.0  # one scored line: the second region is not in the denominator
    strict = roc_scores([gt], ["Region 1: bow_(weapon)"], toy_encoder, strict_coverage=True)
    assert strict.s_iou == 0.0 and strict.ss == pytest.approx(raw.ss / 2)


def test_only_the_second_colon_piece_and_a_shifted_line() -> None:
    # the whole answer is stripped, its lines are not
    assert roc_lines("Region 1: a: b: c\nRegion 2:dog\n  \nRegion 3: cat \nRegion 4: x ") == [
        "a",
        "cat ",
        "x",
    ]
    # "Region 2:dog" has no ": ": dropped, so "cat" pairs with the GT's second region.
    r = roc_scores(
        ["Region 1: a\nRegion 2: dog\nRegion 3: cat"],
        ["Region 1: a: b: c\nRegion 2:dog\nRegion 3: cat \n"],
        toy_encoder,
    )
    assert [(x.prediction, x.target) for x in r.images[0].lines] == [("a", "a"), ("cat", "dog")]
    # PACO parts: "dog:leg" -> "dog leg"; the S-IoU is on lower-cased token sets
    r = roc_scores(["Region 1: dog:leg"], ["Region 1: Dog Leg"], toy_encoder)
    assert r.images[0].lines[0].target == "dog leg" and r.s_iou == 100.0


def test_hand_computed_s_iou_micro_average() -> None:
    targets = ["Region 1: teddy_bear\nRegion 2: cow", "Region 1: fire_engine"]
    preds = ["Region 1: a brown bear\nRegion 2: cow\nRegion 3: extra", "Region 1: engine"]
    r = roc_scores(targets, preds, toy_encoder)
    # lines: (a brown bear | teddy bear) 1/4, (cow | cow) 1, (engine | fire engine) 1/2; the
    # third predicted line has no GT: not scored (the reference would raise IndexError)
    assert r.n_scored == 3 and r.s_iou == pytest.approx((0.25 + 1 + 0.5) / 3 * 100)


@pytest.fixture()
def lvis_box(tmp_path: Path) -> tuple[Path, list[dict]]:
    records = sphinx_v_records("LVIS_box", 8, seed=2)
    return write_json(tmp_path / "LVIS_box.json", records), records


def test_reader_keeps_the_files_prompts_and_needs_images_only_for_regions(tmp_path: Path, lvis_box) -> None:
    path, records = lvis_box
    task = get_task("sphinxv_roc_lvis_box")
    scored = task.load_samples({"annotations": path, "images": None}).samples
    assert [s.id for s in scored] == [f"LVIS_box/{r['question_id']}" for r in records]
    assert all(s.regions == [] for s in scored)  # no image size without images: score only
    assert scored[0].target == records[0]["gt_answers"]
    assert scored[0].info(SphinxVQuestion).vp == records[0]["bbox"]
    images = write_flat_images(tmp_path / "img", [r["image_name"] for r in records])
    run = task.load_samples({"annotations": path, "images": images}).samples
    x, y, w, h = records[0]["bbox"][0]
    assert run[0].regions[0].box == (x, y, x + w, y + h) and run[0].regions[0].width == 64
    requests = task.build_requests(run)
    for r, s in zip(requests, run, strict=True):
        n = min(10, len(s.regions))
        assert r.regions == s.regions[:n]
        assert r.prompt == (
            "<image>\n"
            + "\n".join(f"Region {i}: <region>" for i in range(1, n + 1))
            + "\nPlease identify the labels of each marked region in the image."
        )
    verbatim = get_task("sphinxv_roc_lvis_box", "verbatim").build_requests(run)
    assert verbatim[0].prompt == "<image>\nPlease identify the labels of each marked region in the image."
    assert verbatim[0].regions == requests[0].regions


def test_point_files_number_marks_and_box_files_are_refused_by_point_tasks(tmp_path: Path, lvis_box) -> None:
    path, _ = lvis_box
    with pytest.raises(DataError, match="a LVIS_box record, but this task reads LVIS_point files"):
        get_task("sphinxv_roc_lvis_point").load_samples({"annotations": path, "images": None})
    records = sphinx_v_records("LVIS_point", 3, seed=1)
    points = write_json(tmp_path / "LVIS_point.json", records)
    images = write_flat_images(tmp_path / "img", [r["image_name"] for r in records])
    task = get_task("sphinxv_roc_lvis_point")
    samples = task.load_samples({"annotations": points, "images": images}).samples
    assert samples[0].regions[0].kind == "points" and samples[0].regions[0].points == (
        tuple(records[0]["points"][0]),
    )
    assert task.build_requests(samples)[0].prompt.splitlines()[1] == "Mark 1: <region>"
    records[0].pop("points")
    records[0]["bbox"] = [[1, 1, 2, 2]]
    write_json(points, records)
    with pytest.raises(DataError, match="has 'bbox', not 'points'"):
        task.load_samples({"annotations": points, "images": None})


def test_rebuilt_from_osprey_subset_boxes_and_seeded_points(tmp_path: Path) -> None:
    from evalkit.regions.convert import seeded_point, tight_box

    subset = write_osprey_subset(tmp_path / "paco.json", PACO_NAMES, 5, seed=4)
    task = get_task("sphinxv_roc_paco_point")
    loaded = task.load_samples({"annotations": tmp_path / "paco.json", "images": None})
    assert any("REBUILT" in n for n in loaded.notes)
    by_image = {r["file_name"]: r for r in subset}
    rng = np.random.default_rng(0)  # one stream over the objects in file order
    from evalkit.regions import Region

    for s in loaded.samples:
        rec = by_image[s.image]
        assert s.id == f"PACO_point/{int(rec['file_name'][:-4])}" and s.info(SphinxVQuestion).rebuilt
        assert s.target == "\n".join(f"Region {i + 1}: {c}" for i, c in enumerate(rec["categories"]))
        for ann, vp, region in zip(rec["annotations"], s.info(SphinxVQuestion).vp, s.regions, strict=True):
            mask = Region.from_segmentation(ann["segmentation"], rec["height"], rec["width"]).to_mask()
            x, y = seeded_point(mask, rng)
            assert vp == [x, y] and region.points == ((x, y),) and mask[int(y), int(x)]
    boxes = get_task("sphinxv_roc_paco_box").load_samples(
        {"annotations": tmp_path / "paco.json", "images": None}
    )
    first = subset[0]
    mask = Region.from_segmentation(
        first["annotations"][0]["segmentation"], first["height"], first["width"]
    ).to_mask()
    x1, y1, x2, y2 = tight_box(mask)
    assert boxes.samples[0].info(SphinxVQuestion).vp[0] == [x1, y1, x2 - x1, y2 - y1]


def test_rebuild_cli_writes_the_released_schema(tmp_path: Path) -> None:
    from evalkit.tasks.sphinx_v.rebuild import main as rebuild

    write_osprey_subset(tmp_path / "lvis.json", ["dog", "cat"], 3, seed=1)
    assert rebuild(["LVIS_box", str(tmp_path / "lvis.json"), str(tmp_path / "LVIS_box.json")]) == 0
    records = json.loads((tmp_path / "LVIS_box.json").read_text())
    assert set(records[0]) == {
        "image_name",
        "question",
        "question_id",
        "dataset_name",
        "gt_answers",
        "bbox",
        "height",
        "width",
    }
    assert records[0]["question"] == "Please identify the labels of each marked region in the image."
    # the written file reads back as a SPHINX-V file (not rebuilt again), with regions
    samples = (
        get_task("sphinxv_roc_lvis_box")
        .load_samples({"annotations": tmp_path / "LVIS_box.json", "images": None})
        .samples
    )
    assert not samples[0].info(SphinxVQuestion).rebuilt and samples[0].regions


@pytest.mark.slow
def test_score_cli_equals_the_reference_loop(tmp_path: Path, capsys, lvis_box) -> None:
    from evalkit.metrics.embeddings import minilm

    path, records = lvis_box
    outputs = []
    for k, r in enumerate(records):
        gt = r["gt_answers"].split("\n")
        if k % 4 == 0:  # exact, underscores kept: S-IoU punishes them
            outputs.append("\n".join(gt))
        elif k % 4 == 1:  # fewer lines, case changed, one line without ": "
            outputs.append("\n".join(line.replace("_", " ").upper() for line in gt[:3]) + "\nThat is all")
        elif k % 4 == 2:
            outputs.append("Region 1: a small dog\nRegion 2: teddy bear")
        else:
            outputs.append("\n".join(line.replace("_", " ") for line in gt[:10]))
    write_predictions(
        tmp_path / "preds.jsonl",
        [(f"LVIS_box/{r['question_id']}", o) for r, o in zip(records, outputs, strict=True)],
    )
    out = tmp_path / "out"
    code = main(
        [
            "score",
            "--task",
            "sphinxv_roc_lvis_box",
            "--data",
            f"annotations={path}",
            "--predictions",
            str(tmp_path / "preds.jsonl"),
            "--output",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    ss, s_iou = reference_roc(records, outputs, minilm()._model)
    assert abs(results["metrics"]["ss"] - ss) <= 1e-4
    assert abs(results["metrics"]["s_iou"] - s_iou) <= 1e-9
    assert 0 < s_iou < 100
    n_gt = sum(len(r["gt_answers"].split("\n")) for r in records)
    assert results["metrics"]["n_gt_regions"] == n_gt
    n_scored = sum(
        min(len(roc_lines(o)), len(r["gt_answers"].split("\n")))
        for r, o in zip(records, outputs, strict=True)
    )
    assert results["metrics"]["n_scored"] == n_scored < n_gt
    assert results["counts"]["regions_not_shown"] == sum(max(0, len(r["bbox"]) - 10) for r in records)
    strict = tmp_path / "strict"
    assert (
        main(
            [
                "score",
                "--task",
                "sphinxv_roc_lvis_box",
                "--protocol",
                "strict_coverage",
                "--data",
                f"annotations={path}",
                "--predictions",
                str(tmp_path / "preds.jsonl"),
                "--output",
                str(strict),
            ]
        )
        == 0
    )
    strict_results = json.loads((strict / "results.json").read_text())
    assert strict_results["metrics"]["s_iou"] == pytest.approx(s_iou * n_scored / n_gt)
