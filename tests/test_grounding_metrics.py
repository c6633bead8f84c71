"""The mask-output metrics against the released arithmetic: PROTOCOLS_WAVE2 §P vectors 1, 2,
3 and 8, pycocotools' COCOeval (run here) for AP50, and the reference loops restated on dense
numpy masks (tests/grounding_helpers.py) for mIoU, mask recall, cIoU / gIoU and gRefCOCO."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from evalkit.metrics.grounding import (
    RecallImage,
    SegmImage,
    greedy_miou,
    grounded_ap50,
    iou_matrix,
    mask_recall,
    recall_matches,
)
from evalkit.metrics.phrase_similarity import BertPhraseEncoder
from evalkit.metrics.refseg import IoUCount, NoTargetSample, ciou, giou, grefcoco_scores
from evalkit.metrics.spec import metric_spec
from tests.grounding_helpers import (
    box,
    decode,
    ref_bert_similarity,
    ref_compute_miou,
    ref_find_best_matches,
    ref_glamm_ciou_giou,
    ref_intersection_union,
    ref_rela,
    rle,
    write_tiny_bert,
)


# ---------------------------------------------------------------------- §P vector 1: recall stops
def _vector1_masks() -> tuple[list[np.ndarray], list[np.ndarray]]:
    h, w = 10, 40
    gt_a, gt_b = box(h, w, 0, 0, 1, 10), box(h, w, 5, 20, 6, 30)  # 10 pixels each
    pred_a = box(h, w, 0, 0, 1, 9)  # IoU(A, a) = 9 / 10
    pred_b = box(h, w, 5, 20, 6, 28)  # IoU(B, b) = 8 / 10
    return [gt_a, gt_b], [pred_a, pred_b]


def test_vector1_mask_recall_stops_at_the_first_failing_pair() -> None:
    gts, preds = _vector1_masks()
    ious = iou_matrix([rle(m) for m in gts], [rle(m) for m in preds])
    assert np.allclose(ious, [[0.9, 0.0], [0.0, 0.8]])
    sims = np.array([[0.3, 0.0], [0.0, 0.9]])
    image = recall_matches(ious, sims, n_labels=2)
    assert image.matches == () and image.failed is None  # reference: 0 / 2
    assert ref_find_best_matches(gts, preds, sims) == []
    assert mask_recall([image]).recall == 0.0
    # A `continue` implementation would have matched (B, b): 1 / 2 — not what GLaMM computes.
    passing = sims.copy()
    passing[0, 0] = 0.6
    assert recall_matches(ious, passing, 2).matches == ((0, 0), (1, 1))
    assert mask_recall([recall_matches(ious, passing, 2)]).recall == 1.0


def test_recall_raises_like_the_reference_and_the_two_policies() -> None:
    gts, preds = _vector1_masks()
    ious = iou_matrix([rle(m) for m in gts], [rle(m) for m in preds])
    one_phrase = np.array([[0.9], [0.0]])  # two masks predicted, one phrase: (1, 1) has none
    swapped = ious[:, ::-1].copy()  # the best pair is now (0, 1): outside the 2 x 1 matrix
    with pytest.raises(IndexError):
        ref_find_best_matches(gts, preds[::-1], one_phrase)
    failed = recall_matches(swapped, one_phrase, n_labels=2)
    assert failed.failed is not None and "IndexError" in failed.failed and failed.matches == ()
    ok = RecallImage(3, ((0, 0), (1, 2)))
    assert mask_recall([ok, failed], "counted").recall == pytest.approx(2 / 5)  # GLaMM
    assert mask_recall([ok, failed], "excluded").recall == pytest.approx(2 / 3)  # MGLMM
    # An IoU below the threshold breaks before the similarity is read: no IndexError then.
    assert recall_matches(np.array([[0.4, 0.45]]), np.zeros((1, 0)), 1).failed is None


def test_recall_and_miou_follow_numpy_nan_semantics() -> None:
    h, w = 6, 6
    empty, full = np.zeros((h, w), np.uint8), box(h, w, 0, 0, 3, 3)
    gts, preds = [empty, full], [empty, full]
    ious = iou_matrix([rle(m) for m in gts], [rle(m) for m in preds])
    assert np.isnan(ious[0, 0]) and ious[1, 1] == 1.0
    sims = np.ones((2, 2))
    # argmax lands on the NaN first; NaN < 0.5 is False, so the empty pair is a match.
    assert recall_matches(ious, sims, 2).matches == ((0, 0), (1, 1))
    assert ref_find_best_matches(gts, preds, sims) == [(0, 0), (1, 1)]
    # mIoU: max() is NaN, the loop does not even start.
    assert greedy_miou(ious) == 0.0 == ref_compute_miou(preds, gts)


# ---------------------------------------------------------------------- §P vector 2: greedy mIoU
def test_vector2_greedy_miou() -> None:
    assert greedy_miou(np.array([[0.9, 0.6], [0.7, 0.0]])) == 0.9  # then [[0.0]]: stop
    assert greedy_miou(np.zeros((2, 3))) == 0.0
    assert greedy_miou(np.zeros((0, 3))) == 0.0
    assert greedy_miou(np.array([[0.2, 0.5], [0.6, 0.1]])) == pytest.approx((0.6 + 0.5) / 2)


def test_miou_and_recall_equal_the_reference_on_random_masks() -> None:
    rng = np.random.default_rng(7)
    for _ in range(60):
        h, w = int(rng.integers(4, 12)), int(rng.integers(4, 12))
        n_gt, n_pred = int(rng.integers(0, 5)), int(rng.integers(0, 5))

        def masks(n: int, h: int, w: int) -> list[np.ndarray]:
            return [(rng.random((h, w)) < rng.random() * 0.6).astype(np.uint8) for _ in range(n)]

        gts, preds = masks(n_gt, h, w), masks(n_pred, h, w)
        ious = iou_matrix([rle(m) for m in preds], [rle(m) for m in gts])
        assert greedy_miou(ious) == pytest.approx(ref_compute_miou(preds, gts), abs=1e-12)
        sims = rng.random((n_gt, n_pred))
        assert list(recall_matches(ious.T, sims, n_gt).matches) == ref_find_best_matches(gts, preds, sims)


# ---------------------------------------------------------------------- §P vector 3: AP50 ties
def _cocoeval_ap50(tmp_path: Path, images: list[SegmImage]) -> float:
    """GLaMM's AP block: COCO(mask_gt), loadRes of score-1.0 category-1 masks, catIds [1]."""
    gt = {
        "images": [{"id": im.image_id, "height": 8, "width": 8} for im in images],
        "annotations": [
            {
                "id": gid,
                "image_id": im.image_id,
                "category_id": 1,
                "segmentation": r,
                "area": float(decode(r).sum()),
                "iscrowd": 0,
            }
            for im in images
            for gid, r in zip(im.gt_ids, im.gt_rles, strict=True)
        ],
        "categories": [{"id": 1, "name": "object"}],
    }
    dets = [
        {"image_id": im.image_id, "category_id": 1, "segmentation": r, "score": 1.0}
        for im in images
        for r in im.pred_rles
    ]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(tmp_path / "gt.json"))
        coco_dt = coco_gt.loadRes(str(tmp_path / "dt.json"))
        ev = COCOeval(coco_gt, coco_dt, "segm")
        ev.params.catIds = [1]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[1])


def test_vector3_ap50_follows_image_then_mask_order(tmp_path: Path) -> None:
    g1, g2 = box(8, 8, 0, 0, 4, 4), box(8, 8, 4, 4, 8, 8)
    miss = box(8, 8, 0, 6, 2, 8)
    sa1 = SegmImage("sa_1", [1], [rle(g1)], [False], [rle(g1)])  # one TP
    sa2 = SegmImage("sa_2", [2], [rle(g2)], [False], [rle(miss), rle(g2)])  # FP listed first, TP
    # pycocotools: sa_1 TP, sa_2 FP, sa_2 TP -> precision [1, .5, .667], recall [.5, .5, 1]
    expected = (51 * 1.0 + 50 * (2 / 3)) / 101
    assert grounded_ap50([sa1, sa2]) == pytest.approx(expected, abs=1e-12)
    assert _cocoeval_ap50(tmp_path, [sa1, sa2]) == pytest.approx(expected, abs=1e-12)
    assert round(expected, 3) == 0.835
    reversed_masks = SegmImage("sa_2", [2], [rle(g2)], [False], [rle(g2), rle(miss)])
    assert grounded_ap50([sa1, reversed_masks]) == 1.0 == _cocoeval_ap50(tmp_path, [sa1, reversed_masks])
    # Images are taken in sorted id order whatever order they are given in.
    assert grounded_ap50([sa2, sa1]) == grounded_ap50([sa1, sa2])


def test_ap50_equals_cocoeval_on_random_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    for trial in range(8):
        images, next_id = [], 0  # id 0: COCOeval's dtm == 0 quirk (MGSC's converter starts there)
        for k in range(int(rng.integers(1, 6))):
            gts, preds = [], []
            for _ in range(int(rng.integers(0, 4))):
                y, x = int(rng.integers(0, 5)), int(rng.integers(0, 5))
                gts.append(box(8, 8, y, x, y + 3, x + 3))
            for _ in range(int(rng.integers(0, 5))):
                y, x = int(rng.integers(0, 5)), int(rng.integers(0, 5))
                preds.append(box(8, 8, y, x, y + int(rng.integers(2, 4)), x + 3))
            ids = list(range(next_id, next_id + len(gts)))
            next_id += len(gts)
            images.append(
                SegmImage(
                    f"sa_{k}{trial}", ids, [rle(g) for g in gts], [False] * len(gts), [rle(p) for p in preds]
                )
            )
        if next_id == 0 or not any(im.pred_rles for im in images):
            continue
        assert grounded_ap50(images) == pytest.approx(_cocoeval_ap50(tmp_path, images), abs=1e-12)


# ---------------------------------------------------------------------- §P vector 8: cIoU / gIoU
def test_vector8_ciou_and_giou() -> None:
    counts = [IoUCount(50, 100), IoUCount(0, 0)]
    assert ciou(counts) == 50 / (100 + 1e-10)
    assert giou(counts) == (50 / (100 + 1e-5) + (0 / (0 + 1e-5) + 1)) / (2 + 1e-5)
    assert giou(counts) == pytest.approx(0.75, abs=1e-5)
    # The same two samples through the reference's histc path.
    pred_a, gt_a = box(10, 20, 0, 0, 5, 10), box(10, 20, 0, 0, 10, 5)  # I 25, U 75
    empty = np.zeros((10, 20), np.uint8)
    c, g = ref_glamm_ciou_giou([(pred_a, gt_a), (empty, empty)])
    assert ref_intersection_union(pred_a, gt_a) == (25.0, 75.0)
    assert ciou([IoUCount(25, 75), IoUCount(0, 0)]) == pytest.approx(c, rel=1e-12)
    assert giou([IoUCount(25, 75), IoUCount(0, 0)]) == pytest.approx(g, rel=1e-12)


def test_refseg_counts_reproduce_histc_including_overlapping_polygons() -> None:
    """GLaMM's GT is the *sum* of an object's polygons: value-2 pixels fall outside histc's
    [0, 1] and are not the object; scoring against the exactly-once mask gives its numbers."""
    rng = np.random.default_rng(11)
    pairs, counts_once = [], []
    for _ in range(30):
        pred = (rng.random((9, 9)) < 0.4).astype(np.uint8)
        p1, p2 = box(9, 9, 0, 0, 5, 5), box(9, 9, 3, 3, 8, 8)
        # two overlapping polygons (values 0, 1, 2), or an empty segmentation
        summed = p1.astype(np.int64) + p2 if rng.random() < 0.7 else np.zeros((9, 9), np.int64)
        pairs.append((pred, summed))
        once = (summed == 1).astype(np.uint8)
        inter = int(np.sum(pred & once))
        counts_once.append(IoUCount(inter, int(pred.sum()) + int(once.sum()) - inter))
    ref_c, ref_g = ref_glamm_ciou_giou(pairs)
    assert ciou(counts_once) == pytest.approx(ref_c, rel=1e-9)
    assert giou(counts_once) == pytest.approx(ref_g, rel=1e-9)


def test_grefcoco_scores_equal_relas_evaluator() -> None:
    rng = np.random.default_rng(5)
    dense, ours = [], []
    for k in range(40):
        gt_nt = k % 4 == 0
        gt = np.zeros((6, 6), np.uint8) if gt_nt else (rng.random((6, 6)) < 0.5).astype(np.uint8)
        pred = (
            (rng.random((6, 6)) < 0.4).astype(np.uint8) if rng.random() < 0.7 else np.zeros((6, 6), np.uint8)
        )
        pred_nt = not pred.any()
        dense.append((pred, gt, pred_nt, gt_nt))
        inter = int(np.sum(pred & gt))
        ours.append(NoTargetSample(IoUCount(inter, int(np.sum(pred | gt))), gt_nt, pred_nt))
    ref = ref_rela(dense)
    got = grefcoco_scores(ours)
    assert got.ciou * 100 == pytest.approx(ref["cIoU"], rel=1e-12)
    assert got.giou * 100 == pytest.approx(ref["gIoU"], rel=1e-12)
    assert got.n_acc == pytest.approx(ref["N_acc"]) and got.t_acc == pytest.approx(ref["T_acc"])
    assert got.tp + got.fn == 10 and got.tp + got.fn + got.fp + got.tn == 40
    # No no-target sample: both accuracies are 0, as in ReLA.
    only_targets = [s for s in ours if not s.gt_no_target]
    assert (grefcoco_scores(only_targets).n_acc, grefcoco_scores(only_targets).t_acc) == (0.0, 0.0)


# ---------------------------------------------------------------------- phrase similarity
@pytest.mark.slow  # transformers' import and two model loads: ~6 s on 2 shared cores
def test_phrase_similarity_is_the_references_bert_cosine(tmp_path: Path) -> None:
    folder = write_tiny_bert(tmp_path / "bert")
    encoder = BertPhraseEncoder(folder)
    labels = ["a red circle", "the dog on grass", "house"]
    phrases = ["red circle", "a blue square", "the dog", "house"]
    sims = encoder.similarities(labels, phrases)
    assert sims.shape == (3, 4) and sims.dtype == np.float64
    for i, a in enumerate(labels):
        for j, b in enumerate(phrases):
            assert sims[i, j] == ref_bert_similarity(folder, a, b)  # bit for bit (float32 cosine)
    assert encoder.similarities([], phrases).shape == (0, 4)
    assert set(encoder.fingerprint()) >= {"config.json", "model.safetensors"}


def test_the_new_metrics_are_declared() -> None:
    headers = {
        m: metric_spec(m).header for m in ("mask_recall", "ciou", "giou", "n_acc", "t_acc", "ap50", "miou")
    }
    assert headers == {
        "mask_recall": "MR",
        "ciou": "cIoU",
        "giou": "gIoU",
        "n_acc": "N-acc",
        "t_acc": "T-acc",
        "ap50": "AP50",
        "miou": "mIoU",
    }
