"""Metric engines against the reference implementations on adversarial generated data.

PQ vs panopticapi ``pq_compute_single_core`` (arbitrary predictions, not only relabelled
ground truth: segments straddling VOID and crowds, several crowds of one category, JSON
areas that differ from pixel counts); AP vs pycocotools ``COCOeval`` (score ties, crowds,
more than 100 detections, categories without ground truth or without detections, string
image ids); mIoU by hand.
"""

from __future__ import annotations

import contextlib
import io
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from evalkit.metrics.instance import InstanceImage, coco_segm_ap, mask_ious
from evalkit.metrics.ovseg_assembly import assemble, class_cosines, query_log_probs
from evalkit.metrics.panoptic import (
    PanopticImage,
    Segment,
    intersections_from_maps,
    panoptic_quality,
)
from evalkit.metrics.semseg import confusion_matrix, semseg_metrics

CATEGORIES = [{"id": i, "isthing": int(i % 2 == 0), "name": f"c{i}"} for i in (3, 1, 4, 8, 6, 9)]


def _random_map(rng: random.Random, h: int, w: int, n: int, void: bool) -> np.ndarray:
    m = np.full((h, w), rng.randrange(1, 50), dtype=np.int64)
    for _ in range(n):
        y, x = rng.randrange(h), rng.randrange(w)
        m[y : y + rng.randint(1, h // 2), x : x + rng.randint(1, w // 2)] = rng.randrange(1, 60)
    if void:
        y, x = rng.randrange(h), rng.randrange(w)
        m[y : y + rng.randint(1, 12), x : x + rng.randint(1, 12)] = 0
    return m


@pytest.mark.parametrize("seed", range(4))
def test_panoptic_quality_equals_panopticapi(tmp_path: Path, seed: int) -> None:
    pytest.importorskip("panopticapi")
    from panopticapi.evaluation import pq_compute_single_core
    from panopticapi.utils import id2rgb

    rng = random.Random(seed)
    cat_ids = [c["id"] for c in CATEGORIES][:-1]  # the last category never occurs
    pairs, images = [], []
    for n in range(6):
        gt_map = _random_map(rng, 40, 50, 12, void=True)
        pred_map = _random_map(rng, 40, 50, 10, void=rng.random() < 0.7)
        gt_segs, pred_segs = [], []
        for sid, count in zip(*np.unique(gt_map, return_counts=True), strict=True):
            if sid:
                crowd = rng.random() < 0.2
                area = int(count) + (rng.randint(0, 20) if rng.random() < 0.3 else 0)
                gt_segs.append(
                    {
                        "id": int(sid),
                        "category_id": rng.choice(cat_ids),
                        "area": area,
                        "iscrowd": int(crowd),
                    }
                )
        for sid in np.unique(pred_map).tolist():
            if sid:
                pred_segs.append({"id": sid, "category_id": rng.choice(cat_ids)})
        Image.fromarray(id2rgb(gt_map)).save(tmp_path / f"gt{n}.png")
        Image.fromarray(id2rgb(pred_map)).save(tmp_path / f"pred{n}.png")
        pairs.append(
            (
                {"image_id": n, "file_name": f"gt{n}.png", "segments_info": gt_segs},
                {
                    "image_id": n,
                    "file_name": f"pred{n}.png",
                    "segments_info": [dict(s) for s in pred_segs],
                },
            )
        )
        pred_area = dict(zip(*np.unique(pred_map, return_counts=True), strict=True))
        images.append(
            PanopticImage(
                [
                    Segment(int(s["id"]), int(s["category_id"]), int(s["area"]), bool(s["iscrowd"]))
                    for s in gt_segs
                ],
                [Segment(int(s["id"]), int(s["category_id"]), int(pred_area[s["id"]])) for s in pred_segs],
                intersections_from_maps(gt_map, pred_map),
            )
        )
    categories = {int(c["id"]): c for c in CATEGORIES}
    with contextlib.redirect_stdout(io.StringIO()):
        stat = pq_compute_single_core(0, pairs, str(tmp_path), str(tmp_path), categories)
    ours = panoptic_quality(images, {int(c["id"]): c["isthing"] == 1 for c in CATEGORIES})
    for split, isthing in (("all", None), ("things", True), ("stuff", False)):
        ref, per_class = stat.pq_average(categories, isthing=isthing)
        for key in ("pq", "sq", "rq", "n"):
            assert ours.splits[split][key] == pytest.approx(ref[key], abs=1e-12), (split, key)
    for cat_id, values in per_class.items():
        assert ours.per_category[cat_id]["pq"] == pytest.approx(values["pq"], abs=1e-12)
    assert ours.splits["all"]["n"] == len(cat_ids)


def _blob(rng: random.Random, h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=np.uint8)
    y, x = rng.randrange(h), rng.randrange(w)
    m[y : y + rng.randint(1, h // 2), x : x + rng.randint(1, w // 2)] = 1
    return m


@pytest.mark.parametrize(("seed", "int_ids"), [(0, False), (1, True), (2, False)])
def test_coco_segm_ap_equals_cocoeval(seed: int, int_ids: bool) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = random.Random(seed)
    h, w = 30, 40
    cat_ids = [1, 2, 5, 7]  # 7 never has ground truth; detections of 9 are not a GT category
    gt_anns, results, ours = [], [], []
    ann_id = 1
    for n in range(7):
        image_id: int | str = n * 3 + 1 if int_ids else f"im{(n * 7) % 10}"
        gts = []
        for _ in range(rng.randint(0, 6)):
            rle = mask_utils.encode(np.asfortranarray(_blob(rng, h, w)))
            crowd = int(rng.random() < 0.15)
            gts.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": rng.choice([1, 2, 5]),
                    "iscrowd": crowd,
                    "segmentation": rle,
                    "area": float(mask_utils.area(rle)),
                }
            )
            ann_id += 1
        dets = []
        n_dets = 130 if n == 3 else rng.randint(0, 25)  # > 100 in one image
        for _ in range(n_dets):
            mask, cat = _blob(rng, h, w), rng.choice([1, 1, 2, 5, 7, 9])
            if gts and rng.random() < 0.6:  # a shifted copy of a ground truth
                g = rng.choice(gts)
                mask = np.roll(
                    mask_utils.decode(g["segmentation"]), rng.randint(0, 2), axis=rng.randint(0, 1)
                )
                cat = g["category_id"] if rng.random() < 0.8 else cat
            dets.append(
                {
                    "image_id": image_id,
                    "category_id": cat,
                    "segmentation": mask_utils.encode(np.asfortranarray(mask)),
                    "score": rng.choice([0.5, 0.25, 0.9, round(rng.random(), 3)]),
                }
            )  # ties
        gt_anns += gts
        results += dets
        ious = mask_ious(
            [d["segmentation"] for d in dets],
            [g["segmentation"] for g in gts],
            [bool(g["iscrowd"]) for g in gts],
        )
        ours.append(
            InstanceImage(
                image_id,
                np.array([g["id"] for g in gts]),
                np.array([g["category_id"] for g in gts]),
                np.array([bool(g["iscrowd"]) for g in gts]),
                np.array([d["category_id"] for d in dets]),
                np.array([d["score"] for d in dets]),
                ious,
            )
        )
    images = [{"id": im.image_id, "height": h, "width": w} for im in ours]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": images,
            "annotations": gt_anns,
            "categories": [{"id": c} for c in cat_ids],
        }
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(results), "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    result = coco_segm_ap(ours, cat_ids)
    assert result.ap == pytest.approx(ev.stats[0], abs=1e-12)
    assert result.ap50 == pytest.approx(ev.stats[1], abs=1e-12)
    ref_precision = ev.eval["precision"][:, :, :, 0, 2]
    np.testing.assert_allclose(result.precision, ref_precision, atol=1e-12)
    assert 0 < result.ap < 1


def test_semseg_hand_computed() -> None:
    gt = np.array([[0, 0, 1, 255], [2, 2, 1, 1]])
    pred = np.array([[0, 1, 1, 3], [2, 0, 1, 3]])  # class 3 predicted only on ignored/absent
    conf = confusion_matrix(pred, gt, num_classes=4)
    res = semseg_metrics(conf)
    # class 0: tp 1, gt 2, pred 2 -> 1/3; class 1: tp 2, gt 3, pred 3 -> 2/4; class 2: 1/2
    # class 3: no ground-truth pixel -> left out although predicted on a class-1 pixel
    assert res.iou[:3] == pytest.approx([1 / 3, 2 / 4, 1 / 2])
    assert np.isnan(res.iou[3])
    assert res.miou == pytest.approx((1 / 3 + 1 / 2 + 1 / 2) / 3)
    assert res.pacc == pytest.approx(4 / 7)
    with pytest.raises(ValueError, match="neither a class"):
        confusion_matrix(pred, np.full_like(gt, 7), num_classes=4)


def test_query_probabilities_follow_the_reference() -> None:
    cos = np.array([[0.9, 0.1, 0.2], [0.0, 0.0, 0.5]])
    log_p = query_log_probs(cos)
    assert log_p.shape == (300, 4)
    p = np.exp(log_p)
    soft = np.exp(cos) / np.exp(cos).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(p[:2, :3], soft + 1e-8)
    np.testing.assert_allclose(p[:2, 3], 1e-8)
    np.testing.assert_allclose(p[2:, :3], 1e-8)
    np.testing.assert_allclose(p[2:, 3], 1 + 1e-8)


def test_assembly_merges_stuff_and_cuts_top_100() -> None:
    # 3 classes: 0 stuff, 1 stuff, 2 thing; queries 0 and 2 say class 0, query 1 class 2
    cos = np.array([[0.9, 0.1, 0.0], [0.0, 0.1, 0.8], [0.7, 0.2, 0.1]])
    out = assemble(cos, np.array([10, 5, 7]), np.array([False, False, True]), uncovered=3)
    assert out.semantic_class.tolist() == [0, 2, 0]
    assert [(s.id, s.class_index, s.queries) for s in out.panoptic] == [(1, 0, [0, 2]), (2, 2, [1])]
    # 300 x 3 pairs: the top 100 are the 9 real pairs then 91 padding pairs (1e-8 level);
    # thing class 2 keeps 3 real detections and the padding rows of class 2 among them
    real = out.det_query < 3
    assert sorted(out.det_query[real].tolist()) == [0, 1, 2]
    assert np.all(out.det_class == 2)
    assert np.all(out.det_score[~real] == 0)  # empty masks score 0
    p = np.exp(cos[1]) / np.exp(cos[1]).sum()
    expected = (p[2] + 1e-8) / (1 + 4e-8) * (1 / (1 + np.exp(-1.0))) * 5 / (5 + 1e-6)
    # float32, as the reference computes instance scores (issue 20 A1; was rel=1e-12 in float64)
    assert out.det_score[out.det_query == 1][0] == pytest.approx(expected, rel=1e-6)
    assert out.det_score.astype(np.float32).astype(np.float64).tolist() == out.det_score.tolist()


def test_equal_answers_tie_whatever_their_areas() -> None:
    """float32 as the reference: A / (A + 1e-6) is 1 above 31 px, so three regions with the
    same answer score the same and stay in query order (float64 ranked them by area)."""
    cos = np.array([[0.9, 0.2, 0.1], [0.9, 0.2, 0.1], [0.9, 0.2, 0.1], [0.1, 0.1, 0.9]])
    out = assemble(cos, np.array([100, 400, 50, 1050]), np.array([True, True, False]), uncovered=0)
    car = out.det_class == 0
    assert out.det_query[car][:3].tolist() == [0, 1, 2]
    assert len(set(out.det_score[car][:3].tolist())) == 1
    # below 32 px the float32 factor is still under 1: a tiny region ranks after
    tiny = assemble(cos, np.array([100, 400, 20, 1050]), np.array([True, True, False]), uncovered=0)
    scores = tiny.det_score[tiny.det_class == 0][:3]
    assert scores[0] == scores[1] > scores[2]


def test_class_cosines_take_the_best_synonym() -> None:
    def encoder(texts: Sequence[str]) -> np.ndarray:
        table = {
            "a car": [1.0, 0.0],
            "There is a car in the scene.": [0.8, 0.6],
            "There is a auto in the scene.": [1.0, 0.1],
            "There is a road in the scene.": [0.0, 1.0],
        }
        return np.array([table[t] for t in texts])

    cos = class_cosines(["a car"], [["car", "auto"], ["road"]], encoder)
    assert cos[0, 0] == pytest.approx(1.0 / np.hypot(1.0, 0.1))
    assert cos[0, 1] == pytest.approx(0.0)


def test_minilm_maps_answers_to_osprey_classes(shared_dir: Path) -> None:
    from evalkit.tasks.ovseg.coco_panoptic import read_vocabulary

    from evalkit.metrics.embeddings import minilm

    vocab = read_vocabulary(shared_dir / "fixtures/osprey/cityscapes_with_prompt_eng.txt", 19)
    cos = class_cosines(["a red car", "the sky", "a person walking"], vocab.synonyms, minilm())
    assert cos.argmax(axis=1).tolist() == [13, 10, 11]  # car, sky, person (trainIds)
