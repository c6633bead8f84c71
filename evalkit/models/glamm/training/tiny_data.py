"""The tiny GLaMM's training data: the shapes train split as GLaMM's kinds of questions.

Each image becomes one ``llava_v1`` conversation of a few turns (the first tokenised exactly
as at inference; later ones without the image opening, as the official multi-turn refseg
data). The questions are GLaMM's own (groundingLMM e74865f) and the shapes task cards':

* ``refseg`` — ``Can you segment the {name} in this image?`` -> ``It is [SEG].`` (the first
  of ``ANSWER_LIST``; ``SEG_QUESTIONS[0]``), the mask of the one object of that name;
* ``gcg`` — GLaMM's GCG instruction (five spaces, as ``eval/gcg/infer.py``'s literal) ->
  ``The image shows <p> a red circle </p> [SEG], ... and <p> a house </p> [SEG].``, the
  visible objects from left to right, one mask each;
* ``cls`` / ``cap`` — the ``shapes_cls`` / ``shapes_cap`` questions about a ``<bbox>`` (the
  region's tight box) -> the category phrase / the canonical caption.

Images are preprocessed once as at inference (both views, :mod:`..preprocess`); masks are
read from the instance-id maps at the SAM view's resolution when a batch needs them.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from evalkit.images import load_rgb
from evalkit.models.glamm.preprocess import SAM_MEAN, SAM_STD, clip_view, longest_side_shape
from evalkit.models.glamm.prompting import BBOX, BEGIN, SEG, GLaMMTokenizer, render_prompt
from evalkit.regions import Region
from evalkit.regions.coords import glamm_box
from evalkit.tasks.shapes.scenes import MIN_VISIBLE, all_categories, category_phrase, region_captions

OVERVIEW = "<image>\nThis provides an overview of the picture.\n"
PROMPTS = {
    "refseg": BEGIN + "Can you segment the {name} in this image?",
    "gcg": BEGIN + "Could you please give me a detailed description of the image? Please respond with "
    "interleaved     segmentation masks for the corresponding parts of the answer.",
    "cls": OVERVIEW + "What is the category of <region>? Using only one word or phrase.",
    "cap": OVERVIEW + "Please give me a short description of <region>.",
}
REFSEG_ANSWER = f"It is {SEG}."
GCG_OPENING = "The image shows "


@dataclass
class SceneObject:
    name: str  # "red circle", "house", "house roof"
    ids: list[int]  # instance ids of its pixels in the id map
    centre_x: float


@dataclass
class TrainImage:
    clip: torch.Tensor  # [3, S, S] float16
    sam_pixels: np.ndarray  # [h, w, 3] uint8, resized for the SAM view (unpadded)
    id_map: np.ndarray  # [H, W] instance ids at the original size
    objects: list[SceneObject]  # whole objects (GCG), left to right
    referable: list[SceneObject]  # objects and house parts whose name is unique in the image
    regions: list[tuple[str, tuple[float, float, float, float]]] = field(
        default_factory=list
    )  # category, box


def scene_objects(scene: dict, visible: dict[int, int]) -> tuple[list[SceneObject], list[SceneObject]]:
    whole: list[SceneObject] = []
    parts: list[SceneObject] = []
    for obj in scene["objects"]:
        if obj["shape"] == "house":
            ids = [p["id"] for p in obj["parts"]]
            name = "house"
            parts += [
                SceneObject(f"house {p['part']}", [p["id"]], obj["cx"])
                for p in obj["parts"]
                if visible.get(p["id"], 0) >= MIN_VISIBLE
            ]
        else:
            ids, name = [obj["id"]], f"{obj['colour']} {obj['shape']}"
        if sum(visible.get(i, 0) for i in ids) >= MIN_VISIBLE:
            whole.append(SceneObject(name, ids, obj["cx"]))
    whole.sort(key=lambda o: o.centre_x)
    candidates = whole + parts
    counts: dict[str, int] = {}
    for o in candidates:
        counts[o.name] = counts.get(o.name, 0) + 1
    return whole, [o for o in candidates if counts[o.name] == 1]


def load_split(
    root: Path, split: str, clip_size: int, sam_size: int, limit: int | None = None
) -> list[TrainImage]:
    scenes = json.loads((root / split / "scenes.json").read_text())[:limit]
    cls_by_file = {r["file_name"]: r for r in json.loads((root / split / "cls.json").read_text())}
    out = []
    for scene in scenes:
        image = load_rgb(root / split / "images" / scene["file_name"])
        h, w = longest_side_shape(image.height, image.width, sam_size)
        sam_pixels = np.array(image.resize((w, h), resample=Image.Resampling.BILINEAR), dtype=np.uint8)
        id_map = np.asarray(Image.open(root / split / "ids" / scene["file_name"])).astype(np.uint8)
        visible = {int(k): int(v) for k, v in scene.get("visible", {}).items()}
        whole, referable = scene_objects(scene, visible)
        regions = []
        record = cls_by_file.get(scene["file_name"])
        if record is not None:
            for ann, category in zip(record["annotations"], record["categories"], strict=True):
                region = Region.from_rle(ann["segmentation"], scene["height"], scene["width"])
                regions.append((category, glamm_box(region.box_xyxy(), region.width, region.height)))
        out.append(
            TrainImage(clip_view(image, clip_size).half(), sam_pixels, id_map, whole, referable, regions)
        )
    return out


def sam_input(image: TrainImage, side: int) -> torch.Tensor:
    """The SAM view ``[3, side, side]``: normalised, padded (``preprocess.sam_view``)."""
    pixels = torch.from_numpy(image.sam_pixels).permute(2, 0, 1)
    x = (pixels - SAM_MEAN) / SAM_STD
    return F.pad(x, (0, side - pixels.shape[2], 0, side - pixels.shape[1]))


def object_mask(image: TrainImage, obj: SceneObject) -> torch.Tensor:
    """The object's mask at the SAM view's resized size, bilinear (a soft target)."""
    binary = torch.from_numpy(np.isin(image.id_map, obj.ids).astype(np.float32))
    h, w = image.sam_pixels.shape[:2]
    return F.interpolate(binary[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]


def gcg_answer(objects: list[SceneObject]) -> str:
    phrases = [f"<p> a {o.name} </p> {SEG}" for o in objects]
    listed = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return GCG_OPENING + listed + "."


def corpus_texts() -> list[str]:
    """Everything the tokenizer must cover: template, questions, answers."""
    texts = [render_prompt(PROMPTS["gcg"]), render_prompt(PROMPTS["cls"]), render_prompt(PROMPTS["cap"])]
    names = sorted({category_phrase(c) for c in all_categories()} | {"house"})
    texts += [render_prompt(PROMPTS["refseg"].format(name=n)) for n in names]
    texts += [REFSEG_ANSWER, GCG_OPENING + "a, b and c."]
    for category in all_categories():
        texts += [category_phrase(category), *region_captions(category)]
    return texts


@dataclass
class Turn:
    prompt: str
    answer: str
    masks: list[SceneObject]  # one per [SEG] of the answer, in order
    box: tuple[float, float, float, float] | None = None  # the <bbox> of the question
    category: str | None = None  # the box's category (the region probe's label)


def conversation(image: TrainImage, rng: random.Random, max_turns: int, gcg_probability: float) -> list[Turn]:
    turns: list[Turn] = []
    if image.objects and rng.random() < gcg_probability:
        turns.append(Turn(PROMPTS["gcg"], gcg_answer(image.objects), list(image.objects)))
    for obj in rng.sample(image.referable, min(2, len(image.referable))):
        turns.append(Turn(PROMPTS["refseg"].format(name=obj.name), REFSEG_ANSWER, [obj]))
    for category, box in rng.sample(image.regions, min(2, len(image.regions))):
        if rng.random() < 0.5:
            turns.append(Turn(PROMPTS["cls"], category_phrase(category), [], box, category))
        else:
            turns.append(Turn(PROMPTS["cap"], region_captions(category)[0], [], box, category))
    rng.shuffle(turns)
    return turns[:max_turns]


class Tokens:
    """Token ids of turns: the first exactly as at inference, later ones as the
    ``llava_v1`` conversation continues (``</s>`` closes an answer, ``USER:`` follows)."""

    def __init__(self, tokenizer: GLaMMTokenizer):
        self.tokenizer = tokenizer

    def first_turn(self, prompt: str) -> list[int]:
        return self.tokenizer.encode_prompt(render_prompt(prompt))

    @cache  # noqa: B019 - a few hundred distinct strings, one instance
    def later_turn(self, prompt: str) -> tuple[int, ...]:
        question = prompt.replace(BEGIN, "").replace("<image>\n", "").replace("<region>", BBOX)
        return tuple(self.tokenizer.encode_text(f"USER: {question} ASSISTANT:", add_bos=False))

    @cache  # noqa: B019
    def answer(self, text: str) -> tuple[int, ...]:
        return (*self.tokenizer.encode_text(text, add_bos=False), self.tokenizer.eos_id)
