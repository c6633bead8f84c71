"""llava_bench_coco: LLaVA-Bench (COCO) with LLaVA's GPT review, against a fake judge.

``llava_content`` restates ``eval_gpt_review_visual.py``'s user content (haotian-liu/LLaVA
``32ddfc5``) and ``category_score`` its summariser (``summarize_gpt_review.py``: numpy means
rounded to 3 decimals, ``round(model / reference * 100, 1)``) independently of evalkit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from evalkit.tasks.judged.llava_bench import LlavaQuestion

from evalkit.cli import main
from evalkit.task import get_task
from tests.fake_openai import FakeOpenAI, text_of
from tests.judged_helpers import KEY, judge_bodies, judge_env, make_images, rows  # noqa: F401

QUESTIONS = [
    (0, "000000441147.jpg", "What is the color of the two suitcases in the image?", "conv"),
    (1, "000000441147.jpg", "Analyze the image in a comprehensive and detailed manner.", "detail"),
    (2, "000000441147.jpg", "What potential factors could make these suitcases valuable?", "complex"),
    (3, "000000353536.jpg", "What are the main objects on the table?", "conv"),
    (4, "000000353536.jpg", "Describe the following image.", "detail"),
    (5, "000000353536.jpg", "What activity might have recently taken place around this table?", "complex"),
]
CONTEXT = [
    {
        "id": "000000441147",
        "image": "000000441147.jpg",
        "captions": ["Two suitcases stacked on top of each other.", "An old brown suitcase on a black one."],
        "instances": [
            {"category": "suitcase", "bbox": [0.0, 0.2, 0.5, 0.9]},
            {"category": "suitcase", "bbox": [0.4, 0.313, 1.0, 0.8]},
        ],
    },
    {
        "id": "000000353536",
        "image": "000000353536.jpg",
        "captions": ["A dining table with plates and cups."],
        "instances": [{"category": "dining table", "bbox": [0.0, 0.25, 1, 1.0]}],
    },
]


def write_bench(root: Path, shared: Path) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    q = "".join(
        json.dumps({"question_id": i, "image": im, "text": t, "category": c}) + "\n"
        for i, im, t, c in QUESTIONS
    )
    (root / "qa90_questions.jsonl").write_text(q)
    a = "".join(
        json.dumps({"question_id": i, "text": f"GPT-4 answer {i}.", "category": c}) + "\n"
        for i, _, _, c in QUESTIONS
    )
    (root / "qa90_gpt4_answer.jsonl").write_text(a)
    (root / "caps.jsonl").write_text("".join(json.dumps(c) + "\n" for c in CONTEXT))
    data = {
        "questions": root / "qa90_questions.jsonl",
        "answers": root / "qa90_gpt4_answer.jsonl",
        "context": root / "caps.jsonl",
        "rule": shared / "fixtures" / "llava" / "rule.json",
    }
    return [x for k, v in data.items() for x in ("--data", f"{k}={v}")]


def llava_content(
    ques: dict[str, Any], inst: dict[str, Any], ans1: str, ans2: str, rule: dict[str, str]
) -> str:
    cap_str = "\n".join(inst["captions"])
    box_str = "\n".join([f"{instance['category']}: {instance['bbox']}" for instance in inst["instances"]])
    prompt, role = rule["prompt"], rule["role"]
    return (
        f"[Context]\n{cap_str}\n\n{box_str}\n\n"
        f"[Question]\n{ques['text']}\n\n"
        f"[{role} 1]\n{ans1}\n\n[End of {role} 1]\n\n"
        f"[{role} 2]\n{ans2}\n\n[End of {role} 2]\n\n"
        f"[System]\n{prompt}\n\n"
    )


def category_score(tuples: list[list[float]]) -> float:
    stats = [round(x, 3) for x in np.asarray(tuples).mean(0).tolist()]
    return round(stats[1] / stats[0] * 100, 1)


def _pair(review: str) -> list[float] | None:
    fields = review.split("\n")[0].replace(",", " ").split(" ")
    try:
        return [float(fields[0]), float(fields[1])] if len(fields) == 2 else None
    except ValueError:
        return None


def test_requests_carry_the_full_image_box_or_none(tmp_path: Path, shared_dir: Path) -> None:
    args = write_bench(tmp_path / "bench", shared_dir)
    make_images(tmp_path / "img", [q[1] for q in QUESTIONS])
    data = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args[1::2]}
    task = get_task("llava_bench_coco")
    loaded = task.load_samples(task.resolve_data({**data, "images": str(tmp_path / "img")}))
    assert "line orders agree" in loaded.notes[0]
    samples = loaded.samples
    (first, *_) = task.build_requests(samples)
    assert first.prompt == "<image>\nWhat is the color of the two suitcases in the image?"
    info = samples[0].info(LlavaQuestion)
    w, h = info.width, info.height
    assert [r.box for r in first.regions] == [(0.0, 0.0, float(w), float(h))]
    assert get_task("llava_bench_coco", "image_only").build_requests(samples)[0].regions == []


@pytest.mark.usefixtures("judge_env")
def test_score_with_llavas_review_content_and_summary(tmp_path: Path, shared_dir: Path) -> None:
    args = write_bench(tmp_path / "bench", shared_dir)
    preds = tmp_path / "p.jsonl"
    preds.write_text(
        "".join(json.dumps({"id": str(i), "text": f"My answer {i}."}) + "\n" for i, *_ in QUESTIONS)
    )
    with FakeOpenAI(fault_rate=0.0, api_key=KEY) as srv:
        out = tmp_path / "out"
        assert (
            main(
                [
                    "score",
                    "--task",
                    "llava_bench_coco",
                    "--predictions",
                    str(preds),
                    *args,
                    "--output",
                    str(out),
                    "--judge-base-url",
                    srv.url,
                ]
            )
            == 0
        )
        bodies = judge_bodies(srv)
    rules = json.loads((shared_dir / "fixtures" / "llava" / "rule.json").read_text())
    contexts = {c["image"]: c for c in CONTEXT}
    expected = {}
    for i, image, text, category in QUESTIONS:
        content = llava_content(
            {"text": text}, contexts[image], f"GPT-4 answer {i}.", f"My answer {i}.", rules[category]
        )
        expected[content] = category
    seen = [text_of(b["messages"]).split("\n", 1)[1] for b in bodies]
    assert sorted(seen) == sorted(expected)  # byte for byte what the released script sends
    assert {b["model"] for b in bodies} == {"gpt-4-0314"} and {b["temperature"] for b in bodies} == {0.2}
    results = json.loads((out / "results.json").read_text())
    by_category: dict[str, list[list[float]]] = {"all": []}
    for row in rows(out / "samples.jsonl"):
        pair = _pair(row["review"])
        assert pair is not None
        by_category.setdefault(row["groups"][0], []).append(pair)
        by_category["all"].append(pair)
    for category in ("conv", "detail", "complex"):
        assert results["metrics"][f"relative_score/{category}"] == category_score(by_category[category])
    assert results["metrics"]["relative_score"] == category_score(by_category["all"])
    deviations = results["provenance"]["deviations"]
    assert not any("[Context]" in d for d in deviations)  # LLaVA's script has no '[Context]\' quirk
    assert any("[0, 0, W, H]" in d for d in deviations)
