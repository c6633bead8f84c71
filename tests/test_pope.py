"""POPE: the official parsing and arithmetic, pairing by question id, question-file revisions."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest
from evalkit.tasks.pope.pope_questions import KNOWN_REVISIONS

from evalkit.cli import main
from evalkit.metrics.pope import pope_answer, pope_metrics
from evalkit.task import get_task
from tests.judged_helpers import rows

SPLITS = ("random", "popular", "adversarial")


def official_evaluate(answers: list[str], labels: list[str]) -> dict[str, float]:
    """POPE evaluate.py's arithmetic, re-implemented from its description (answers and labels
    zipped in the given order)."""
    preds = []
    for text in answers:
        first = text.split(".")[0] if "." in text else text
        words = first.replace(",", "").split(" ")
        preds.append(0 if ("No" in words or "not" in words or "no" in words) else 1)
    gold = [0 if label == "no" else 1 for label in labels]
    tp = sum(p == 1 and g == 1 for p, g in zip(preds, gold, strict=True))
    fp = sum(p == 1 and g == 0 for p, g in zip(preds, gold, strict=True))
    tn = sum(p == 0 and g == 0 for p, g in zip(preds, gold, strict=True))
    fn = sum(p == 0 and g == 1 for p, g in zip(preds, gold, strict=True))
    precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    return {
        "accuracy": 100 * (tp + tn) / (tp + tn + fp + fn),
        "precision": 100 * precision,
        "recall": 100 * recall,
        "f1": 100 * 2 * precision * recall / (precision + recall),
        "yes_ratio": 100 * preds.count(1) / len(preds),
    }


ANSWER_STYLES = [
    "Yes, there is a {o} in the image.",
    "No, there is no {o} in the image.",
    "There is no {o}.",
    "NO",
    "yes",
    "I do not see a {o}. But yes.",
    "",
    "Not sure, it might be",
    "Yes.No",
    "The image shows a {o},no doubt",
]


def fake_answers(questions: list[dict[str, Any]], seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for q in questions:
        obj = (
            q["text"].removeprefix("Is there a ").removeprefix("Is there an ").removesuffix(" in the image?")
        )
        if rng.random() < 0.7:  # mostly right, in varied words
            style = ANSWER_STYLES[0] if q["label"] == "yes" else rng.choice(ANSWER_STYLES[1:3])
        else:
            style = rng.choice(ANSWER_STYLES)
        out.append(style.format(o=obj))
    return out


def test_official_parsing() -> None:
    assert pope_answer("Yes, there is a dog.") == "yes"
    assert pope_answer("No, there is no dog.") == "no"
    assert pope_answer("There is a dog. No cat.") == "yes"  # first sentence only
    assert pope_answer("no,") == "no"  # commas removed before splitting
    assert pope_answer("nope") == "yes" and pope_answer("") == "yes"
    assert pope_answer("No\nthere is") == "yes"  # split on single spaces only: "no\nthere"
    assert pope_answer("NOT at all") == "no"  # Osprey lower-cases first
    assert pope_answer("NOT at all", lowercase=False) == "yes"  # LLaVA does not
    assert pope_answer("No", lowercase=False) == "no"


def test_metrics_by_hand() -> None:
    # 3 yes labels, 2 no labels; predictions: yes yes no | yes no -> TP 2, FN 1, FP 1, TN 1
    scores = pope_metrics(["yes", "yes", "no", "yes", "no"], ["yes", "yes", "yes", "no", "no"])
    assert (scores.tp, scores.fn, scores.fp, scores.tn) == (2, 1, 1, 1)
    assert scores.metrics == pytest.approx(
        {
            "accuracy": 60.0,
            "precision": 200 / 3,
            "recall": 200 / 3,
            "f1": 200 / 3,
            "yes_ratio": 60.0,
        }
    )
    never_yes = pope_metrics(["no", "no"], ["yes", "no"])
    assert never_yes.metrics["precision"] == 0.0 and never_yes.undefined == ["precision", "f1"]


def test_fixture_hashes_are_the_current_official_revisions(shared_dir: Path) -> None:
    for split in SPLITS:
        path = shared_dir / "fixtures" / "pope" / f"coco_pope_{split}.json"
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert KNOWN_REVISIONS[digest].startswith(f"{split}, current official revision")
        task = get_task(f"pope_{split}")
        read = task.load_samples({"questions": path, "images": None})
        assert len(read.samples) == 3000
        assert read.notes == [f"{path.name}: sha256 {digest[:12]}…, POPE COCO {KNOWN_REVISIONS[digest]}"]
        labels = [s.target for s in read.samples]
        assert labels.count("yes") == labels.count("no") == 1500


def test_score_pope_adversarial_equals_official_in_any_line_order(shared_dir: Path, tmp_path: Path) -> None:
    path = shared_dir / "fixtures" / "pope" / "coco_pope_adversarial.json"
    questions = rows(path)
    answers = fake_answers(questions, seed=0)
    # Osprey's pope_eval.py writes answers lower-cased, in question order; evaluate.py then zips.
    expected = official_evaluate([a.lower() for a in answers], [q["label"] for q in questions])

    lines = [
        json.dumps({"id": str(q["question_id"]), "text": a}) for q, a in zip(questions, answers, strict=True)
    ]
    random.Random(1).shuffle(lines)
    predictions = tmp_path / "answers.jsonl"
    predictions.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert (
        main(
            [
                "score",
                "--task",
                "pope_adversarial",
                "--data",
                f"questions={path}",
                "--predictions",
                str(predictions),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["metrics"] == pytest.approx(expected, abs=1e-9)
    assert results["n"] == 3000
    assert sum(results["counts"][k] for k in ("tp", "fp", "tn", "fn")) == 3000
    assert 60 < results["metrics"]["accuracy"] < 95  # the fake answers are neither trivial nor perfect
    assert any("question_id" in d for d in results["provenance"]["deviations"])
    assert "current official revision" in results["provenance"]["notes"][0]

    # The reference variant pairs by line order, as evaluate.py does: shuffled lines score
    # what the official script would print for this (shuffled) answers file.
    shuffled = [json.loads(line)["text"] for line in lines]
    out_ref = tmp_path / "out_ref"
    assert (
        main(
            [
                "score",
                "--task",
                "pope_adversarial",
                "--protocol",
                "reference",
                "--data",
                f"questions={path}",
                "--predictions",
                str(predictions),
                "--output",
                str(out_ref),
            ]
        )
        == 0
    )
    ref_results = json.loads((out_ref / "results.json").read_text())
    wrong_pairs = official_evaluate([a.lower() for a in shuffled], [q["label"] for q in questions])
    assert ref_results["metrics"] == pytest.approx(wrong_pairs, abs=1e-9)
    assert ref_results["metrics"]["accuracy"] != pytest.approx(expected["accuracy"])


def test_llava_variant_prompt_and_case(tmp_path: Path) -> None:
    path = tmp_path / "coco_pope_random.json"
    path.write_text(
        '{"question_id": 7, "image": "COCO_val2014_000000000042.jpg", '
        '"text": "Is there a {dog} in the image?", "label": "no"}\n'
    )
    task = get_task("pope_random", "llava")
    read = task.load_samples({"questions": path, "images": None})
    (request,) = task.build_requests(read.samples)
    assert request.id == "7"
    assert request.prompt == (
        "<image>\nIs there a {dog} in the image?\nAnswer the question using a single word or phrase."
    )
    assert task.score(read.samples, {"7": "NO"}, {}).metrics["accuracy"] == 0.0  # case kept
    osprey = get_task("pope_random")
    assert osprey.build_requests(read.samples)[0].prompt == "<image>\nIs there a {dog} in the image?"
    assert osprey.score(read.samples, {"7": "NO</s>"}, {}).metrics["accuracy"] == 100.0


def test_unknown_revision_warns_and_2910_is_recognised(tmp_path: Path, shared_dir: Path) -> None:
    questions = rows(shared_dir / "fixtures" / "pope" / "coco_pope_random.json")
    path = tmp_path / "coco_pope_random.json"
    path.write_text("".join(json.dumps(q) + "\n" for q in questions[:2910]))
    read = get_task("pope_random").load_samples({"questions": path, "images": None})
    assert read.notes[0].startswith("WARNING: coco_pope_random.json (sha256 ")
    assert "2,910 questions suggest the older random split LLaVA used" in read.notes[0]

    official = shared_dir / "fixtures" / "pope" / "coco_pope_popular.json"
    read = get_task("pope_random").load_samples({"questions": official, "images": None})
    assert read.notes[0].startswith("WARNING: this task is POPE random but coco_pope_popular.json")


def test_bad_question_file(tmp_path: Path) -> None:
    from evalkit.errors import DataError

    path = tmp_path / "q.json"
    path.write_text('{"question_id": 1, "image": "a.jpg", "text": "Is there a cat?", "label": "maybe"}\n')
    with pytest.raises(DataError, match=r"q\.json, record line 1: label must be 'yes' or 'no'"):
        get_task("pope_random").load_samples({"questions": path, "images": None})
    path.write_text('{"question_id": 1, "image": "a.jpg", "text": "x", "label": "no"}\n' * 2)
    with pytest.raises(DataError, match="question_id 1 appears twice"):
        get_task("pope_random").load_samples({"questions": path, "images": None})


def test_cards_of_this_family_load() -> None:
    from evalkit.task import expand_group, load_card

    assert expand_group("pope") == ["pope_random", "pope_popular", "pope_adversarial"]
    for name in (
        "refcocog_cap",
        "refcocog_cap_refer",
        "vg_cap",
        "shapes_cap",
        "shapes_pope",
        "pope_random",
        "pope_popular",
        "pope_adversarial",
    ):
        card, _, _ = load_card(name)
        for variant in ("default", *card.variants):
            task = get_task(name, variant)
            assert task.prompt.startswith("<image>\n")
            assert task.prompt.count("<region>") == (1 if name.endswith(("_cap", "_refer")) else 0)
            assert task.generation["temperature"] == (0.0 if variant != "reference" else 0.2)
