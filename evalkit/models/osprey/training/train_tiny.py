"""Train the bundled tiny Osprey from scratch on the shapes train split.

    python -m evalkit.models.osprey.training.train_tiny [--out evalkit/assets/osprey_tiny]

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
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from evalkit.models.osprey import bundled_tiny_path
from evalkit.models.osprey.checkpoint import save_official
from evalkit.models.osprey.mask_extractor import PreparedMasks
from evalkit.models.osprey.modeling import OspreyModel
from evalkit.models.osprey.prompting import (
    IMAGE_SENTINEL,
    OspreyTokenizer,
)
from evalkit.models.osprey.training.tiny import DEFAULT_VOCAB_SIZE, build_tokenizer, make_tiny_config
from evalkit.models.osprey.training.tiny_data import (
    ShapesTrainData,
    Tokens,
    conversation,
    corpus_texts,
    load_split,
    presence_targets,
)
from evalkit.tasks.shapes.scenes import ensure_shapes

IGNORE_INDEX = -100  # label of positions without loss (prompts, padding), as the official code
ADAM_BETAS = (0.9, 0.98)
GRAD_CLIP_NORM = 1.0
FLIP_PROBABILITY = 0.5  # horizontal flip of an image and its masks
FINAL_LR_FRACTION, COSINE_SPAN = 0.05, 0.95  # cosine from lr down to 5 % of lr
LOSS_EMA_DECAY, LOSS_EMA_WEIGHT = 0.98, 0.02  # the logged running losses


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
    pope_questions: int = 2,
) -> Batch:
    rows: list[list[int]] = []
    labels: list[list[int]] = []
    slot_regions: list[list[int]] = []
    for image in images:
        seq: list[int] = []
        lab: list[int] = []
        regions: list[int] = []
        for t, (prompt, answer, region) in enumerate(
            conversation(data, image, rng, max_turns, pope_questions)
        ):
            q = tokens.first_turn(prompt) if t == 0 else tokens.later_turn(prompt)
            a = tokens.answer(answer)
            seq += list(q) + list(a)
            lab += [IGNORE_INDEX] * len(q) + list(a)
            if region is not None:
                regions.append(region)
        rows.append(seq)
        labels.append(lab)
        slot_regions.append(regions)
    tok = tokens.tokenizer
    lengths = [len(s) + sum(n_image_tokens - 1 for x in s if x == IMAGE_SENTINEL) for s in rows]
    t_max = max(lengths)
    ids = torch.zeros(len(rows), t_max, dtype=torch.long)
    lab_t = torch.full((len(rows), t_max), IGNORE_INDEX, dtype=torch.long)
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

    levels = [flipped(wt, h, w) for wt, (h, w) in zip(masks.level_weights, level_sizes, strict=True)]
    return PreparedMasks(levels, flipped(masks.position_input, mask_shape, mask_shape))


def loss_on(
    model: OspreyModel,
    data: ShapesTrainData,
    images: list[int],
    batch: Batch,
    flip: torch.Tensor,
    probes: Probes,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(answer loss, probe loss); see :class:`Probes`."""
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
    answer = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), batch.labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX
    )
    presence = probes.presence(image_tokens).amax(dim=1)  # [B, names]: any image token
    index = torch.tensor(images)
    probe_loss = F.binary_cross_entropy_with_logits(
        presence, probes.present[index], weight=probes.present_weight[index]
    )
    if len(batch.regions):
        probe_loss = probe_loss + F.cross_entropy(probes.region(mask_tokens), probes.labels[region_index])
    return answer, probe_loss


class Probes(torch.nn.Module):
    """Training-only linear probes (not saved): a direct signal that teaches the
    from-scratch trunk far sooner than the answer loss alone.

    * ``region`` names each region's category from its mask token;
    * ``presence`` tells, from the image tokens (max over positions), which objects are
      visible — what the yes/no questions ask.
    """

    def __init__(self, data: ShapesTrainData, hidden: int):
        super().__init__()
        categories = sorted(set(data.region_category))
        self.labels = torch.tensor([categories.index(c) for c in data.region_category])
        self.present, self.present_weight = presence_targets(data)
        self.region = torch.nn.Linear(hidden, len(categories))
        self.presence = torch.nn.Linear(hidden, self.present.shape[1])


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
    probes = Probes(data, config.hidden_size)
    named = [*model.named_parameters(), *(("probe." + n, p) for n, p in probes.named_parameters())]
    decay = [p for n, p in named if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in named if not (p.ndim >= 2 and "embed" not in n)]
    optim = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
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
    running = running_probe = 0.0
    for step in range(args.steps):
        if len(order) < args.batch:
            epoch = list(range(len(data.image_regions)))
            rng.shuffle(epoch)
            order += epoch
        images, order = order[: args.batch], order[args.batch :]
        batch = make_batch(data, images, tokens, n_image_tokens, rng, args.max_turns, args.pope_questions)
        flip = torch.tensor([rng.random() < FLIP_PROBABILITY for _ in images])
        for group in optim.param_groups:
            group["lr"] = lr_at(step)
        answer_loss, probe_loss = loss_on(model, data, images, batch, flip, probes)
        optim.zero_grad(set_to_none=True)
        (answer_loss + args.probe_weight * probe_loss).backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in named], GRAD_CLIP_NORM)
        optim.step()
        losses = (answer_loss.item(), probe_loss.item())
        running, running_probe = (
            losses
            if step == 0
            else (
                LOSS_EMA_DECAY * running + LOSS_EMA_WEIGHT * losses[0],
                LOSS_EMA_DECAY * running_probe + LOSS_EMA_WEIGHT * losses[1],
            )
        )
        if (step + 1) % args.log_every == 0 or step == args.steps - 1:
            elapsed = time.perf_counter() - t0
            history.append(
                {
                    "step": step + 1,
                    "loss": round(running, 4),
                    "probe_loss": round(running_probe, 4),
                    "elapsed_s": round(elapsed, 1),
                }
            )
            print(
                f"step {step + 1}/{args.steps} loss {running:.4f} probe {running_probe:.4f} "
                f"lr {lr_at(step):.2e} "
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
        "probe_weight": args.probe_weight,
        "pope_questions": args.pope_questions,
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
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(bundled_tiny_path()), help="output checkpoint directory")
    p.add_argument("--steps", type=int, default=2500)
    p.add_argument("--batch", type=int, default=16, help="images per step")
    p.add_argument("--max-turns", type=int, default=6)
    p.add_argument("--layer-scale-init", type=float, default=1.0)
    p.add_argument("--probe-weight", type=float, default=1.0, help="0 disables the probes")
    p.add_argument("--pope-questions", type=int, default=3, help="yes/no turns per image")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--vocab", type=int, default=DEFAULT_VOCAB_SIZE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log-every", type=int, default=50)
    train(p.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
