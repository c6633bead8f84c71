"""shapes_refseg and shapes_gcg: the mask-output views of the shapes scenes, written in the real
formats (refer toolkit files, GranD-f ground truth) and run end to end with replay."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evalkit.task import get_task
from tests.grounding_helpers import decode, rle, write_tiny_bert
from tests.helpers import run_replay


def _samples(name: str) -> list[Any]:
    task = get_task(name)
    return task.load_samples(task.resolve_data({}, "run")).samples


def test_shapes_refseg_asks_for_objects_named_once_in_their_scene() -> None:
    samples = _samples("shapes_refseg")
    assert len(samples) == 590 and samples[0].id == "1/1"
    task = get_task("shapes_refseg")
    prompts = [r.prompt for r in task.build_requests(samples[:3])]
    assert (
        prompts[0]
        == "The <image> provides an overview of the picture.\nCan you segment the red cross in this image?"
    )
    assert all(decode(s.target).sum() >= 40 for s in samples)  # shapes.MIN_VISIBLE
    assert _samples("shapes_refseg")[100].target == samples[100].target  # the same files each time


def test_shapes_refseg_run_with_replay(tmp_path: Path) -> None:
    samples = _samples("shapes_refseg")
    rows = []
    pairs = []
    for k, s in enumerate(samples):
        gt = decode(s.target)
        if k % 3 == 0:  # every third answer misses: no mask
            rows.append({"id": s.id, "text": "Sorry, I don't see it."})
            pairs.append((np.zeros_like(gt), gt))
        else:  # the rest: the object's mask shifted one pixel right
            pred = np.roll(gt, 1, axis=1)
            rows.append({"id": s.id, "text": "It is [SEG].", "masks": [{"rle": rle(pred)}]})
            pairs.append((pred, gt))
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    results = run_replay("shapes_refseg", preds, tmp_path / "run")
    # GLaMM's trackers on binary masks (its histc path is checked in test_grounding_metrics)
    inter = np.array([np.sum(p & g) for p, g in pairs], dtype=float)
    union = np.array([np.sum(p | g) for p, g in pairs], dtype=float)
    ref_c = inter.sum() / (union.sum() + 1e-10)
    ref_g = np.sum(inter / (union + 1e-5) + (union == 0)) / (len(pairs) + 1e-5)
    assert results["metrics"]["ciou"] == pytest.approx(100 * ref_c, rel=1e-9)
    assert results["metrics"]["giou"] == pytest.approx(100 * ref_g, rel=1e-9)
    assert 30 < results["metrics"]["ciou"] < 80 and results["counts"]["no_mask"] == 197


@pytest.mark.slow
def test_shapes_gcg_perfect_answers_score_full_marks(tmp_path: Path) -> None:
    samples = _samples("shapes_gcg")[:20]
    assert samples[0].target == "A red cross, a purple cross, a blue circle, a yellow square and a house."
    rows = []
    for s in samples:
        info = s.meta.to_json()
        phrases = [f"<p>{label}</p> [SEG]" for label in info["labels"]]
        text = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
        rows.append(
            {
                "id": s.id,
                "text": text[0:3] + text[3].upper() + text[4:] + ".",
                "masks": [{"rle": m["rle"]} for m in info["masks"]],
            }
        )
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bert = write_tiny_bert(tmp_path / "bert")
    results = run_replay(
        "shapes_gcg", preds, tmp_path / "run", "--limit", "20", "--data", f"phrase_model={bert}"
    )
    metrics = results["metrics"]
    assert metrics["ap50"] == 100.0 and metrics["miou"] == 100.0 and metrics["mask_recall"] == 100.0
    assert metrics["meteor"] > 95
    rows_out = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert (
        rows_out[0]["caption"]
        == "A red cross , a purple cross , a blue circle , a yellow square and a house ."
    )
