"""Referring segmentation (refer toolkit RefCOCOg files) and gRefCOCO (grefs JSON) end to end:
readers, prompts, ``evalkit score`` / ``--model replay`` with masks, cIoU / gIoU against
GLaMM's histc arithmetic (its summed-polygon ground truth in the ``reference`` variant),
N-acc / T-acc against ReLA's evaluator, and malformed masks failing in one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from evalkit.cli import main
from evalkit.task import get_task
from tests.grounding_helpers import box, decode, ref_glamm_ciou_giou, ref_rela, rle, write_refer

IMG1: dict[str, Any] = {"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "height": 20, "width": 24}
IMG2: dict[str, Any] = {"id": 2, "file_name": "COCO_train2014_000000000002.jpg", "height": 16, "width": 16}


def _square(x: int, y: int, s: int) -> list[float]:
    return [x, y, x + s, y, x + s, y + s, x, y + s]


def _anns() -> list[dict[str, Any]]:
    return [
        # two polygons of one object overlapping: GLaMM's summed mask is 2 there
        {
            "id": 10,
            "image_id": 1,
            "category_id": 1,
            "segmentation": [_square(2, 2, 8), _square(6, 6, 8)],
            "iscrowd": 0,
        },
        {"id": 11, "image_id": 1, "category_id": 1, "segmentation": [_square(14, 10, 6)], "iscrowd": 0},
        {"id": 12, "image_id": 2, "category_id": 1, "segmentation": [], "iscrowd": 0},  # empty
        {
            "id": 13,
            "image_id": 2,
            "category_id": 1,
            "segmentation": rle(box(16, 16, 4, 4, 12, 12)),
            "iscrowd": 0,
        },
    ]


def _refs() -> list[dict[str, Any]]:
    def ref(ref_id: int, ann_id: Any, image_id: int, split: str, *sents: tuple[int, str]) -> dict[str, Any]:
        return {
            "ref_id": ref_id,
            "ann_id": ann_id,
            "image_id": image_id,
            "split": split,
            "category_id": 1,
            "sentences": [{"sent_id": i, "sent": t, "raw": t, "tokens": t.split()} for i, t in sents],
        }

    return [
        ref(1, 10, 1, "val", (100, "the left dog"), (101, "  Dog On The Left ")),
        ref(2, 11, 1, "val", (102, "small box on the right")),
        ref(3, 12, 2, "val", (103, "nothing at all")),
        ref(4, 13, 2, "test", (104, "the middle square")),
    ]


def _summed(ann: dict[str, Any], h: int, w: int) -> np.ndarray:
    """GLaMM's ReferSegmDataset: frPyObjects, decode, np.sum(axis=2), uint8."""
    seg = ann["segmentation"]
    if isinstance(seg, list) and not seg:
        return np.zeros((h, w), np.uint8)
    if isinstance(seg, dict):
        return decode(seg).astype(np.uint8)
    m = mask_utils.decode(mask_utils.frPyObjects(seg, h, w))
    return np.sum(m, axis=2).astype(np.uint8)


def _predictions() -> dict[str, dict[str, Any]]:
    return {
        "1/100": {"text": "It is [SEG].", "masks": [{"rle": rle(box(20, 24, 0, 0, 12, 12))}]},
        "1/101": {"text": "Sorry, I don't see it."},  # no mask: an empty prediction
        "2/102": {  # two masks: their union is scored
            "text": "<p>box</p> [SEG] and <p>more</p> [SEG].",
            "masks": [{"rle": rle(box(20, 24, 10, 14, 16, 17))}, {"rle": rle(box(20, 24, 10, 17, 16, 20))}],
        },
        "3/103": {"text": "It is [SEG].", "masks": [{"rle": rle(np.zeros((16, 16), np.uint8))}]},
    }


def _write(tmp_path: Path) -> tuple[Path, Path, Path]:
    refs, instances = write_refer(tmp_path / "refcocog", _refs(), [IMG1, IMG2], _anns(), "refs(umd).p")
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": k, **v}) + "\n" for k, v in _predictions().items()))
    return refs, instances, preds


def _expected(binarise: bool) -> tuple[float, float]:
    anns = {a["id"]: a for a in _anns()}
    sizes = {1: (20, 24), 2: (16, 16)}
    ann_of = {"1/100": 10, "1/101": 10, "2/102": 11, "3/103": 12}
    pairs = []
    for sid, pred in _predictions().items():
        ann = anns[ann_of[sid]]
        h, w = sizes[ann["image_id"]]
        gt = _summed(ann, h, w)
        masks = [decode(m["rle"]) for m in pred.get("masks", [])]
        merged = (np.sum(masks, axis=0) > 0).astype(np.uint8) if masks else np.zeros((h, w), np.uint8)
        pairs.append((merged, (gt > 0).astype(np.uint8) if binarise else gt))
    c, g = ref_glamm_ciou_giou(pairs)
    return 100 * c, 100 * g


def test_reader_samples_and_prompts(tmp_path: Path) -> None:
    refs, instances, _ = _write(tmp_path)
    task = get_task("refseg_refcocog")
    read = task.load_samples({"refs": refs, "instances": instances, "images": None})
    samples = read.samples
    assert [s.id for s in samples] == ["1/100", "1/101", "2/102", "3/103"]  # split val only
    prompts = [r.prompt for r in task.build_requests(samples)]
    assert (
        prompts[1]
        == "The <image> provides an overview of the picture.\nCan you segment the dog on the left in this image?"
    )
    infos = [s.meta.to_json() for s in samples]
    assert "once" in infos[0] and "once" not in infos[2]  # only the overlapping polygons differ
    assert decode(samples[0].target).sum() == (_summed(_anns()[0], 20, 24) > 0).sum()
    assert decode(samples[3].target).sum() == 0
    assert task.build_requests(samples)[3].image_size == (16, 16)
    assert "4 sentences" in read.notes[0] and "1 refs' polygons overlap" in read.notes[0]
    test_split = get_task("refseg_refcocog_test").load_samples(
        {"refs": refs, "instances": instances, "images": None}
    )
    assert [s.id for s in test_split.samples] == ["4/104"]


@pytest.mark.parametrize(("variant", "binarise"), [("default", True), ("reference", False)])
def test_score_equals_glamms_arithmetic(tmp_path: Path, variant: str, binarise: bool) -> None:
    refs, instances, preds = _write(tmp_path)
    out = tmp_path / "out"
    args = ["score", "--task", "refseg_refcocog", "--predictions", str(preds), "--protocol", variant]
    assert (
        main([*args, "--data", f"refs={refs}", "--data", f"instances={instances}", "--output", str(out)]) == 0
    )
    results = json.loads((out / "results.json").read_text())
    ciou, giou = _expected(binarise)
    assert results["metrics"]["ciou"] == pytest.approx(ciou, rel=1e-9)
    assert results["metrics"]["giou"] == pytest.approx(giou, rel=1e-9)
    assert results["counts"]["no_mask"] == 1 and results["counts"]["several_masks"] == 1
    deviations = results["provenance"]["deviations"]
    assert any("single-turn" in d for d in deviations) and any("several masks" in d for d in deviations)
    if binarise:  # the overlapping polygons make the two ground truths differ
        assert (ciou, giou) != _expected(False)


def test_replay_run(tmp_path: Path) -> None:
    refs, instances, preds = _write(tmp_path)
    images = tmp_path / "train2014"
    images.mkdir()
    for img in (IMG1, IMG2):
        Image.new("RGB", (img["width"], img["height"])).save(images / img["file_name"], format="JPEG")
    out = tmp_path / "run"
    args = ["run", "--model", "replay", "--model-args", f"path={preds}", "--task", "refseg_refcocog"]
    data = ["--data", f"refs={refs}", "--data", f"instances={instances}", "--data", f"images={images}"]
    assert main([*args, *data, "--output", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["metrics"]["ciou"] == pytest.approx(_expected(True)[0], rel=1e-9)


def test_malformed_mask_fails_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refs, instances, preds = _write(tmp_path)
    lines = preds.read_text().splitlines()
    lines[2] = json.dumps(
        {"id": "2/102", "text": "It is [SEG].", "masks": [{"rle": rle(box(16, 16, 0, 0, 2, 2))}]}
    )
    preds.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    args = ["score", "--task", "refseg_refcocog", "--predictions", str(preds)]
    assert main([*args, "--data", f"refs={refs}", "--data", f"instances={instances}"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(preds) in err and "line 3" in err
    assert "mask is 16x16, the image is 20x24" in err


# ---------------------------------------------------------------------- gRefCOCO
def _grefs() -> list[dict[str, Any]]:
    def ref(ref_id: int, ann_ids: Any, image_id: int, *sents: str) -> dict[str, Any]:
        return {
            "ref_id": ref_id,
            "ann_id": ann_ids,
            "image_id": image_id,
            "split": "val",
            "category_id": [1],
            "no_target": ann_ids == [-1],
            "sentences": [{"sent_id": 10 * ref_id + k, "sent": s, "raw": s} for k, s in enumerate(sents)],
        }

    return [
        ref(1, [10, 11], 1, "both boxes", "the two things"),  # multi-target: union; first sentence only
        ref(2, [-1], 1, "a flying whale"),  # no target, predicted none: TP
        ref(3, [-1], 2, "a purple cow"),  # no target, predicted a mask: FN
        ref(4, [13], 2, "the middle square"),  # targeted, predicted none: FP
        ref(5, 11, 1, "the small box"),  # an int ann_id is one element
    ]


GREF_PREDICTIONS: dict[str, dict[str, Any]] = {
    "1": {"text": "<p>both</p> [SEG]", "masks": [{"rle": rle(box(20, 24, 2, 2, 16, 20))}]},
    "2": {"text": "Sorry, I don't see any a flying whale in this image."},
    "3": {"text": "It is [SEG].", "masks": [{"rle": rle(box(16, 16, 0, 0, 3, 3))}]},
    "4": {"text": "Sorry."},
    "5": {"text": "It is [SEG].", "masks": [{"rle": rle(box(20, 24, 10, 14, 16, 20))}]},
}


def test_grefcoco_scores_equal_mglmm_and_relas_arithmetic(tmp_path: Path) -> None:
    grefs, instances = write_refer(tmp_path / "grefcoco", _grefs(), [IMG1, IMG2], _anns(), "grefs(unc).json")
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": k, **v}) + "\n" for k, v in GREF_PREDICTIONS.items()))
    task = get_task("grefcoco")
    samples = task.load_samples({"grefs": grefs, "instances": instances, "images": None}).samples
    assert [s.id for s in samples] == ["1", "2", "3", "4", "5"]
    assert task.build_requests(samples)[0].prompt.endswith("Can you segment the both boxes in this image?")

    anns = {a["id"]: a for a in _anns()}
    sizes = {1: (20, 24), 2: (16, 16)}
    pairs, rela = [], []
    for ref in _grefs():
        h, w = sizes[ref["image_id"]]
        ids = ref["ann_id"] if isinstance(ref["ann_id"], list) else [ref["ann_id"]]
        m_final = np.zeros((h, w), np.uint8)
        if -1 not in ids:
            for a in ids:
                m_final = m_final | _summed(anns[a], h, w)  # RefCOCO_Segm_ds: bitwise OR
        gt = (m_final > 0).astype(np.uint8)  # enable_merge: sum(0) > 0
        masks = [decode(m["rle"]) for m in GREF_PREDICTIONS[str(ref["ref_id"])].get("masks", [])]
        pred = (np.sum(masks, axis=0) > 0).astype(np.uint8) if masks else np.zeros((h, w), np.uint8)
        pairs.append((pred, gt))
        rela.append((pred, gt, not pred.any(), -1 in ids))
    ref_c, ref_g = ref_glamm_ciou_giou(pairs)
    expected_rela = ref_rela(rela)

    results = {}
    for variant in ("default", "rela"):
        out = tmp_path / variant
        args = ["score", "--task", "grefcoco", "--predictions", str(preds), "--protocol", variant]
        assert (
            main(
                [*args, "--data", f"grefs={grefs}", "--data", f"instances={instances}", "--output", str(out)]
            )
            == 0
        )
        results[variant] = json.loads((out / "results.json").read_text())
    default, relas = results["default"]["metrics"], results["rela"]["metrics"]
    assert list(default) == ["ciou", "giou", "n_acc", "t_acc"]
    assert default["ciou"] == pytest.approx(100 * ref_c, rel=1e-9)
    assert default["giou"] == pytest.approx(100 * ref_g, rel=1e-9)
    assert relas["ciou"] == pytest.approx(expected_rela["cIoU"], rel=1e-12)
    assert relas["giou"] == pytest.approx(expected_rela["gIoU"], rel=1e-12)
    for m in (default, relas):
        assert m["n_acc"] == pytest.approx(100 * expected_rela["N_acc"]) == pytest.approx(50.0)
        assert m["t_acc"] == pytest.approx(100 * expected_rela["T_acc"]) == pytest.approx(200 / 3)
    counts = results["default"]["counts"]
    assert (counts["nt_tp"], counts["nt_fn"], counts["nt_fp"], counts["nt_tn"], counts["no_target"]) == (
        1,
        1,
        1,
        2,
        2,
    )
