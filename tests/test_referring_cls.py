"""lvis_cls / paco_cls scoring against Osprey's lvis_paco_eval.py arithmetic.

``reference_scores`` below re-states the released script's per-region loop from its
published behaviour (decode clean-up, colon rule, punctuation to spaces, one
SentenceTransformer.encode per string, util.cos_sim, SemanticIOU on lower-cased strings,
running sums) so evalkit's batched scorer is checked against it on the same outputs.
"""

import json

import numpy as np
import pytest
from evalkit.tasks.referring_cls.referring_cls import normalise_answer, normalise_category
from sentence_transformers import util

from evalkit.cli import main
from evalkit.metrics.embeddings import minilm
from evalkit.metrics.semantic import semantic_iou, semantic_similarity
from tests.helpers import LVIS_NAMES, PACO_NAMES, write_osprey_subset, write_predictions

TRICKY = [
    "bow (weapon)",
    "Teddy Bear.",
    "The category is: baseball glove",
    "a: b: c",
    "",
    "   ",
    "ZEBRA, cow.",
    "café crème ☕",
    "trash can lid</s>",
    "Answer: mug handle. It is a mug:handle",
    "Christmas tree",
    "dog , cat",
]


def reference_scores(records, outputs, bert):
    all_sim, all_iou, n = 0.0, 0.0, 0
    k = 0
    for data in records:
        for i in range(len(data["categories"])):
            category = data["categories"][i].replace("_", " ").replace(":", " ")
            out = outputs[k].strip()
            k += 1
            if out.endswith("</s>"):
                out = out[: -len("</s>")]
            out = out.strip()
            if ":" in out:
                out = out.split(":")[1]
            out = out.replace(".", " ").replace(":", " ").replace(",", " ")
            e1 = bert.encode(out, convert_to_tensor=True)
            e2 = bert.encode(category, convert_to_tensor=True)
            all_sim += float(util.cos_sim(e1, e2)[0][0])
            a, b = set(out.lower().split()), set(category.lower().split())
            all_iou += len(a & b) / len(a | b)
            n += 1
    return all_sim / n * 100, all_iou / n * 100


def test_semantic_iou_hand_computed():
    assert semantic_iou("teddy bear", "teddy bear") == 1.0
    assert semantic_iou("bear", "teddy bear") == pytest.approx(1 / 2)
    assert semantic_iou("a brown bear", "teddy bear") == pytest.approx(1 / 4)
    assert semantic_iou("bow (weapon)", "bow (weapon)") == 1.0
    assert semantic_iou("bow", "bow (weapon)") == pytest.approx(1 / 2)  # parentheses kept
    assert semantic_iou("", "dog") == 0.0
    assert semantic_iou("dog dog", "dog") == 1.0  # sets, not bags


def test_normalisation_matches_the_reference_rules():
    assert normalise_category("bow_(weapon)") == "bow (weapon)"
    assert normalise_category("trash_can:lid") == "trash can lid"
    assert normalise_answer(" Teddy Bear.</s> ") == "Teddy Bear "
    assert normalise_answer("The category is: baseball glove") == " baseball glove"
    assert normalise_answer("a: b: c") == " b"  # split(':')[1], not the last part
    assert normalise_answer("ZEBRA, cow.") == "ZEBRA  cow "


def test_semantic_similarity_hand_computed_with_a_toy_encoder():
    table = {"a": [1.0, 0.0], "b": [0.0, 2.0], "c": [3.0, 3.0]}
    sims = semantic_similarity(["a", "a", "c"], ["a", "b", "b"], lambda xs: np.array([table[x] for x in xs]))
    assert sims.tolist() == pytest.approx([1.0, 0.0, 2**-0.5])


@pytest.mark.slow
@pytest.mark.parametrize(("task", "names"), [("lvis_cls", LVIS_NAMES), ("paco_cls", PACO_NAMES)])
def test_score_cli_equals_reference_script(tmp_path, capsys, task, names):
    records = write_osprey_subset(tmp_path / "ann.json", names, 12, seed=3)
    ids = [f"{r['file_name'][:-4]}#{i}" for r in records for i in range(len(r["categories"]))]
    cats = [c for r in records for c in r["categories"]]
    # Mix exact answers, near misses and the tricky strings.
    outputs = []
    for k, cat in enumerate(cats):
        if k % 3 == 0:
            outputs.append(TRICKY[k // 3 % len(TRICKY)])
        elif k % 3 == 1:
            outputs.append(cat.replace("_", " ").upper() + ".")
        else:
            outputs.append("It is: " + cat.split(":")[-1].replace("_", " "))
    write_predictions(tmp_path / "preds.jsonl", list(zip(ids, outputs, strict=True)))
    code = main(
        [
            "score",
            "--task",
            task,
            "--data",
            f"annotations={tmp_path / 'ann.json'}",
            "--data",
            f"images={tmp_path}",
            "--predictions",
            str(tmp_path / "preds.jsonl"),
            "--output",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    ss, s_iou = reference_scores(records, outputs, minilm()._model)
    assert results["n"] == len(cats)
    assert abs(results["metrics"]["ss"] - ss) <= 1e-3
    assert abs(results["metrics"]["s_iou"] - s_iou) <= 1e-3
    assert 0 < s_iou < 100 and 0 < ss < 100
    rows = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ids
    assert rows[0]["prediction"] == outputs[0]
