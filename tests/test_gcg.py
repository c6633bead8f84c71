"""GCG (GranD-f) and MGSC end to end on small files in the real formats: the reader, the
prompts (GLaMM's five spaces), ``evalkit score --predictions`` and ``--model replay`` with
masks in the predictions file, mask recall with and without its phrase model, and malformed
masks failing in one line that names the file and the record."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from evalkit.cli import main
from evalkit.metrics.caption import score_captions
from evalkit.task import get_task
from tests.grounding_helpers import (
    box,
    decode,
    ref_bert_similarity,
    ref_compute_miou,
    ref_find_best_matches,
    ref_gcg_ap50,
    rle,
    write_grounded_gt,
    write_tiny_bert,
)

H, W = 20, 30


def _images() -> list[dict[str, Any]]:
    return [
        {
            "id": "sa_1",
            "h": H,
            "w": W,
            "caption": "A dog lies on the grass.",
            "labels": ["a dog", "the grass"],
            "masks": [box(H, W, 2, 2, 10, 12), box(H, W, 12, 0, 20, 30)],
        },
        {
            "id": "sa_2",
            "h": H,
            "w": W,
            "caption": "A cat sits beside a blue house.",
            "labels": ["a cat", "a blue house"],
            "masks": [box(H, W, 0, 0, 8, 8), box(H, W, 5, 15, 18, 28)],
        },
        {
            "id": "sa_3",
            "h": 16,
            "w": 16,
            "caption": "The sky above a tree.",
            "labels": ["the sky", "a tree"],
            "masks": [box(16, 16, 0, 0, 6, 16), box(16, 16, 8, 4, 16, 10)],
        },
    ]


def _predictions() -> list[dict[str, Any]]:
    """Raw GLaMM answers: sa_1 good, sa_2 one mask on the wrong object, sa_3 the right mask
    with a phrase that says something else (its recall pair fails on similarity)."""
    return [
        {
            "id": "sa_1",
            "text": "<p> A dog </p> [SEG] lies on <p>the  grass</p> [SEG].",
            "masks": [{"rle": rle(box(H, W, 2, 2, 10, 11))}, {"rle": rle(box(H, W, 13, 0, 20, 30))}],
        },
        {
            "id": "sa_2",
            "text": "<p>A cat</p> [SEG] sits beside <p>a green star</p> [SEG].",
            "masks": [{"rle": rle(box(H, W, 0, 0, 8, 9))}, {"rle": rle(box(H, W, 0, 20, 4, 30))}],
        },
        {
            "id": "sa_3",
            "text": "'<p>a dog</p> [SEG] on grass.'",
            "masks": [{"rle": rle(box(16, 16, 0, 0, 6, 16))}],
        },
    ]


def _write(tmp_path: Path) -> tuple[Path, Path, Path]:
    captions, masks = write_grounded_gt(tmp_path / "gt", "val_gcg_coco", _images())
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(p) + "\n" for p in _predictions()))
    return captions, masks, preds


def _cleaned(text: str) -> tuple[str, list[str]]:
    """GLaMM infer.py's post-processing, restated."""
    text = text.replace("\n", "").replace("  ", " ").split("ASSISTANT: ")[-1]
    phrases = [p.strip() for p in re.findall(r"<p>(.*?)</p>", text)]
    cleaned = re.sub(r"<.*?>", "", text).replace("[SEG]", "")
    return " ".join(cleaned.split()).strip("'").strip(), phrases


def _expected(masks_path: Path, bert: Path | None) -> dict[str, float]:
    """Every metric as GLaMM's evaluate.py computes it, from the files and predictions."""
    gt = {im["id"]: im for im in _images()}
    preds = {p["id"]: p for p in _predictions()}
    dets = [
        {"image_id": p["id"], "category_id": 1, "segmentation": m["rle"], "score": 1.0}
        for p in _predictions()
        for m in p["masks"]
    ]
    mious, tp, positives = [], 0, 0
    captions, refs = {}, {}
    for image_id, im in gt.items():
        pred_masks = [decode(m["rle"]) for m in preds[image_id]["masks"]]
        mious.append(ref_compute_miou(pred_masks, im["masks"]))
        caption, phrases = _cleaned(preds[image_id]["text"])
        captions[image_id], refs[image_id] = caption, [im["caption"]]
        if bert is not None:
            sims = np.array([[ref_bert_similarity(bert, a, b) for b in phrases] for a in im["labels"]])
            positives += len(im["labels"])
            tp += len(ref_find_best_matches(im["masks"], pred_masks, sims))
    corpus = score_captions(refs, captions, ("meteor", "cider")).corpus
    out = {**corpus, "ap50": 100 * ref_gcg_ap50(masks_path, dets), "miou": 100 * float(np.mean(mious))}
    if bert is not None:
        out["mask_recall"] = 100 * tp / positives
    return out


def test_reader_prompt_and_requests(tmp_path: Path) -> None:
    captions, masks, _ = _write(tmp_path)
    task = get_task("gcg_grandf_val")
    samples = task.load_samples({"captions": captions, "masks": masks, "images": None}).samples
    assert [s.id for s in samples] == ["sa_1", "sa_2", "sa_3"]
    first = samples[0]
    assert first.target == "A dog lies on the grass." and first.regions == []
    info = first.meta.to_json()
    assert info["labels"] == ["a dog", "the grass"] and [m["id"] for m in info["masks"]] == [1, 2]
    requests = task.build_requests(samples)
    assert requests[2].image_size == (16, 16) and requests[0].generation["masks"] is True
    assert "interleaved     segmentation masks" in requests[0].prompt  # GLaMM's literal: 5 spaces
    assert requests[0].prompt.startswith("The <image> provides an overview of the picture.\nCould you")
    assert "interleaved segmentation" in get_task("gcg_grandf_val", "mglmm").prompt  # MGLMM: one


def test_mgsc_prompts_by_image_type(tmp_path: Path) -> None:
    images = _images()[:2]
    images[0]["type"], images[1]["type"] = "root", "subtree:blue house"
    captions, masks = write_grounded_gt(tmp_path, "root_mgsc", images, first_mask_id=0)
    task = get_task("mgsc_all")
    samples = task.load_samples({"captions": captions, "masks": masks, "images": None}).samples
    root, subtree = (r.prompt for r in task.build_requests(samples))
    assert root == (
        "The <image> provides an overview of the picture.\nPlease provide a detailed description "
        "of all the objects present in this image in a comprehensive format. Please respond with "
        "interleaved segmentation masks for the corresponding parts of the answer."
    )
    assert "comprehensive format for blue house in the image. Please respond" in subtree
    assert task.protocol.args.failed_recall_images == "excluded"
    assert get_task("mgsc_all", "glamm").protocol.args.failed_recall_images == "counted"


@pytest.mark.slow
def test_score_with_masks_equals_the_released_evaluator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    captions, masks, preds = _write(tmp_path)
    bert = write_tiny_bert(tmp_path / "bert-base-uncased")
    data = ["--data", f"captions={captions}", "--data", f"masks={masks}"]
    out = tmp_path / "with_model"
    cmd = ["score", "--task", "gcg_grandf_val", "--predictions", str(preds), *data, "--output", str(out)]
    assert main([*cmd, "--data", f"phrase_model={bert}"]) == 0
    results = json.loads((out / "results.json").read_text())
    expected = _expected(masks, bert)
    assert list(results["metrics"]) == ["meteor", "cider", "ap50", "miou", "mask_recall"]
    for name, value in expected.items():
        assert results["metrics"][name] == pytest.approx(value, abs=1e-9), name
    assert 0 < results["metrics"]["mask_recall"] < 100 and 0 < results["metrics"]["ap50"] < 100
    assert results["phrase_model"]["path"] == str(bert) and "not_computed" not in results
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert rows[0]["caption"] == "A dog lies on the grass ." and rows[0]["phrases"] == ["A dog", "the grass"]

    # Without the phrase model: the same other metrics, and one line saying what to pass.
    capsys.readouterr()
    missing = tmp_path / "no_such_bert"
    out2 = tmp_path / "without_model"
    cmd2 = ["score", "--task", "gcg_grandf_val", "--predictions", str(preds), *data, "--output", str(out2)]
    assert main([*cmd2, "--data", f"phrase_model={missing}"]) == 0
    bare = json.loads((out2 / "results.json").read_text())
    assert "mask_recall" not in bare["metrics"]
    assert {k: v for k, v in results["metrics"].items() if k != "mask_recall"} == bare["metrics"]
    why = bare["not_computed"]["mask_recall"]
    assert f"no model folder at {missing}" in why and "--data phrase_model=" in why
    err = capsys.readouterr().err
    assert why in err.splitlines()  # printed whole, on one line

    # A folder that is there but holds no model is an error, before any caption metric.
    (tmp_path / "empty_bert").mkdir()
    cmd3 = ["score", "--task", "gcg_grandf_val", "--predictions", str(preds), *data]
    assert (
        main([*cmd3, "--data", f"phrase_model={tmp_path / 'empty_bert'}", "--output", str(tmp_path / "x")])
        != 0
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot load the phrase-similarity model" in err


@pytest.mark.slow
def test_replay_run_scores_the_same_and_mglmm_excludes_failing_images(tmp_path: Path) -> None:
    # sa_3's ground truth has two masks but one label; the answer's mask is its second mask,
    # so the best pair (1, 0) has no similarity: IndexError in the reference.
    gt_images = _images()
    gt_images[2]["labels"] = ["the sky"]
    captions, masks = write_grounded_gt(tmp_path / "gt", "val_gcg_coco", gt_images)
    images = tmp_path / "images"
    images.mkdir()
    for im in gt_images:
        Image.new("RGB", (im["w"], im["h"])).save(images / f"{im['id']}.png")
    bert = write_tiny_bert(tmp_path / "bert")
    rows = _predictions()
    rows[2] = {
        "id": "sa_3",
        "text": "<p>a tree</p> [SEG].",
        "masks": [{"rle": rle(box(16, 16, 8, 4, 16, 10))}],
    }
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(p) + "\n" for p in rows))
    data = [f"captions={captions}", f"masks={masks}", f"images={images}", f"phrase_model={bert}"]
    flags = [x for d in data for x in ("--data", d)]
    results = {}
    for variant in ("default", "mglmm"):
        out = tmp_path / variant
        args = ["run", "--model", "replay", "--model-args", f"path={preds}", "--task", "gcg_grandf_val"]
        assert main([*args, *flags, "--protocol", variant, "--output", str(out)]) == 0
        results[variant] = json.loads((out / "results.json").read_text())
    glamm, mglmm = results["default"], results["mglmm"]
    assert (
        glamm["recall_failed"]["images"].keys() == {"sa_3"} and glamm["counts"]["recall_failed_images"] == 1
    )
    # counted: sa_3's label stays in the denominator (5 labels); excluded: it leaves (4).
    tp = round(glamm["metrics"]["mask_recall"] / 100 * 5)
    assert tp >= 1
    assert glamm["metrics"]["mask_recall"] == pytest.approx(100 * tp / 5)
    assert mglmm["metrics"]["mask_recall"] == pytest.approx(100 * tp / 4)
    assert glamm["metrics"]["ap50"] == pytest.approx(
        100
        * ref_gcg_ap50(
            masks,
            [
                {"image_id": r["id"], "category_id": 1, "segmentation": m["rle"], "score": 1.0}
                for r in rows
                for m in r["masks"]
            ],
        )
    )
    stored = [
        json.loads(line) for line in (tmp_path / "default" / "predictions.jsonl").read_text().splitlines()
    ]
    assert len(stored[0]["masks"]) == 2  # the masks travel through the store


def _fails(tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: dict[str, Any]) -> str:
    captions, masks, preds = _write(tmp_path)
    rows = _predictions()
    rows[1] = bad
    preds.write_text("".join(json.dumps(p) + "\n" for p in rows))
    args = ["score", "--task", "gcg_grandf_val", "--predictions", str(preds)]
    capsys.readouterr()
    # a phrase_model folder is given: the data check before scoring passes, the file is read
    (tmp_path / "bert").mkdir(exist_ok=True)
    data = [
        "--data",
        f"captions={captions}",
        "--data",
        f"masks={masks}",
        "--data",
        f"phrase_model={tmp_path / 'bert'}",
    ]
    assert main([*args, *data]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(preds) in err and "line 2" in err
    return err


def test_malformed_masks_fail_in_one_line_naming_file_and_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "<p>A cat</p> [SEG]."
    assert "not a valid COCO RLE" in _fails(
        tmp_path, capsys, {"id": "sa_2", "text": text, "masks": [{"rle": {"size": [H, W], "counts": "!!x"}}]}
    )
    assert "mask is 16x16, the image is 20x30" in _fails(
        tmp_path, capsys, {"id": "sa_2", "text": text, "masks": [{"rle": rle(box(16, 16, 0, 0, 4, 4))}]}
    )
    two = [{"rle": rle(box(H, W, 0, 0, 4, 4))}, {"rle": rle(box(H, W, 0, 0, 4, 4))}]
    assert "mask 1: grounds no phrase" in _fails(tmp_path, capsys, {"id": "sa_2", "text": text, "masks": two})
