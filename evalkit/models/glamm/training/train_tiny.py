"""Train the bundled tiny GLaMM from scratch on the shapes train split.

    python -m evalkit.models.glamm.training.train_tiny [--out evalkit/assets/glamm_tiny]

Seeded and single-process. The model is the official architecture at tiny width
(``tiny.py``: CLIP, region encoder, LLaMA decoder, SAM, ``text_hidden_fcs``), trained end to
end (the release freezes a pretrained CLIP and SAM encoder; nothing here is pretrained) with
GLaMM's losses: cross-entropy on the answers plus, for every ``[SEG]``, ``2 x`` BCE and
``0.5 x`` Dice (``train.py`` defaults; ``model/GLaMM.py`` ``calculate_dice_loss`` with its
1000 scale) between the mask logits — upscaled to the SAM view and cropped to the image, as
``postprocess_masks`` without the last resize — and the object's mask. Two training-only
linear probes (not saved) speed up the from-scratch encoders: the category of each
``<bbox>`` embedding, and which objects the image tokens show. The questions are in
``tiny_data.py``; the last lines of the log measure the result on shapes val.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils

from evalkit.models.glamm import bundled_tiny_path
from evalkit.models.glamm.adapter import GLaMMAdapter
from evalkit.models.glamm.checkpoint import save_official
from evalkit.models.glamm.modeling import IMAGE_SENTINEL, GLaMMModel
from evalkit.models.glamm.prompting import GLaMMTokenizer
from evalkit.models.glamm.training.tiny import (
    DEFAULT_VOCAB_SIZE,
    build_tokenizer,
    make_tiny_config,
    write_tokenizer,
)
from evalkit.models.glamm.training.tiny_data import (
    PROMPTS,
    Tokens,
    TrainImage,
    Turn,
    conversation,
    corpus_texts,
    load_split,
    object_mask,
    sam_input,
)
from evalkit.records import Request
from evalkit.tasks.shapes.scenes import all_categories, all_object_names, ensure_shapes

IGNORE_INDEX = -100
ADAM_BETAS = (0.9, 0.98)
GRAD_CLIP_NORM = 1.0
FINAL_LR_FRACTION, COSINE_SPAN = 0.05, 0.95
LOSS_EMA_DECAY, LOSS_EMA_WEIGHT = 0.98, 0.02
CE_WEIGHT, BCE_WEIGHT, DICE_WEIGHT = 1.0, 2.0, 0.5  # train.py defaults
DICE_SCALE, DICE_EPS = 1000.0, 1e-6


@dataclass
class Row:
    """One image's conversation as decoder input."""

    image: int
    ids: list[int]  # with one IMAGE_SENTINEL
    labels: list[int]
    boxes: list[tuple[float, float, float, float]]
    categories: list[str]
    masks: list[Any]  # SceneObjects, one per [SEG] in order


def make_row(image_index: int, turns: list[Turn], tokens: Tokens) -> Row:
    ids: list[int] = []
    labels: list[int] = []
    row = Row(image_index, ids, labels, [], [], [])
    for k, turn in enumerate(turns):
        question = tokens.first_turn(turn.prompt) if k == 0 else list(tokens.later_turn(turn.prompt))
        answer = tokens.answer(turn.answer)
        ids += question + list(answer)
        labels += [IGNORE_INDEX] * len(question) + list(answer)
        if turn.box is not None:
            row.boxes.append(turn.box)
            row.categories.append(turn.category or "")
        row.masks += turn.masks
    return row


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``calculate_dice_loss`` for one mask (its ``scale_factor`` 1000 and ``epsilon``)."""
    p = logits.sigmoid().flatten()
    g = target.flatten()
    inter = 2 * (p / DICE_SCALE * g).sum()
    union = (p / DICE_SCALE).sum() + (g / DICE_SCALE).sum()
    return 1 - (inter + DICE_EPS) / (union + DICE_EPS)


class Probes(torch.nn.Module):
    """Training-only linear probes: a ``<bbox>`` embedding's category, and which objects
    the image tokens show (max over positions)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.categories = all_categories()
        self.names = all_object_names()
        self.region = torch.nn.Linear(hidden, len(self.categories))
        self.presence = torch.nn.Linear(hidden, len(self.names))


def losses(
    model: GLaMMModel,
    tokenizer: GLaMMTokenizer,
    data: list[TrainImage],
    rows: list[Row],
    probes: Probes,
) -> dict[str, torch.Tensor]:
    config = model.config
    images = [data[r.image] for r in rows]
    features = model.encode_images(torch.stack([im.clip.float() for im in images]))
    with_boxes = [i for i, r in enumerate(rows) if r.boxes]
    bbox_tokens: dict[int, torch.Tensor] = {}
    if with_boxes:
        maps = model.region_encoder.fuse([lvl[with_boxes] for lvl in features.region_levels])
        boxes = [torch.tensor(rows[i].boxes, dtype=torch.float32) for i in with_boxes]
        for i, tokens in zip(with_boxes, model.region_tokens(maps, boxes), strict=True):
            bbox_tokens[i] = tokens
    embeds, labels, expanded = [], [], []
    n_image = config.vision.clip.image_tokens
    for i, row in enumerate(rows):
        embeds.append(
            model.embed_inputs(
                torch.tensor(row.ids), features.tokens[i], bbox_tokens.get(i), tokenizer.bbox_id
            )
        )
        at = row.ids.index(IMAGE_SENTINEL)
        labels.append(row.labels[:at] + [IGNORE_INDEX] * n_image + row.labels[at + 1 :])
        expanded.append(row.ids[:at] + [IMAGE_SENTINEL] * n_image + row.ids[at + 1 :])
    length = max(len(e) for e in embeds)
    batch = torch.zeros(len(rows), length, config.hidden_size)
    attention = torch.zeros(len(rows), length, dtype=torch.long)
    label_t = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    for i, e in enumerate(embeds):
        batch[i, : len(e)] = e
        attention[i, : len(e)] = 1
        label_t[i, : len(e)] = torch.tensor(labels[i])
    hidden = model.llm.model(inputs_embeds=batch, attention_mask=attention).last_hidden_state
    logits = model.llm.lm_head(hidden[:, :-1])
    ce = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), label_t[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX
    )

    # Masks: the state before each [SEG] -> text_hidden_fcs -> SAM's decoder, per image.
    side = config.vision.sam.image_size
    sam_embedding = model.encode_sam(torch.stack([sam_input(im, side) for im in images]))
    encoder = model.grounding_encoder
    bce_total = dice_total = torch.zeros(())
    n_masks = 0
    for i, row in enumerate(rows):
        seg_at = [p - 1 for p, t in enumerate(expanded[i]) if t == tokenizer.seg_id]
        if not seg_at:
            continue
        prompt = model.text_hidden_fcs[0](hidden[i, seg_at])
        sparse, dense = encoder.prompt_encoder.text_prompts(prompt[:, None, :])
        low = encoder.mask_decoder(sam_embedding[i : i + 1], encoder.prompt_encoder.dense_pe(), sparse, dense)
        h, w = images[i].sam_pixels.shape[:2]
        up = F.interpolate(low, (side, side), mode="bilinear", align_corners=False)[:, 0, :h, :w]
        for pred, obj in zip(up, row.masks, strict=True):
            target = object_mask(images[i], obj)
            bce_total = bce_total + F.binary_cross_entropy_with_logits(pred, target)
            dice_total = dice_total + dice_loss(pred, target)
            n_masks += 1
    mask_count = max(n_masks, 1)

    # Probes.
    present = torch.zeros(len(rows), len(probes.names))
    for i, im in enumerate(images):
        for obj in im.objects:
            present[i, probes.names.index(obj.name)] = 1.0
    probe = F.binary_cross_entropy_with_logits(probes.presence(features.tokens).amax(dim=1), present)
    if bbox_tokens:
        stacked = torch.cat([bbox_tokens[i] for i in with_boxes])
        labels_c = torch.tensor([probes.categories.index(c) for i in with_boxes for c in rows[i].categories])
        probe = probe + F.cross_entropy(probes.region(stacked), labels_c)
    return {
        "ce": ce,
        "bce": bce_total / mask_count,
        "dice": dice_total / mask_count,
        "probe": probe,
    }


# ---------------------------------------------------------------------- measured on val
def refseg_scores(adapter: GLaMMAdapter, root: Path, data: list[TrainImage], limit: int) -> dict[str, float]:
    """cIoU / gIoU (x100) of the refseg questions on val images, the released arithmetic
    (``eval/referring_seg/infer_and_evaluate.py``): cIoU = sum I / (sum U + 1e-10), gIoU =
    mean I / (U + 1e-5) with +1 when both masks are empty; an answer's masks merged."""
    images = sorted((root / "val" / "images").iterdir())[:limit]
    requests, targets = [], []
    for path, image in zip(images, data, strict=False):
        for obj in image.referable:
            rid = f"{path.stem}/{obj.name}"
            generation = {"max_new_tokens": 8, "masks": True}
            requests.append(
                Request(rid, rid, str(path), PROMPTS["refseg"].format(name=obj.name), [], generation)
            )
            targets.append(np.isin(image.id_map, obj.ids))
    inter = union = 0.0
    giou = []
    for pred, target in zip(adapter.generate(requests), targets, strict=True):
        merged = np.zeros(target.shape, dtype=bool)
        for m in pred.masks or []:
            merged |= mask_utils.decode({"size": m.rle["size"], "counts": m.rle["counts"].encode()}).astype(
                bool
            )
        i, u = float((merged & target).sum()), float((merged | target).sum())
        inter, union = inter + i, union + u
        giou.append(i / (u + 1e-5) + (1.0 if u == 0 else 0.0))
    return {
        "refseg_ciou": 100 * inter / (union + 1e-10),
        "refseg_giou": 100 * float(np.mean(giou)),
        "refseg_n": len(giou),
    }


def train(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    raw_tokenizer = build_tokenizer(corpus_texts(), vocab_size=args.vocab)
    tokenizer = GLaMMTokenizer.wrap(raw_tokenizer, clean_up_spaces=False)
    config = make_tiny_config(vocab_size=max(tokenizer.ids.values()) + 1)
    model = GLaMMModel(config)
    model.train()
    root = ensure_shapes().root
    vision = config.vision
    data = load_split(root, "train", vision.clip.image_size, vision.sam.image_size)
    t_data = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    print(f"data: {len(data)} images ({t_data:.0f}s); params {n_params:,}", flush=True)
    tokens = Tokens(tokenizer)
    probes = Probes(config.hidden_size)
    named = [*model.named_parameters(), *(("probe." + n, p) for n, p in probes.named_parameters())]
    decay = [p for n, p in named if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in named if not (p.ndim >= 2 and "embed" not in n)]
    optim = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=ADAM_BETAS,
    )

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        progress = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (FINAL_LR_FRACTION + COSINE_SPAN * 0.5 * (1 + math.cos(math.pi * progress)))

    order: list[int] = []
    history = []
    running: dict[str, float] = {}
    for step in range(args.steps):
        if len(order) < args.batch:
            epoch = list(range(len(data)))
            rng.shuffle(epoch)
            order += epoch
        chosen, order = order[: args.batch], order[args.batch :]
        rows = [
            make_row(i, conversation(data[i], rng, args.max_turns, args.gcg_probability), tokens)
            for i in chosen
        ]
        for group in optim.param_groups:
            group["lr"] = lr_at(step)
        parts = losses(model, tokenizer, data, rows, probes)
        total = (
            CE_WEIGHT * parts["ce"]
            + BCE_WEIGHT * parts["bce"]
            + DICE_WEIGHT * parts["dice"]
            + args.probe_weight * parts["probe"]
        )
        optim.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in named], GRAD_CLIP_NORM)
        optim.step()
        for key, value in parts.items():
            v = float(value.item())
            running[key] = v if step == 0 else LOSS_EMA_DECAY * running[key] + LOSS_EMA_WEIGHT * v
        if (step + 1) % args.log_every == 0 or step == args.steps - 1:
            elapsed = time.perf_counter() - t0
            history.append(
                {
                    "step": step + 1,
                    **{k: round(v, 4) for k, v in running.items()},
                    "elapsed_s": round(elapsed, 1),
                }
            )
            shown = " ".join(f"{k} {v:.4f}" for k, v in running.items())
            print(f"step {step + 1}/{args.steps} {shown} lr {lr_at(step):.2e} {elapsed:.0f}s", flush=True)
    model.eval()
    out = Path(args.out)
    write_tokenizer(raw_tokenizer, out)
    save_official(model, out)
    wall = time.perf_counter() - t0
    log: dict[str, Any] = {
        "seed": args.seed,
        "steps": args.steps,
        "batch_images": args.batch,
        "lr": args.lr,
        "threads": args.threads,
        "max_turns": args.max_turns,
        "gcg_probability": args.gcg_probability,
        "probe_weight": args.probe_weight,
        "vocab": config.vocab_size,
        "params": n_params,
        "data_s": round(t_data, 1),
        "wall_s": round(wall, 1),
        "history": history,
        "torch": torch.__version__,
    }
    if args.eval_images:
        adapter = GLaMMAdapter.from_parts("glamm-tiny", model, tokenizer)
        val = load_split(root, "val", vision.clip.image_size, vision.sam.image_size)
        log["val"] = {k: round(v, 2) for k, v in refseg_scores(adapter, root, val, args.eval_images).items()}
        print(f"val: {log['val']}", flush=True)
    (out / "train_log.json").write_text(json.dumps(log, indent=1) + "\n")
    print(f"saved to {out} in {wall:.0f}s", flush=True)
    return log


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(bundled_tiny_path()), help="output checkpoint directory")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=8, help="images per step")
    p.add_argument("--max-turns", type=int, default=5)
    p.add_argument("--gcg-probability", type=float, default=0.5, help="how often an image gets a GCG turn")
    p.add_argument("--probe-weight", type=float, default=1.0, help="0 disables the probes")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--vocab", type=int, default=DEFAULT_VOCAB_SIZE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--eval-images", type=int, default=200, help="shapes val images to measure (0: none)")
    train(p.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
