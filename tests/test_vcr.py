"""VCR (vcr_qa, vcr_qar, vcr_q_ar): the r2c metric, ViP-LLaVA's prompts, the objects as regions.

``vip_build_prompt`` and the QA->R string restate ViP-LLaVA ``77079b1``
``llava/visual_prompt_organizer.py`` from its text; ``r2c_accuracies`` restates r2c
``models/eval_q2ar.py``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from evalkit.tasks.vcr.vcr_choice import hit, render_tokens

from evalkit.cli import main
from evalkit.errors import DataError
from evalkit.metrics.vcr import vcr_accuracies
from evalkit.task import get_task
from tests.helpers import write_predictions


def vip_build_prompt(question: str, options: list[str]) -> str:
    options_str = "\n".join([f"{chr(65 + i)}. {option}" for i, option in enumerate(options)])
    return f"""{question}
{options_str}
Answer with the option's letter from the given choices directly."""


def r2c_accuracies(answer_hits: list[bool], rationale_hits: list[bool]) -> tuple[float, float, float]:
    a, r = np.array(answer_hits), np.array(rationale_hits)
    return float(np.mean(a)) * 100, float(np.mean(r)) * 100, float(np.mean(a & r)) * 100


def test_protocols_vector_9_the_joint_is_a_per_question_and() -> None:
    got = vcr_accuracies([True, True, False, True], [True, False, True, True])
    assert got == {"q2a": 75.0, "qa2r": 75.0, "q2ar": 50.0}  # not 0.75 * 0.75
    assert tuple(got.values()) == r2c_accuracies([True, True, False, True], [True, False, True, True])


def test_tokens_objects_and_letters() -> None:
    objects = ["person", "person", "dog"]
    text, refs = render_tokens(["Why", "is", [0], "looking", "at", [1, 2], "?"], objects)
    assert text == "Why is person <region> looking at person <region> and dog <region>?"
    assert refs == [0, 1, 2]
    assert render_tokens(["He", "is", "happy", ",", "so", [0], "smiles", "."], objects)[0] == (
        "He is happy, so person <region> smiles."
    )
    assert [hit(t, 0, "lenient") for t in ["A", "A.", "(A) yes", "A) x", " a", "B", "The answer is A"]] == [
        True, True, True, True, False, False, False,
    ]  # fmt: skip
    assert [hit(t, 0, "exact") for t in ["A", " a\n", "A.", "(A)"]] == [True, True, False, False]


def _vcr(root: Path) -> tuple[Path, Path, list[dict[str, Any]]]:
    images = root / "vcr1images"
    (images / "movie1").mkdir(parents=True)
    meta = {
        "boxes": [[10, 12, 60, 80, 0.99], [70, 5, 120, 90, 0.9], [0, 50, 30, 79, 0.8]],
        "segms": [
            [[[10, 12], [60, 12], [60, 80], [10, 80]]],
            [[[70, 5], [120, 5], [120, 90]]],
            [[[0, 50], [30, 50], [30, 79], [0, 79]]],
        ],
        "names": ["person", "person", "dog"],
        "width": 128,
        "height": 96,
    }
    (images / "movie1" / "a.json").write_text(json.dumps(meta))
    lines = []
    for k in range(6):
        lines.append(
            {
                "movie": "movie1",
                "objects": ["person", "person", "dog"],
                "img_fn": "movie1/a.jpg",
                "metadata_fn": "movie1/a.json",
                "question": ["What", "is", [0], "doing", "?"],
                "answer_choices": [
                    [[0], "is", "walking", [2], "."],
                    ["Sleeping", "."],
                    ["Eating", "."],
                    [[1], "is", "reading", "."],
                ],
                "answer_label": k % 4,
                "rationale_choices": [
                    ["Because", "it", "is", "late", "."],
                    [[2], "needs", "a", "walk", "."],
                    ["No", "reason", "."],
                    [[0, 1], "are", "tired", "."],
                ],
                "rationale_label": (k + 1) % 4,
                "annot_id": f"val-{k}",
                "img_id": "val-0",
                "question_number": k,
            }
        )
    path = root / "val.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path, images, lines


def test_prompts_are_vip_llavas_with_regions_in_placeholder_order(tmp_path: Path) -> None:
    path, images, _ = _vcr(tmp_path)
    task = get_task("vcr_q_ar")
    samples = task.load_samples({"annotations": path, "images": images}).samples
    assert [s.id for s in samples] == [f"val-{k}" for k in range(6)]
    qa, qar = task.build_requests(samples[:1])
    assert (qa.id, qar.id) == ("val-0/qa", "val-0/qar")
    answers = [
        "person <region> is walking dog <region>.",
        "Sleeping.",
        "Eating.",
        "person <region> is reading.",
    ]
    assert qa.prompt == "<image>\n" + vip_build_prompt("What is person <region> doing?", answers)
    assert [r.box for r in qa.regions] == [
        (10, 12, 60, 80),
        (10, 12, 60, 80),
        (0, 50, 30, 79),
        (70, 5, 120, 90),
    ]
    rationales = [
        "Because it is late.",
        "dog <region> needs a walk.",
        "No reason.",
        "person <region> and person <region> are tired.",
    ]
    question, org_answer = "What is person <region> doing?", answers[0]
    assert qar.prompt == "<image>\n" + (
        f'I give you a question and its answer, I need you to provide a rationale explaining why the answer is right. "{question}" '
        f'The answer is "{org_answer}".What is the rationale for this decision?{vip_build_prompt("", rationales)}'
    )
    assert len(qar.regions) == qar.prompt.count("<region>") == 6
    masks = get_task("vcr_qa").load_samples({"annotations": path, "images": images})  # default boxes
    assert masks.samples[0].regions[0].kind == "box"
    from evalkit.tasks.vcr.vcr_jsonl import read_vcr

    from evalkit.cards import CardCatalog  # noqa: F401  (objects: mask is a reader_args choice)

    masked = read_vcr({"annotations": path, "images": images}, {"objects": "mask"}).samples
    assert masked[0].regions[1].kind == "mask" and masked[0].regions[1].area() > 0


def test_bad_object_reference_is_one_line(tmp_path: Path) -> None:
    path, _, lines = _vcr(tmp_path)
    lines[2]["question"] = ["Is", [5], "ok", "?"]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(DataError, match=r"line 3 \(val-2\).*object reference \[5\]"):
        get_task("vcr_qa").load_samples({"annotations": path, "images": None})


def test_score_cli_q_ar_equals_r2c_and_the_exact_reference(tmp_path: Path) -> None:
    path, _, lines = _vcr(tmp_path)
    letters = "ABCD"
    answers = ["A", "B.", "(C)", "D", "A", "b"]  # vs labels 0,1,2,3,0,1 for QA
    rationales = ["B", "C", "D) x", "A", "A", "C"]  # vs labels 1,2,3,0,1,2 for QAR
    rows = [(f"val-{k}/qa", a) for k, a in enumerate(answers)] + [
        (f"val-{k}/qar", r) for k, r in enumerate(rationales)
    ]
    write_predictions(tmp_path / "p.jsonl", rows)
    args = [
        "score",
        "--task",
        "vcr_q_ar",
        "--data",
        f"annotations={path}",
        "--predictions",
        str(tmp_path / "p.jsonl"),
    ]
    assert main([*args, "--output", str(tmp_path / "o")]) == 0
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    a_hits = [True, True, True, True, True, False]  # lenient: "B.", "(C)" count; "b" does not
    r_hits = [True, True, True, True, False, True]
    q2a, qa2r, q2ar = r2c_accuracies(a_hits, r_hits)
    assert results["metrics"] == {"q2a": q2a, "qa2r": qa2r, "q2ar": q2ar}
    assert [letters[x["answer_label"]] for x in lines] == ["A", "B", "C", "D", "A", "B"]
    assert main([*args, "--protocol", "reference", "--output", str(tmp_path / "r")]) == 0
    ref = json.loads((tmp_path / "r" / "results.json").read_text())
    a_exact = [True, False, False, True, True, True]  # exact: "B." and "(C)" wrong, "b" right
    r_exact = [True, True, False, True, False, True]
    assert ref["metrics"] == dict(zip(["q2a", "qa2r", "q2ar"], r2c_accuracies(a_exact, r_exact), strict=True))
    single = tmp_path / "single.jsonl"
    write_predictions(single, [(f"val-{k}", a) for k, a in enumerate(answers)])
    assert (
        main(
            [
                "score",
                "--task",
                "vcr_qa",
                "--data",
                f"annotations={path}",
                "--predictions",
                str(single),
                "--output",
                str(tmp_path / "s"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "s" / "results.json").read_text())["metrics"] == {"q2a": pytest.approx(q2a)}
