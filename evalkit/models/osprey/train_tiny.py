"""Train the bundled tiny Osprey from scratch on the shapes train split.

    python -m evalkit.models.osprey.train_tiny [--out evalkit/assets/osprey_tiny]

Seeded and single-process: on 2 CPU cores it reproduces the bundled weights (up to
floating-point differences between machines) in well under 20 minutes. The model is the
official architecture at tiny width (see ``tiny.py``); it learns the four shapes questions,
asked exactly as the shapes task cards ask them:

* ``shapes_cls``   — ``What is the category of <region>? ...`` -> ``red circle`` / ``house roof``
* ``shapes_cap``   — ``Please give me a short description of <region>.`` -> ``a red circle``
* ``shapes_ovseg`` — ``What is in <region>? ...`` -> the category phrase, or ``background``
* ``shapes_pope``  — ``Is there a {name} in the image?`` -> ``Yes`` / ``No``

Each training sequence is one image with a few question/answer turns in the ``osprey_v1``
multi-turn format (as Osprey itself is trained); the first turn is tokenised exactly as at
inference, and the loss is on the answers only.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from evalkit.data.shapes import (
    all_object_names,
    category_phrase,
    ensure_shapes,
    region_captions,
)
from evalkit.models.osprey.checkpoint import save_official
from evalkit.models.osprey.mask_extractor import PreparedMasks, prepare_masks
from evalkit.models.osprey.modeling import OspreyModel
from evalkit.models.osprey.preprocess import load_rgb, preprocess_image
from evalkit.models.osprey.prompting import (
    IMAGE_SENTINEL,
    OspreyTokenizer,
    osprey_question,
    render_prompt,
)
from evalkit.models.osprey.tiny import base_corpus, build_tokenizer, make_tiny_config
from evalkit.regions import Region

OVERVIEW = "<image>\nThis provides an overview of the picture.\n"
PROMPTS = {
    "cls": OVERVIEW + "What is the category of <region>? Using only one word or phrase.",
    "cap": OVERVIEW + "Please give me a short description of <region>.",
    "ovseg": "<image>\n.\nThis provides an overview of the picture.\n"
    "What is in <region>? Using a short phrase.",
    "pope": "<image>\nIs there a {name} in the image?",
}
REGION_QUESTION_WEIGHTS = (("cls", 0.5), ("cap", 0.2), ("ovseg", 0.3))
IGNORE = -100


def answer_for(kind: str, category: str) -> str:
    if kind == "cap":
        return region_captions(category)[0]
    if category == "background":
        return "background"
    return category_phrase(category)


# ---------------------------------------------------------------------- data
@dataclass
class ShapesTrainData:
    pixels: torch.Tensor  # [N, 3, S, S] float16 (preprocessed exactly as at inference)
    masks: PreparedMasks  # every region of every image, background included
    region_image: list[int]
    region_category: list[str]  # shapes category, or "background"
    image_regions: list[list[int]]
    present: list[list[str]]  # names of the visible objects (POPE positives)


def load_split(root: Path, split: str, size: int, model: OspreyModel) -> ShapesTrainData:
    scenes = json.loads((root / split / "scenes.json").read_text())
    cls_by_file = {r["file_name"]: r for r in json.loads((root / split / "cls.json").read_text())}
    pixels = torch.empty(len(scenes), 3, size, size, dtype=torch.float16)
    prepared: list[PreparedMasks] = []
    region_image: list[int] = []
    region_category: list[str] = []
    image_regions: list[list[int]] = []
    present: list[list[str]] = []
    for n, scene in enumerate(scenes):
        pixels[n] = preprocess_image(load_rgb(root / split / "images" / scene["file_name"]), size)
        ids = np.asarray(Image.open(root / split / "ids" / scene["file_name"]))
        masks: list[np.ndarray] = []
        cats: list[str] = []
        record = cls_by_file.get(scene["file_name"])
        if record is not None:
            for ann, cat in zip(record["annotations"], record["categories"], strict=True):
                rle = ann["segmentation"]
                masks.append(Region.from_rle(rle, scene["height"], scene["width"]).to_mask())
                cats.append(cat)
        if (ids == 0).sum() >= 40:
            masks.append((ids == 0).astype(np.uint8))
            cats.append("background")
        first = len(region_image)
        if masks:
            stacked = torch.from_numpy(np.stack(masks).astype(np.uint8))
            prepared.append(
                prepare_masks(stacked, model.level_sizes(), model.config.vision.mask_shape)
            )
        region_image.extend([n] * len(masks))
        region_category.extend(cats)
        image_regions.append(list(range(first, len(region_image))))
        present.append(visible_names(scene))
    return ShapesTrainData(
        pixels, PreparedMasks.cat(prepared), region_image, region_category, image_regions, present
    )


def visible_names(scene: dict[str, Any], min_visible: int = 40) -> list[str]:
    visible = {int(k): v for k, v in scene.get("visible", {}).items()}
    names = []
    for obj in scene["objects"]:
        if obj["shape"] == "house":
            if any(visible.get(p["id"], 0) >= min_visible for p in obj["parts"]):
                names.append("house")
        elif visible.get(obj["id"], 0) >= min_visible:
            names.append(f"{obj['colour']} {obj['shape']}")
    return sorted(set(names))


def corpus_texts() -> list[str]:
    """Everything the tokenizer must cover: template, questions, answers."""
    from evalkit.data.shapes import COLOURS, HOUSE_PARTS, SHAPES

    categories = [f"{c}_{s}" for c in COLOURS for s in SHAPES] + [f"house:{p}" for p in HOUSE_PARTS]
    texts = base_corpus() + [render_prompt(p) for k, p in PROMPTS.items() if k != "pope"]
    texts += [render_prompt(PROMPTS["pope"].format(name=name)) for name in all_object_names()]
    for cat in categories:
        texts += [category_phrase(cat), *region_captions(cat)]
    texts += ["background", "Yes", "No"]
    return texts


# ---------------------------------------------------------------------- sequences
class Tokens:
    def __init__(self, tokenizer: OspreyTokenizer):
        self.tok = tokenizer

    @cache  # noqa: B019 - a handful of distinct strings, one instance
    def first_turn(self, prompt: str) -> tuple[int, ...]:
        return tuple(self.tok.encode_prompt(render_prompt(prompt)))

    @cache  # noqa: B019
    def later_turn(self, prompt: str) -> tuple[int, ...]:
        question = osprey_question(prompt).replace("<image>\n", "")
        text = f"USER: {question} ASSISTANT:"
        return tuple(self.tok.tokenizer.encode(text, add_special_tokens=False).ids)

    @cache  # noqa: B019
    def answer(self, text: str) -> tuple[int, ...]:
        return (*self.tok.tokenizer.encode(text, add_special_tokens=False).ids, self.tok.eos_id)


def conversation(
    data: ShapesTrainData, image: int, rng: random.Random, max_turns: int
) -> list[tuple[str, str, int | None]]:
    """(prompt, answer, region index or None) turns about one image, shuffled."""
    turns: list[tuple[str, str, int | None]] = []
    kinds = [k for k, _ in REGION_QUESTION_WEIGHTS]
    weights = [w for _, w in REGION_QUESTION_WEIGHTS]
    for region in data.image_regions[image]:
        cat = data.region_category[region]
        if cat == "background":
            if rng.random() < 0.5:
                turns.append((PROMPTS["ovseg"], "background", region))
            continue
        kind = rng.choices(kinds, weights)[0]
        turns.append((PROMPTS[kind], answer_for(kind, cat), region))
    present = data.present[image]
    absent = [n for n in all_object_names() if n not in present]
    for _ in range(2):
        if present and rng.random() < 0.5:
            turns.append((PROMPTS["pope"].format(name=rng.choice(present)), "Yes", None))
        else:
            turns.append(
                (PROMPTS["pope"].format(name=hard_negative(present, absent, rng)), "No", None)
            )
    rng.shuffle(turns)
    return turns[:max_turns]


def hard_negative(present: list[str], absent: list[str], rng: random.Random) -> str:
    """Half the time an absent name that shares a colour or a shape with a present one."""
    if present and rng.random() < 0.5:
        words = {w for name in present for w in name.split()}
        close = [n for n in absent if words & set(n.split())]
        if close:
            return rng.choice(close)
    return rng.choice(absent)


@dataclass
class Batch:
    ids: torch.Tensor  # [B, T] text ids (0 where not text)
    labels: torch.Tensor  # [B, T]
    image_pos: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # batch row, position, token j
    mask_pos: tuple[torch.Tensor, torch.Tensor]  # batch row, position (one per region slot)
    pos_pos: tuple[torch.Tensor, torch.Tensor]
    regions: list[int]  # global region index per region slot
    region_rows: list[int]  # batch row per region slot


def make_batch(
    data: ShapesTrainData,
    images: list[int],
    tokens: Tokens,
    n_image_tokens: int,
    rng: random.Random,
    max_turns: int,
) -> Batch:
    rows: list[list[int]] = []
    labels: list[list[int]] = []
    slot_regions: list[list[int]] = []
    for image in images:
        seq: list[int] = []
        lab: list[int] = []
        regions: list[int] = []
        for t, (prompt, answer, region) in enumerate(conversation(data, image, rng, max_turns)):
            q = tokens.first_turn(prompt) if t == 0 else tokens.later_turn(prompt)
            a = tokens.answer(answer)
            seq += list(q) + list(a)
            lab += [IGNORE] * len(q) + list(a)
            if region is not None:
                regions.append(region)
        rows.append(seq)
        labels.append(lab)
        slot_regions.append(regions)
    tok = tokens.tok
    lengths = [len(s) + sum(n_image_tokens - 1 for x in s if x == IMAGE_SENTINEL) for s in rows]
    t_max = max(lengths)
    ids = torch.zeros(len(rows), t_max, dtype=torch.long)
    lab_t = torch.full((len(rows), t_max), IGNORE, dtype=torch.long)
    img_b, img_t, img_j, m_b, m_t, p_b, p_t = [], [], [], [], [], [], []
    all_regions: list[int] = []
    region_rows: list[int] = []
    for b, (seq, lab) in enumerate(zip(rows, labels, strict=True)):
        pos = 0
        for x, y in zip(seq, lab, strict=True):
            if x == IMAGE_SENTINEL:
                img_b += [b] * n_image_tokens
                img_t += list(range(pos, pos + n_image_tokens))
                img_j += list(range(n_image_tokens))
                pos += n_image_tokens
                continue
            if x == tok.mask_id:
                m_b.append(b)
                m_t.append(pos)
            elif x == tok.pos_id:
                p_b.append(b)
                p_t.append(pos)
            else:
                ids[b, pos] = x
            lab_t[b, pos] = y
            pos += 1
        all_regions += slot_regions[b]
        region_rows += [b] * len(slot_regions[b])
    long = torch.long
    return Batch(
        ids,
        lab_t,
        (
            torch.tensor(img_b, dtype=long),
            torch.tensor(img_t, dtype=long),
            torch.tensor(img_j, dtype=long),
        ),
        (torch.tensor(m_b, dtype=long), torch.tensor(m_t, dtype=long)),
        (torch.tensor(p_b, dtype=long), torch.tensor(p_t, dtype=long)),
        all_regions,
        region_rows,
    )


# ---------------------------------------------------------------------- training
def flip_masks(
    masks: PreparedMasks, flip: torch.Tensor, level_sizes: list[tuple[int, int]], mask_shape: int
) -> PreparedMasks:
    """Horizontal flip of the regions whose ``flip`` flag is set (matches flipped pixels)."""

    def flipped(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        grid = x.view(-1, h, w)
        return torch.where(flip[:, None, None], grid.flip(-1), grid).reshape(x.shape)

    levels = [
        flipped(wt, h, w) for wt, (h, w) in zip(masks.level_weights, level_sizes, strict=True)
    ]
    return PreparedMasks(levels, flipped(masks.position_input, mask_shape, mask_shape))


def loss_on(
    model: OspreyModel, data: ShapesTrainData, images: list[int], batch: Batch, flip: torch.Tensor
) -> torch.Tensor:
    pixels = data.pixels[images].float()
    pixels = torch.where(flip[:, None, None, None], pixels.flip(-1), pixels)
    image_tokens, feats = model.encode_images(pixels)
    region_index = torch.tensor(batch.regions, dtype=torch.long)
    region_rows = torch.tensor(batch.region_rows, dtype=torch.long)
    prepared = flip_masks(
        data.masks.select(region_index),
        flip[region_rows],
        model.level_sizes(),
        model.config.vision.mask_shape,
    )
    mask_tokens, pos_tokens = model.region_tokens(feats, region_rows, prepared)
    embeds = model.embed_text(batch.ids)
    img_b, img_t, img_j = batch.image_pos
    embeds = embeds.index_put((img_b, img_t), image_tokens[img_b, img_j])
    embeds = embeds.index_put(batch.mask_pos, mask_tokens)
    embeds = embeds.index_put(batch.pos_pos, pos_tokens)
    hidden = model.llm.model(inputs_embeds=embeds).last_hidden_state  # right-padded, causal
    logits = model.llm.lm_head(hidden[:, :-1])
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), batch.labels[:, 1:].reshape(-1), ignore_index=IGNORE
    )


def train(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    tokenizer_raw = build_tokenizer(corpus_texts(), vocab_size=args.vocab)
    tokenizer = OspreyTokenizer.wrap(tokenizer_raw)
    config = make_tiny_config(vocab_size=tokenizer.mask_id)
    assert tokenizer.pos_id == tokenizer.mask_id + 1
    model = OspreyModel(config)
    with torch.no_grad():
        # timm's layer-scale init (1e-6) makes a from-scratch trunk start as an identity and
        # learn slowly; a short CPU run needs the blocks active from the first step.
        for name, param in model.trunk.named_parameters():
            if name.endswith(".gamma"):
                param.fill_(args.layer_scale_init)
    model.train()
    root = ensure_shapes().root
    data = load_split(root, "train", config.vision.image_size, model)
    t_data = time.perf_counter() - t0
    print(
        f"data: {len(data.image_regions)} images, {len(data.region_image)} regions "
        f"({t_data:.0f}s); params {sum(p.numel() for p in model.parameters()):,}",
        flush=True,
    )
    tokens = Tokens(tokenizer)
    n_image_tokens = config.vision.image_tokens
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    optim = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=args.lr,
        betas=(0.9, 0.98),
    )

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        progress = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))

    order: list[int] = []
    history = []
    running = 0.0
    for step in range(args.steps):
        if len(order) < args.batch:
            epoch = list(range(len(data.image_regions)))
            rng.shuffle(epoch)
            order += epoch
        images, order = order[: args.batch], order[args.batch :]
        batch = make_batch(data, images, tokens, n_image_tokens, rng, args.max_turns)
        flip = torch.tensor([rng.random() < 0.5 for _ in images])
        for group in optim.param_groups:
            group["lr"] = lr_at(step)
        loss = loss_on(model, data, images, batch, flip)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        running = loss.item() if step == 0 else 0.98 * running + 0.02 * loss.item()
        if (step + 1) % args.log_every == 0 or step == args.steps - 1:
            elapsed = time.perf_counter() - t0
            history.append(
                {"step": step + 1, "loss": round(running, 4), "elapsed_s": round(elapsed, 1)}
            )
            print(
                f"step {step + 1}/{args.steps} loss {running:.4f} lr {lr_at(step):.2e} "
                f"{elapsed:.0f}s",
                flush=True,
            )
    model.eval()
    out = Path(args.out)
    tok_file = out / "tokenizer.json"
    out.mkdir(parents=True, exist_ok=True)
    tokenizer_raw.save(str(tok_file))
    save_official(model, out)
    wall = time.perf_counter() - t0
    log = {
        "seed": args.seed,
        "steps": args.steps,
        "batch_images": args.batch,
        "lr": args.lr,
        "threads": args.threads,
        "max_turns": args.max_turns,
        "layer_scale_init": args.layer_scale_init,
        "vocab": tokenizer.mask_id,
        "data_s": round(t_data, 1),
        "wall_s": round(wall, 1),
        "history": history,
        "torch": torch.__version__,
    }
    (out / "train_log.json").write_text(json.dumps(log, indent=1) + "\n")
    print(f"saved to {out} in {wall:.0f}s", flush=True)
    return log


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parents[2] / "assets" / "osprey_tiny"
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default=str(here), help="output checkpoint directory")
    p.add_argument("--steps", type=int, default=2500)
    p.add_argument("--batch", type=int, default=16, help="images per step")
    p.add_argument("--max-turns", type=int, default=5)
    p.add_argument("--layer-scale-init", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--vocab", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log-every", type=int, default=50)
    train(p.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
