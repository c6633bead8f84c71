"""lvis_binary_choice: Ferret's LVIS binary-choice protocol (SPHINX-V Table 4).

``reference_accuracy`` restates apple/ml-ferret ``3c9e5c9`` ``ferret/eval/eval_lvis.py`` from
its text (name / synonym rewriting, ``remove_not_phrases_v2``, substring match), and
``reference_question`` the question building of ``model_lvis.py`` ``LVISData_V1``.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from evalkit.tasks.sphinx_v.ferret_lvis import FerretChoice

from evalkit.cli import main
from evalkit.errors import DataError
from evalkit.metrics.binary_choice import ferret_correct, remove_not_phrases, strict_choice
from evalkit.report.baselines import load_baselines
from evalkit.report.leaderboard import build_tables, render_markdown
from evalkit.report.runs import load_runs
from evalkit.task import get_task
from tests.helpers import polygon_square, write_predictions
from tests.report_helpers import write_run

REPO = Path(__file__).resolve().parents[1]


def reference_accuracy(predictions: list[dict[str, Any]]) -> float:
    def remove_not_phrases_v2(text: str) -> str:
        text = re.sub(r"\s+not[^,.]*[,.]", "", text)
        return re.sub(r"\s+no[^,.]*[,.]", "", text)

    total_correct = 0
    for i in predictions:
        name = i["name"].replace("_", " ").strip()
        new_synonyms = []
        for jj in i["synonyms"]:
            if "(" in jj:
                split_list = jj.split("(")
                new_synonyms.append(split_list[0].replace("_", " ").strip())
                new_synonyms.append(split_list[1].replace("_", " ").replace(")", "").strip())
            else:
                new_synonyms.append(jj.replace("_", " ").strip())
        processed_text = remove_not_phrases_v2(i["text"])
        if name in processed_text or any(syn_i in processed_text for syn_i in new_synonyms):
            total_correct += 1
    return total_correct / len(predictions) * 100


def reference_question(idx: int, i: dict[str, Any], region_format: str) -> str:
    question_prompt = "Is the object <location> of the image a <obj1> or a <obj2>?"
    ratio_w, ratio_h = 1000 * 1.0 / i["width"], 1000 * 1.0 / i["height"]
    if region_format == "point":
        loc = "[{}, {}]".format(int(i["sample_point"][0] * ratio_w), int(i["sample_point"][1] * ratio_h))
    elif region_format == "box":
        loc = "[{}, {}, {}, {}]".format(*[int(v * 1000) for v in i["bbox_norm"]])
    else:
        r = i["free_shape_bbox_raw"]
        loc = "[{}, {}, {}, {}]".format(  # noqa: UP032 - model_lvis.py's own form
            int(r[0] * ratio_w), int(r[1] * ratio_h), int(r[2] * ratio_w), int(r[3] * ratio_h)
        )
    q = question_prompt.replace("<location>", loc).replace("of the image", "<region_fea> of the image")
    if idx % 2 == 0:
        return q.replace("<obj1>", i["name"]).replace("<obj2>", i["neg_class"])
    return q.replace("<obj2>", i["name"]).replace("<obj1>", i["neg_class"])


def test_protocols_vector_4_and_the_quirks_that_are_the_metric() -> None:
    assert remove_not_phrases("It is a notebook.") == "It is a"
    assert not ferret_correct("It is a notebook.", "notebook", [])
    assert ferret_correct("The object is a cat, not a dog.", "cat", [])
    assert not ferret_correct("The object is a cat, not a dog.", "dog", [])
    assert ferret_correct("school bus.", "bus", [])
    assert ferret_correct("a catamaran", "cat", [])  # substring
    assert not ferret_correct("Dog.", "dog", [])  # case-sensitive
    assert ferret_correct("It is not a dog", "dog", [])  # no final , or . : the clause stays
    assert not ferret_correct("A bowl of noodle, I think.", "noodle", [])  # " noodle," removed
    assert not ferret_correct("it is a bow", "bow_(weapon)", [])  # the name keeps its gloss
    assert ferret_correct("a weapon", "bow_(weapon)", ["bow_(weapon)"])  # gloss of a synonym
    assert ferret_correct("a bow", "bow_(weapon)", ["bow_(weapon)"])
    assert ferret_correct("the teddy bear", "teddy_bear", [])
    assert strict_choice("Teddy bear.", "teddy_bear", "dog") == "right"
    assert strict_choice("A dog", "teddy_bear", "dog") == "negative"
    assert strict_choice("a teddy bear, not a dog", "teddy_bear", "dog") == "neither"


def _records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    names = ["teddy_bear", "bow_(weapon)", "notebook", "bus", "cat", "dog", "noodle", "school_bus"]
    out = []
    for k in range(n):
        w, h = rng.randint(50, 90), rng.randint(40, 80)
        x1, y1 = rng.randint(0, w // 2), rng.randint(0, h // 2)
        x2, y2 = rng.randint(x1 + 3, w), rng.randint(y1 + 3, h)
        name, neg = rng.sample(names, 2)
        out.append(
            {
                "id": 5000 + k,
                "image_path": f"dataset/cocoval2017/{k:012d}.jpg",
                "width": w,
                "height": h,
                "name": name,
                "synonyms": [name, "bowandarrow"] if name == "bow_(weapon)" else [name],
                "neg_class": neg,
                "sample_point": [rng.randint(x1, x2 - 1), rng.randint(y1, y2 - 1)],
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "bbox_norm": [x1 / w, y1 / h, x2 / w, y2 / h],
                "free_shape_bbox_raw": [x1 + 1, y1, x2 - 1, y2 - 2],
            }
        )
    return out


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.parametrize("region", ["point", "box", "freeform"])
def test_ferret_prompts_equal_model_lvis_questions(tmp_path: Path, region: str) -> None:
    records = _records(9)
    path = _write(tmp_path / "lvis_eval.jsonl", records)
    task = get_task("lvis_binary_choice", f"ferret_{region}")
    samples = task.load_samples({"questions": path, "images": tmp_path}).samples
    requests = task.build_requests(samples)
    for idx, (r, rec) in enumerate(zip(requests, records, strict=True)):
        assert r.prompt == "<image>\n" + reference_question(idx, rec, region).replace(
            "<region_fea>", "<region>"
        )
        assert r.image_path == str(tmp_path / f"{idx:012d}.jpg")
        (region_,) = r.regions
        if region == "point":
            assert region_.points == (tuple(float(v) for v in rec["sample_point"]),)
        elif region == "box":
            bn, w, h = rec["bbox_norm"], rec["width"], rec["height"]
            assert region_.box == (bn[0] * w, bn[1] * h, bn[2] * w, bn[3] * h)
        else:
            x1, y1, x2, y2 = rec["free_shape_bbox_raw"]
            assert region_.box == (x1, y1, x2 + 1, y2 + 1)  # Ferret's mask covers x2, y2
    default = get_task("lvis_binary_choice").build_requests(samples)
    first, second = records[0], records[1]
    assert default[0].prompt.endswith(f"Is it {first['name']} or {first['neg_class']}?")
    assert default[1].prompt.endswith(f"Is it {second['neg_class']} or {second['name']}?")  # odd line


def test_free_form_segment_mask_is_read_as_ferret_indexes_it(tmp_path: Path) -> None:
    rec = _records(1)[0]
    w, h = rec["width"], rec["height"]
    mask_wh = np.zeros((w, h), int)  # indexed [x][y] (model_lvis.py asserts shape (W, H))
    x1, y1, _, _ = rec["free_shape_bbox_raw"]
    mask_wh[x1 + 1 : x1 + 3, y1 : y1 + 2] = 1
    mask_wh[0, 0] = 1  # outside the box: dropped by the box restriction
    rec["free_shape_segment_mask"] = mask_wh.tolist()
    path = _write(tmp_path / "q.jsonl", [rec])
    task = get_task("lvis_binary_choice", "freeform")
    (request,) = task.build_requests(task.load_samples({"questions": path, "images": None}).samples)
    got = request.regions[0].to_mask()
    want = np.zeros((h, w), np.uint8)
    want[y1 : y1 + 2, x1 + 1 : x1 + 3] = 1
    assert request.regions[0].kind == "mask" and (got == want).all()
    rec["free_shape_segment_mask"] = mask_wh.T.tolist()
    _write(path, [rec])
    with pytest.raises(DataError, match=r"shape .* expected \(W, H\)"):
        task.load_samples({"questions": path, "images": None})


def test_a_synonym_the_released_asserts_reject_is_one_line(tmp_path: Path) -> None:
    rec = _records(1)[0]
    rec["synonyms"] = ["bow_(weapon"]
    with pytest.raises(DataError, match=r"line 1 \(id 5000\).*one '\(' \.\.\. '\)' pair"):
        get_task("lvis_binary_choice").load_samples(
            {"questions": _write(tmp_path / "q.jsonl", [rec]), "images": None}
        )


def test_score_cli_equals_eval_lvis_and_records_the_input(tmp_path: Path) -> None:
    records = _records(24, seed=3)
    path = _write(tmp_path / "lvis_eval.jsonl", records)
    styles = [
        lambda r: f"It is a {r['name'].replace('_', ' ')}.",
        lambda r: f"The object is a {r['neg_class'].replace('_', ' ')}, not a {r['name'].replace('_', ' ')}.",
        lambda r: r["name"].replace("_", " ").capitalize() + ".",
        lambda r: f"It is not a {r['neg_class']}",
        lambda r: "I am not sure.",
        lambda r: r["name"].replace("_", " "),
    ]
    texts = [styles[k % len(styles)](r) for k, r in enumerate(records)]
    write_predictions(tmp_path / "p.jsonl", [(str(r["id"]), t) for r, t in zip(records, texts, strict=True)])
    out = tmp_path / "out"
    args = [
        "score",
        "--task",
        "lvis_binary_choice",
        "--data",
        f"questions={path}",
        "--predictions",
        str(tmp_path / "p.jsonl"),
    ]
    assert main([*args, "--output", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    expected = reference_accuracy([{**r, "text": t} for r, t in zip(records, texts, strict=True)])
    assert results["metrics"]["accuracy"] == pytest.approx(expected)
    assert 0 < expected < 100
    assert results["input"] == "box" and results["counts"]["objects"] == 24
    free = tmp_path / "free"
    assert main([*args, "--protocol", "freeform", "--output", str(free)]) == 0
    assert json.loads((free / "results.json").read_text())["input"] == "free-form"
    strict = tmp_path / "strict"
    assert main([*args, "--protocol", "strict", "--output", str(strict)]) == 0
    s = json.loads((strict / "results.json").read_text())
    right = sum(
        strict_choice(t, r["name"], r["neg_class"]) == "right" for r, t in zip(records, texts, strict=True)
    )
    assert s["metrics"]["accuracy"] == pytest.approx(100 * right / 24)
    assert s["counts"]["chose_negative"] == sum(
        strict_choice(t, r["name"], r["neg_class"]) == "negative" for r, t in zip(records, texts, strict=True)
    )


def _raw_lvis(tmp_path: Path) -> Path:
    rng = random.Random(5)
    cats = [
        {"id": k + 1, "name": n, "synonyms": [n]} for k, n in enumerate(["dog", "cat", "bow_(weapon)", "bus"])
    ]
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for i in range(6):
        w, h = 60 + i, 50
        images.append(
            {"id": 10 + i, "width": w, "height": h, "coco_url": f"http://x/val2017/{10 + i:012d}.jpg"}
        )
        for _ in range(3):
            s = rng.randint(6, 20)
            x, y = rng.randint(0, w - s - 1), rng.randint(0, h - s - 1)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": 10 + i,
                    "category_id": rng.randint(1, 4),
                    "segmentation": polygon_square(x, y, s),
                    "bbox": [x, y, s, s],
                    "area": s * s,
                }
            )
    path = tmp_path / "lvis_v1_val.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def test_rebuilt_from_raw_lvis_with_the_seeded_defaults(tmp_path: Path) -> None:
    from evalkit.tasks.sphinx_v.ferret_lvis_build import main as build

    from evalkit.regions import Region

    raw = _raw_lvis(tmp_path)
    task = get_task("lvis_binary_choice")
    loaded = task.load_samples({"questions": raw, "images": None})
    assert any("REBUILT" in n for n in loaded.notes)
    samples = loaded.samples
    data = json.loads(raw.read_text())
    anns = {a["id"]: a for a in data["annotations"]}
    imgs = {i["id"]: i for i in data["images"]}
    names = {c["id"]: c["name"] for c in data["categories"]}
    assert [s.id for s in samples] == sorted((s.id for s in samples), key=int)  # annotation-id order
    chosen = sorted(
        random.Random(42).sample(sorted(anns.values(), key=lambda a: a["id"]), 18), key=lambda a: a["id"]
    )
    assert [s.id for s in samples] == [str(a["id"]) for a in chosen]  # all 18 (fewer than 1,000)
    for s in samples:
        info = s.info(FerretChoice)
        ann = anns[int(s.id)]
        img = imgs[ann["image_id"]]
        assert info.name == names[ann["category_id"]] and info.neg_class != info.name and info.rebuilt
        mask = Region.from_segmentation(ann["segmentation"], img["height"], img["width"]).to_mask()
        x, y = info.sample_point
        assert mask[int(y), int(x)] == 1  # the point is on the object
        x1, y1, x2, y2 = info.free_shape_bbox_raw or []
        assert 0 <= x1 <= x2 < img["width"] and 0 <= y1 <= y2 < img["height"]
    # the CLI writes the same records as a Ferret-schema file
    assert build([str(raw), str(tmp_path / "lvis_eval.jsonl")]) == 0
    again = task.load_samples({"questions": tmp_path / "lvis_eval.jsonl", "images": None}).samples
    assert [(a.id, a.info(FerretChoice).sample_point, a.info(FerretChoice).neg_class) for a in again] == [
        (b.id, b.info(FerretChoice).sample_point, b.info(FerretChoice).neg_class) for b in samples
    ]


def test_a_run_fills_the_board_column_of_the_kind_it_showed(tmp_path: Path) -> None:
    write_run(tmp_path / "mine" / "free", "lvis_binary_choice", "mine", {"accuracy": 90.5})
    results = json.loads((tmp_path / "mine" / "free" / "results.json").read_text())
    results["input"] = "free-form"
    (tmp_path / "mine" / "free" / "results.json").write_text(json.dumps(results))
    md = render_markdown(
        build_tables(
            load_runs([tmp_path]), load_baselines(REPO / "leaderboards" / "baselines.yaml"), all_boards=False
        ),
        reproducible=True,
    )
    lines = [line for line in md.splitlines() if line.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    mine = next(
        [c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("| mine")
    )
    assert mine[head.index("LVIS choice free-form")] == "**90.50**"  # above SPHINX-V's 88.96
    assert mine[head.index("LVIS choice box")] == ""
