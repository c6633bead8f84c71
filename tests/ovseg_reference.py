"""The reference open-vocabulary segmentation scoring, for parity tests and the benchmark.

Written from Osprey's ``eval_open_vocab_seg_detectron2.py`` (Mask2Former-style inference on
dense ``300 x H x W`` masks, torch) and detectron2's evaluators: prediction PNGs scored by
panopticapi's ``pq_compute_single_core``, RLE instances by pycocotools ``COCOeval``, semantic
maps by the SemSegEvaluator confusion matrix. Semantic and panoptic inference in float64
(the GPU ran float32; argmaxes agree), instance scores in float32 as the GPU computed them
(equal answers tie whatever their areas), so numbers can be compared to 1e-6.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

NUM_QUERIES = 300


def rgb2id_file(path: Path) -> np.ndarray:
    from panopticapi.utils import rgb2id

    return rgb2id(np.array(Image.open(path), dtype=np.uint32))


@dataclass
class ImageOutputs:
    image_id: Any
    panoptic: np.ndarray  # (H, W) int32 predicted segment ids
    segments_info: list[dict[str, Any]]  # contiguous category ids, isthing
    instances: list[tuple[np.ndarray, float, int]] = field(default_factory=list)  # mask, score, class
    semantic: np.ndarray | None = None  # (H, W) argmax class


def dense_inference(
    pan_gt: np.ndarray, cosines: np.ndarray, n_segments: int, thing: set[int]
) -> ImageOutputs:
    """The reference's get_gt_label + forward + semantic / panoptic / instance inference."""
    import torch
    import torch.nn.functional as F

    h, w = pan_gt.shape
    gt_label = torch.from_numpy(pan_gt.astype(np.int64))
    gt_ids = np.unique(pan_gt)
    masks = torch.zeros(NUM_QUERIES, h, w, dtype=torch.float64)
    is_void = torch.ones(NUM_QUERIES, 1, dtype=torch.float64)
    masks[0] = (gt_label == 0).double()
    cnt = 0
    for i, sid in enumerate(gt_ids.tolist()):
        if i >= NUM_QUERIES:
            break
        if sid == 0:
            continue
        masks[cnt] = (gt_label == sid).double()
        is_void[cnt, 0] = 0
        cnt += 1
    num = min(NUM_QUERIES, n_segments)
    n_classes = cosines.shape[1]
    cls = torch.zeros(NUM_QUERIES, n_classes, dtype=torch.float64)
    cls[:num] = torch.from_numpy(cosines[:num])
    mask_cls = torch.log(torch.cat([cls.softmax(-1) * (1.0 - is_void), is_void], dim=-1) + 1e-8)
    # semantic
    sem = torch.einsum("qc,qhw->chw", F.softmax(mask_cls, dim=-1)[..., :-1], masks).argmax(0)
    # panoptic
    scores, labels = F.softmax(mask_cls, dim=-1).max(-1)
    keep = labels.ne(n_classes) & (scores > 0)
    cur_scores, cur_classes, cur_masks = scores[keep], labels[keep], masks[keep]
    panoptic = torch.zeros((h, w), dtype=torch.int32)
    segments_info: list[dict[str, Any]] = []
    if cur_masks.shape[0] > 0:
        cur_mask_ids = (cur_scores.view(-1, 1, 1) * cur_masks).argmax(0)
        stuff_memory: dict[int, int] = {}
        current = 0
        for k in range(cur_classes.shape[0]):
            pred_class = int(cur_classes[k].item())
            isthing = pred_class in thing
            mask_area = (cur_mask_ids == k).sum().item()
            original_area = (cur_masks[k] >= 0.5).sum().item()
            mask = (cur_mask_ids == k) & (cur_masks[k] >= 0.5)
            if mask_area > 0 and original_area > 0 and mask.sum().item() > 0:
                if mask_area / original_area < 0.8:
                    continue
                if not isthing:
                    if pred_class in stuff_memory:
                        panoptic[mask] = stuff_memory[pred_class]
                        continue
                    stuff_memory[pred_class] = current + 1
                current += 1
                panoptic[mask] = current
                segments_info.append({"id": current, "isthing": isthing, "category_id": pred_class})
    # instance: float32, as the reference's tensors (cosines and masks are float32 there)
    cls32 = torch.zeros(NUM_QUERIES, n_classes, dtype=torch.float32)
    cls32[:num] = torch.from_numpy(cosines[:num]).float()
    void32 = is_void.float()
    mask_cls32 = torch.log(torch.cat([cls32.softmax(-1) * (1.0 - void32), void32], dim=-1) + 1e-8)
    masks32 = masks.float()
    probs = F.softmax(mask_cls32, dim=-1)[:, :-1]
    labels_all = torch.arange(n_classes).unsqueeze(0).repeat(NUM_QUERIES, 1).flatten(0, 1)
    # topk(100, sorted=False) has no defined order on CUDA: a stable top-k (ties by index)
    flat = probs.flatten(0, 1)
    top_idx = torch.from_numpy(np.argsort(-flat.numpy(), kind="stable")[:100].copy())
    top_scores = flat[top_idx]
    top_labels = labels_all[top_idx]
    top_masks = masks32[top_idx // n_classes]
    keep_i = torch.tensor([int(lab) in thing for lab in top_labels.tolist()], dtype=torch.bool)
    top_scores, top_labels, top_masks = top_scores[keep_i], top_labels[keep_i], top_masks[keep_i]
    binary = (top_masks > 0).float()
    # The float32 expression with an exact reduction (a GPU's summation order is unspecified):
    # the sum in float64, the float32 denominator, the quotient rounded to float32.
    numerator = (top_masks.sigmoid().flatten(1) * binary.flatten(1)).double().sum(1)
    mask_scores = (numerator / (binary.flatten(1).sum(1) + 1e-6).double()).float()
    final = top_scores * mask_scores
    instances = [(binary[i].numpy() > 0, float(final[i]), int(top_labels[i])) for i in range(len(final))]
    return ImageOutputs(None, panoptic.numpy(), segments_info, instances, sem.numpy())


def reference_metrics(
    outputs: list[ImageOutputs],
    pan_json: Path,
    pan_root: Path,
    sem_paths: dict[Any, Path],
    instances_gt: dict[str, Any],
) -> dict[str, float]:
    """panopticapi + pycocotools + SemSegEvaluator on the per-image outputs (ids = category ids)."""
    from panopticapi.evaluation import PQStat, pq_compute_single_core  # noqa: F401
    from pycocotools import mask as mask_utils

    gt = json.loads(pan_json.read_text())
    categories = {el["id"]: el for el in gt["categories"]}
    ranked = sorted(categories)
    gt_by_image = {a["image_id"]: a for a in gt["annotations"]}
    with tempfile.TemporaryDirectory() as tmp:
        pred_dir = Path(tmp)
        pairs = []
        for out in outputs:
            Image.fromarray(_id2rgb(out.panoptic)).save(pred_dir / f"{out.image_id}.png")
            infos = [{"id": s["id"], "category_id": ranked[s["category_id"]]} for s in out.segments_info]
            pairs.append(
                (
                    gt_by_image[out.image_id],
                    {
                        "image_id": out.image_id,
                        "file_name": f"{out.image_id}.png",
                        "segments_info": infos,
                    },
                )
            )
        with contextlib.redirect_stdout(io.StringIO()):
            stat = pq_compute_single_core(0, pairs, str(pan_root), str(pred_dir), categories)
    res = {}
    for name, isthing in (("all", None), ("things", True), ("stuff", False)):
        res[name], _ = stat.pq_average(categories, isthing=isthing)
    # instances
    results = []
    for out in outputs:
        for mask, score, cls in out.instances:
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            results.append(
                {
                    "image_id": out.image_id,
                    "category_id": ranked[cls],
                    "segmentation": rle,
                    "score": score,
                }
            )
    ap, ap50 = coco_ap(instances_gt, results)
    # semantic
    n_classes = len(ranked)
    conf = np.zeros((n_classes + 1, n_classes + 1), dtype=np.int64)
    for out in outputs:
        sem_gt = np.array(Image.open(sem_paths[out.image_id]), dtype=np.int64)
        sem_gt[sem_gt == 255] = n_classes
        assert out.semantic is not None
        conf += np.bincount(
            (n_classes + 1) * out.semantic.reshape(-1) + sem_gt.reshape(-1), minlength=conf.size
        ).reshape(conf.shape)
    return {
        "pq": 100 * res["all"]["pq"],
        "sq": 100 * res["all"]["sq"],
        "rq": 100 * res["all"]["rq"],
        "pq_th": 100 * res["things"]["pq"],
        "pq_st": 100 * res["stuff"]["pq"],
        "ap": 100 * ap,
        "ap50": 100 * ap50,
        "miou": 100 * detectron2_miou(conf),
    }


def coco_ap(gt_dict: dict[str, Any], results: list[dict[str, Any]]) -> tuple[float, float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = json.loads(json.dumps(gt_dict))
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results) if results else COCO()
        ev = COCOeval(coco_gt, coco_dt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0]), float(ev.stats[1])


def detectron2_miou(conf: np.ndarray) -> float:
    n = conf.shape[0] - 1
    iou = np.full(n, np.nan, dtype=float)
    tp = conf.diagonal()[:-1].astype(float)
    pos_gt = np.sum(conf[:-1, :-1], axis=0).astype(float)
    pos_pred = np.sum(conf[:-1, :-1], axis=1).astype(float)
    acc_valid = pos_gt > 0
    union = pos_gt + pos_pred - tp
    iou_valid = np.logical_and(acc_valid, union > 0)
    iou[iou_valid] = tp[iou_valid] / union[iou_valid]
    return float(np.sum(iou[iou_valid]) / np.sum(iou_valid))


def _id2rgb(ids: np.ndarray) -> np.ndarray:
    from panopticapi.utils import id2rgb

    return id2rgb(ids.astype(np.int64))


def derived_instances(pan_json: Path, pan_root: Path) -> dict[str, Any]:
    """COCO instance ground truth from the panoptic thing segments (what evalkit uses without
    an instance file)."""
    from pycocotools import mask as mask_utils

    gt = json.loads(pan_json.read_text())
    things = {c["id"] for c in gt["categories"] if c.get("isthing") == 1}
    anns = []
    next_id = 1  # COCO needs ids unique over the file; segment ids repeat across images
    for ann in gt["annotations"]:
        pan = rgb2id_file(pan_root / ann["file_name"])
        for seg in ann["segments_info"]:
            if seg["category_id"] not in things:
                continue
            rle = mask_utils.encode(np.asfortranarray((pan == seg["id"]).astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            anns.append(
                {
                    "id": next_id,
                    "image_id": ann["image_id"],
                    "category_id": seg["category_id"],
                    "iscrowd": seg.get("iscrowd", 0),
                    "segmentation": rle,
                    "area": seg["area"],
                }
            )
            next_id += 1
    images = gt.get("images") or [{"id": a["image_id"]} for a in gt["annotations"]]
    return {
        "images": images,
        "annotations": anns,
        "categories": [c for c in gt["categories"] if c["id"] in things],
    }
