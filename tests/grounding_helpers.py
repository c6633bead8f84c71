"""Small files in the mask-output benchmarks' real formats (GranD-f / MGSC ground truth, refer
toolkit refs + instances, gRefCOCO grefs), a tiny random BERT folder, and the released
evaluators' arithmetic restated on dense numpy masks (GLaMM eval/gcg/evaluate.py, GLaMM /
MGLMM intersectionAndUnionGPU, ReLA refer_evaluation.py) — independent of evalkit's code."""

from __future__ import annotations

import functools
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

WORDS = [
    "a",
    "an",
    "the",
    "dog",
    "cat",
    "red",
    "blue",
    "green",
    "circle",
    "square",
    "star",
    "on",
    "grass",
    "house",
    "of",
    "is",
    "and",
    ",",
    ".",
    "sky",
    "tree",
]


def rle(mask: np.ndarray) -> dict[str, Any]:
    out = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in out["size"]], "counts": out["counts"].decode()}


def decode(r: dict[str, Any]) -> np.ndarray:
    counts = r["counts"]
    mask: np.ndarray = mask_utils.decode(
        {"size": r["size"], "counts": counts.encode() if isinstance(counts, str) else counts}
    )
    return mask


def box(h: int, w: int, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def write_tiny_bert(folder: Path, seed: int = 0) -> Path:
    """A randomly initialised 1-layer BERT with a local word-level vocabulary, saved as
    ``save_pretrained`` writes a hub model folder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    BertTokenizer(vocab=vocab, do_lower_case=True).save_pretrained(str(folder))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    BertModel(config).eval().save_pretrained(str(folder))
    return folder


# ---------------------------------------------------------------------- GranD-f / MGSC files
def write_grounded_gt(
    folder: Path, stem: str, images: list[dict[str, Any]], first_mask_id: int = 1
) -> tuple[Path, Path]:
    """``{stem}_caption_gt.json`` + ``{stem}_mask_gt.json`` as GranD-f / MGLMM's converter write
    them. ``images``: ``{"id", "h", "w", "caption", "labels", "masks": [np arrays], ["type"]}``."""
    folder.mkdir(parents=True, exist_ok=True)
    cap_images, cap_anns, mask_anns = [], [], []
    mask_id = first_mask_id
    for k, im in enumerate(images):
        record = {"id": im["id"], "file_name": f"{im['id']}.png", "height": im["h"], "width": im["w"]}
        if "type" in im:
            record["type"] = im["type"]
        cap_images.append(record)
        cap_anns.append({"image_id": im["id"], "id": k, "caption": im["caption"], "labels": im["labels"]})
        for m in im["masks"]:
            r = rle(m)
            mask_anns.append(
                {
                    "id": mask_id,
                    "image_id": im["id"],
                    "category_id": 1,
                    "segmentation": r,
                    "area": int(m.sum()),
                    "iscrowd": 0,
                }
            )
            mask_id += 1
    captions = folder / f"{stem}_caption_gt.json"
    masks = folder / f"{stem}_mask_gt.json"
    captions.write_text(json.dumps({"images": cap_images, "annotations": cap_anns}))
    masks.write_text(
        json.dumps(
            {"images": cap_images, "annotations": mask_anns, "categories": [{"id": 1, "name": "object"}]}
        )
    )
    return captions, masks


# ---------------------------------------------------------------------- refer toolkit files
def write_refer(
    folder: Path,
    refs: list[dict[str, Any]],
    images: list[dict[str, Any]],
    anns: list[dict[str, Any]],
    name: str,
) -> tuple[Path, Path]:
    """``name`` (``refs(umd).p`` pickled, ``grefs(unc).json`` as JSON) + ``instances.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    refs_path = folder / name
    if name.endswith(".json"):
        refs_path.write_text(json.dumps(refs))
    else:
        refs_path.write_bytes(pickle.dumps(refs, protocol=2))
    instances = folder / "instances.json"
    instances.write_text(
        json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]})
    )
    return refs_path, instances


# ---------------------------------------------------------------------- released arithmetic
def ref_compute_iou(m1: np.ndarray, m2: np.ndarray) -> float:
    """GLaMM eval/utils.py compute_iou (NaN for two empty masks)."""
    with np.errstate(invalid="ignore"):
        return float(np.sum(np.logical_and(m1, m2)) / np.sum(np.logical_or(m1, m2)))


def ref_compute_miou(pred_masks: list[np.ndarray], gt_masks: list[np.ndarray]) -> float:
    """GLaMM eval/gcg/evaluate.py compute_miou, on decoded masks."""
    iou_matrix = np.zeros((len(pred_masks), len(gt_masks)))
    for i, p in enumerate(pred_masks):
        for j, g in enumerate(gt_masks):
            iou_matrix[i, j] = ref_compute_iou(p, g)
    paired = []
    while iou_matrix.size > 0 and np.max(iou_matrix) > 0:
        idx = np.unravel_index(np.argmax(iou_matrix, axis=None), iou_matrix.shape)
        paired.append(iou_matrix[idx])
        iou_matrix = np.delete(iou_matrix, idx[0], axis=0)
        iou_matrix = np.delete(iou_matrix, idx[1], axis=1)
    return float(np.mean(paired)) if paired else 0.0


def ref_find_best_matches(
    gt_masks: list[np.ndarray], pred_masks: list[np.ndarray], text_sims: np.ndarray
) -> list[tuple[int, int]]:
    """GLaMM find_best_matches (raises IndexError where the reference does)."""
    ious = np.zeros((len(gt_masks), len(pred_masks)))
    for i, g in enumerate(gt_masks):
        for j, p in enumerate(pred_masks):
            ious[i, j] = ref_compute_iou(g, p)
    text_sims = np.array(text_sims, dtype=float)
    best = []
    while ious.size > 0:
        idx = np.unravel_index(np.argmax(ious), ious.shape)
        if ious[idx] < 0.5 or text_sims[idx] < 0.5:
            break
        best.append((int(idx[0]), int(idx[1])))
        ious[idx[0], :] = 0
        ious[:, idx[1]] = 0
        text_sims[idx[0], :] = 0
        text_sims[:, idx[1]] = 0
    return best


@functools.lru_cache(maxsize=4)
def _ref_bert(folder: str) -> tuple[Any, Any]:
    """GLaMM's module-level ``AutoTokenizer`` / ``AutoModel`` (loaded once, as there)."""
    from transformers import AutoModel, AutoTokenizer

    return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder)


def ref_bert_similarity(folder: Path, a: str, b: str) -> float:
    """GLaMM's text_similarity_bert with the model loaded from ``folder``."""
    import torch
    from sklearn.metrics.pairwise import cosine_similarity

    tokenizer, model = _ref_bert(str(folder))

    def emb(text: str) -> np.ndarray:
        inputs = tokenizer(text, return_tensors="pt", max_length=512, truncation=True)
        outputs = model(**inputs)
        out: np.ndarray = torch.mean(outputs.last_hidden_state[0], dim=0).detach().numpy()
        return out

    return float(cosine_similarity([emb(a)], [emb(b)])[0, 0])


def ref_intersection_union(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Class 1 of LISA / GLaMM intersectionAndUnionGPU (torch.histc, 2 bins over [0, 1],
    ignore_index 255) on CPU tensors."""
    import torch

    output = torch.from_numpy(pred.astype(np.float32)).reshape(-1).clone()
    tgt = torch.from_numpy(target.astype(np.float32)).reshape(-1)
    output[tgt == 255] = 255
    intersection = output[output == tgt]
    area_i = torch.histc(intersection, bins=2, min=0, max=1)
    area_o = torch.histc(output, bins=2, min=0, max=1)
    area_t = torch.histc(tgt, bins=2, min=0, max=1)
    union = area_o + area_t - area_i
    return float(area_i[1]), float(union[1])


def ref_glamm_ciou_giou(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """evaluate_model_performance's trackers over (prediction, target) masks, one per sample."""
    inter_sum = union_sum = giou_sum = 0.0
    for pred, tgt in pairs:
        i, u = ref_intersection_union(pred, tgt)
        inter_sum += i
        union_sum += u
        acc = i / (u + 1e-5) + (1.0 if u == 0 else 0.0)
        giou_sum += acc  # accuracy_iou / 1 mask, update(n=1): sum += val * 1
    return inter_sum / (union_sum + 1e-10), giou_sum / (len(pairs) + 1e-5)


def ref_rela(samples: list[tuple[np.ndarray, np.ndarray, bool, bool]]) -> dict[str, float]:
    """ReLA ReferEvaluator.evaluate (884ef17) for one source: (pred, gt, pred_nt, gt_nt)."""
    acc_i = acc_u = acc_iou = 0.0
    nt = {"TP": 0, "TN": 0, "FP": 0, "FN": 0}
    empty = total = 0
    for pred, gt, pred_nt, gt_nt in samples:
        inter = int(np.sum(np.logical_and(pred, gt)))
        union = int(np.sum(np.logical_or(pred, gt)))
        if gt_nt:
            empty += 1
            if pred_nt:
                nt["TP"] += 1
                acc_iou += 1
            else:
                nt["FN"] += 1
                acc_u += union
        else:
            if pred_nt:
                nt["FP"] += 1
                inter = 0
            else:
                nt["TN"] += 1
            this = 0.0 if union == 0 else inter / union
            acc_iou += this
            acc_i += inter
            acc_u += union
        total += 1
    out = {"gIoU": 100.0 * acc_iou / total, "cIoU": acc_i * 100.0 / acc_u}
    if empty > 0:
        out["T_acc"] = nt["TN"] / (nt["TN"] + nt["FP"])
        out["N_acc"] = nt["TP"] / (nt["TP"] + nt["FN"])
    else:
        out["T_acc"] = out["N_acc"] = 0
    return out


def ref_gcg_ap50(mask_gt: Path, dets: list[dict[str, Any]]) -> float:
    """GLaMM's AP block on a mask ground-truth file and its {image_id, category_id: 1,
    segmentation, score: 1.0} predictions, with pycocotools."""
    import contextlib
    import io
    import tempfile

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        pred = Path(tmp) / "mask_pred_tmp_save.json"
        pred.write_text(json.dumps(dets))
        coco_gt = COCO(str(mask_gt))
        coco_dt = coco_gt.loadRes(str(pred))
        ev = COCOeval(coco_gt, coco_dt, "segm")
        ev.params.catIds = [1]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[1])
