"""The tiny Osprey's training data: the shapes train split as question/answer turns.

The four shapes questions are asked exactly as the shapes task cards ask them; answers are
the canonical phrases of :mod:`evalkit.tasks.shapes.scenes`. Images and region masks are
preprocessed once, exactly as at inference (:func:`load_split`).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from evalkit.images import load_rgb
from evalkit.models.osprey.mask_extractor import PreparedMasks, prepare_masks
from evalkit.models.osprey.modeling import OspreyModel
from evalkit.models.osprey.preprocess import preprocess_image
from evalkit.models.osprey.prompting import OspreyTokenizer, open_turn, osprey_question, render_prompt
from evalkit.models.osprey.training.tiny import base_corpus
from evalkit.regions import Region
from evalkit.tasks.shapes.scenes import (
    all_object_names,
    category_phrase,
    region_captions,
    visible_object_names,
)

OVERVIEW = "<image>\nThis provides an overview of the picture.\n"
PROMPTS = {
    "cls": OVERVIEW + "What is the category of <region>? Using only one word or phrase.",
    "cap": OVERVIEW + "Please give me a short description of <region>.",
    "ovseg": "<image>\n.\nThis provides an overview of the picture.\n"
    "What is in <region>? Using a short phrase.",
    "pope": "<image>\nIs there a {name} in the image?",
}
REGION_QUESTION_WEIGHTS = (("cls", 0.5), ("cap", 0.2), ("ovseg", 0.3))
BACKGROUND_ID = 0  # value of background pixels in a scene's ids/*.png object map
# Smaller background regions are not trained on: at 40 pixels the mask still covers some
# cell of every feature level.
MIN_BACKGROUND_PIXELS = 40
BACKGROUND_QUESTION_PROBABILITY = 0.5  # how often an image's background region is asked about
POPE_POSITIVE_PROBABILITY = 0.5  # a yes/no turn asks about a visible object (else an absent one)
HARD_NEGATIVE_PROBABILITY = 0.5  # an absent name sharing a colour or shape with a visible one


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
    drawn: list[list[str]]  # names of every drawn object (never POPE negatives)


def load_split(root: Path, split: str, size: int, model: OspreyModel) -> ShapesTrainData:
    scenes = json.loads((root / split / "scenes.json").read_text())
    cls_by_file = {r["file_name"]: r for r in json.loads((root / split / "cls.json").read_text())}
    pixels = torch.empty(len(scenes), 3, size, size, dtype=torch.float16)
    prepared: list[PreparedMasks] = []
    region_image: list[int] = []
    region_category: list[str] = []
    image_regions: list[list[int]] = []
    present: list[list[str]] = []
    drawn: list[list[str]] = []
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
        if (ids == BACKGROUND_ID).sum() >= MIN_BACKGROUND_PIXELS:
            masks.append((ids == BACKGROUND_ID).astype(np.uint8))
            cats.append("background")
        first = len(region_image)
        if masks:
            stacked = torch.from_numpy(np.stack(masks).astype(np.uint8))
            prepared.append(prepare_masks(stacked, model.level_sizes(), model.config.vision.mask_shape))
        region_image.extend([n] * len(masks))
        region_category.extend(cats)
        image_regions.append(list(range(first, len(region_image))))
        shown, every = visible_object_names(scene)
        present.append(sorted(shown))
        drawn.append(sorted(every))
    return ShapesTrainData(
        pixels,
        PreparedMasks.cat(prepared),
        region_image,
        region_category,
        image_regions,
        present,
        drawn,
    )


def corpus_texts() -> list[str]:
    """Everything the tokenizer must cover: template, questions, answers."""
    from evalkit.tasks.shapes.scenes import COLOURS, HOUSE_PARTS, SHAPES

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
        self.tokenizer = tokenizer

    def first_turn(self, prompt: str) -> tuple[int, ...]:
        return tuple(self.tokenizer.encode_prompt(render_prompt(prompt)))  # encode_prompt caches

    @cache  # noqa: B019 - a handful of distinct strings, one instance
    def later_turn(self, prompt: str) -> tuple[int, ...]:
        question = osprey_question(prompt).replace("<image>\n", "")
        encoded = self.tokenizer.tokenizer.encode(open_turn(question), add_special_tokens=False)
        return tuple(encoded.ids)

    @cache  # noqa: B019
    def answer(self, text: str) -> tuple[int, ...]:
        encoded = self.tokenizer.tokenizer.encode(text, add_special_tokens=False)
        return (*encoded.ids, self.tokenizer.eos_id)


def conversation(
    data: ShapesTrainData, image: int, rng: random.Random, max_turns: int, pope_questions: int = 2
) -> list[tuple[str, str, int | None]]:
    """(prompt, answer, region index or None) turns about one image, shuffled."""
    turns: list[tuple[str, str, int | None]] = []
    kinds = [k for k, _ in REGION_QUESTION_WEIGHTS]
    weights = [w for _, w in REGION_QUESTION_WEIGHTS]
    for region in data.image_regions[image]:
        cat = data.region_category[region]
        if cat == "background":
            if rng.random() < BACKGROUND_QUESTION_PROBABILITY:
                turns.append((PROMPTS["ovseg"], "background", region))
            continue
        kind = rng.choices(kinds, weights)[0]
        turns.append((PROMPTS[kind], answer_for(kind, cat), region))
    present = data.present[image]
    absent = [n for n in all_object_names() if n not in data.drawn[image]]
    for _ in range(pope_questions):
        if present and rng.random() < POPE_POSITIVE_PROBABILITY:
            turns.append((PROMPTS["pope"].format(name=rng.choice(present)), "Yes", None))
        else:
            turns.append((PROMPTS["pope"].format(name=hard_negative(present, absent, rng)), "No", None))
    rng.shuffle(turns)
    return turns[:max_turns]


def presence_targets(data: ShapesTrainData) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and object name: 1 visible, 0 absent; weight 0 for drawn but hidden."""
    names = all_object_names()
    target = torch.zeros(len(data.present), len(names))
    weight = torch.ones(len(data.present), len(names))
    for i, (present, drawn) in enumerate(zip(data.present, data.drawn, strict=True)):
        for j, name in enumerate(names):
            if name in present:
                target[i, j] = 1.0
            elif name in drawn:
                weight[i, j] = 0.0
    return target, weight


def hard_negative(present: list[str], absent: list[str], rng: random.Random) -> str:
    """Half the time an absent name that shares a colour or a shape with a present one."""
    if present and rng.random() < HARD_NEGATIVE_PROBABILITY:
        words = {w for name in present for w in name.split()}
        close = [n for n in absent if words & set(n.split())]
        if close:
            return rng.choice(close)
    return rng.choice(absent)
