"""The GLaMM adapter: requests in, predictions (text + masks) out.

Model arguments (``--model-args k=v,...``):

* ``path=DIR`` — checkpoint directory (official layout); bundled for ``glamm-tiny``;
* ``clip=DIR`` — a local CLIP ViT-L/14-336 folder (``config.vision_tower`` names a hub id
  the official scripts download); not needed when the checkpoint holds the tower;
* ``device=cpu|cuda`` (default: cuda when available);
* ``dtype=float32|bfloat16`` — ``bfloat16`` is the released scripts' precision (everything
  in bf16, boxes rounded through fp16 first; the CUDA default), ``float32`` the CPU default;
* ``batch_size=N`` — requests decoded together (default 16), left-padded; each row's
  answer is the one it gets alone (tested). The scripts decode one request at a time.

Regions are boxes (``region_kinds``): the engine gives masks, points and scribbles as their
tight box and records it; each ``<region>`` of a prompt becomes a ``<bbox>`` token fed by the
region encoder, the box normalised as GLaMM does (:func:`evalkit.regions.coords.glamm_box`).

Requests are grouped by image into batches: an image is read, preprocessed and encoded once
per batch (CLIP, the region encoder's fused maps, and SAM when some answer has a ``[SEG]``
and its request asks for masks), then the batch is decoded together
(:mod:`~evalkit.models.glamm.generation`). With
generation ``masks: true`` a prediction carries one :class:`~evalkit.records.MaskOutput` per
generated ``[SEG]`` (SAM logits at the original size, ``> 0``, COCO RLE), with the phrase
of its ``<p>…</p>`` (:func:`evalkit.outputs.seg_phrases`) and that phrase's span; a ``[SEG]``
without a phrase of its own (``It is [SEG].``) has its own span and no phrase.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils

from evalkit.errors import ConfigError, DataError, EvalkitError
from evalkit.images import load_rgb
from evalkit.models import Adapter
from evalkit.models.glamm.checkpoint import LoadReport, load_glamm
from evalkit.models.glamm.generation import Generated, Job, generate_batch
from evalkit.models.glamm.modeling import GLaMMModel, ImageFeatures
from evalkit.models.glamm.preprocess import PreparedImage, prepare_image
from evalkit.models.glamm.prompting import SEG, GLaMMTokenizer, render_prompt
from evalkit.models.osprey.checkpoint import file_hashes
from evalkit.outputs import seg_phrases
from evalkit.records import MaskOutput, Prediction, Request
from evalkit.regions.coords import glamm_box

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# The released scripts' answer budget (model.evaluate(..., max_tokens_new=512)).
DEFAULT_MAX_NEW_TOKENS = 512
# Requests decoded together. A 7B row holds ~0.35 GB of KV cache for GLaMM's ~640-token
# prompt (576 image tokens) in bf16, so 16 rows fit next to the model on any 40 GB card.
DEFAULT_BATCH_SIZE = 16


@dataclass
class EncodedImage:
    """One image of a batch: both views, its CLIP features, and what is computed on demand."""

    prepared: PreparedImage
    features: ImageFeatures
    region_maps: list[torch.Tensor] | None = None
    sam_embedding: torch.Tensor | None = None


class GLaMMAdapter(Adapter):
    region_kinds = frozenset({"box"})
    serves = frozenset({"generate", "token_logprobs", "masks"})

    def __init__(
        self,
        name: str,
        path: str | Path,
        clip: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int | str = DEFAULT_BATCH_SIZE,
    ):
        self.name = name  # type: ignore[misc]  # per-instance: one class serves every GLaMM name
        self.path = Path(path).expanduser()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cuda" and "LOCAL_RANK" in os.environ:
            self.device = f"cuda:{int(os.environ['LOCAL_RANK'])}"  # under torchrun, one GPU per rank
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("device=cuda but no CUDA device is available")
        self.dtype = dtype or ("bfloat16" if self.device.startswith("cuda") else "float32")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype={self.dtype}: expected one of {sorted(DTYPES)}")
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ConfigError("batch_size must be >= 1")
        self.model, self.config, self.report = load_glamm(self.path, clip, self.device, DTYPES[self.dtype])
        print(f"evalkit: {name} loaded from {self.path}: {self.report.summary()}", file=sys.stderr)
        self.tokenizer = GLaMMTokenizer.from_dir(self.path)
        check_vocab(self.tokenizer, self.config.vocab_size, self.path)
        if self.device.startswith("cuda"):
            torch.backends.cuda.matmul.allow_tf32 = False  # keep fp32 mode exact
        self.fingerprint_cache: dict[str, Any] | None = None

    @classmethod
    def from_parts(
        cls, name: str, model: GLaMMModel, tokenizer: GLaMMTokenizer, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> GLaMMAdapter:
        """An adapter around a model built in memory (tests, experiments)."""
        self = cls.__new__(cls)
        self.name = name  # type: ignore[misc]
        self.path = Path(".")
        self.batch_size = batch_size
        self.device = str(model.device)
        self.dtype = str(model.dtype).removeprefix("torch.")
        self.model, self.config, self.tokenizer = model, model.config, tokenizer
        self.report = LoadReport([], [])
        self.fingerprint_cache = {"in_memory": True, "dtype": self.dtype}
        return self

    # ------------------------------------------------------------------ Adapter API
    def fingerprint(self) -> dict[str, Any]:
        if self.fingerprint_cache is None:
            optional = [
                self.path / n
                for n in ("tokenizer_config.json", "added_tokens.json", "special_tokens_map.json")
                if (self.path / n).is_file()
            ]
            files = [
                self.path / "config.json",
                self.path / "tokenizer.json",
                *optional,
                *self.report.weight_files,
            ]
            fp: dict[str, Any] = {"checkpoint": file_hashes(files), "dtype": self.dtype}
            if self.report.clip_files:
                fp["clip"] = file_hashes(self.report.clip_files)
            self.fingerprint_cache = fp
        return self.fingerprint_cache

    def generate(self, requests: Sequence[Request]) -> Iterator[Prediction]:
        jobs = [self.make_job(r) for r in requests]
        for batch in plan_batches(jobs, self.batch_size):
            encoded: dict[str, EncodedImage] = {}
            for key in dict.fromkeys(job.image_key for job in batch):
                try:
                    encoded[key] = self.encode(key)
                except DataError as exc:  # bad input: reported per request, the run goes on
                    for job in batch:
                        if job.image_key == key:
                            yield Prediction(job.request.id, "", error=str(exc))
            yield from self.answer(encoded, [job for job in batch if job.image_key in encoded])

    # ------------------------------------------------------------------ pieces
    def make_job(self, request: Request) -> Job:
        if request.image_path is None:
            raise EvalkitError(f"request {request.id}: GLaMM needs an image")
        if request.choices is not None:
            raise EvalkitError(f"request {request.id}: the GLaMM adapter does not rank choices")
        rendered = render_prompt(request.prompt)
        ids = self.tokenizer.encode_prompt(rendered)
        n_bbox = sum(1 for t in ids if t == self.tokenizer.bbox_id)
        if n_bbox != len(request.regions):
            raise EvalkitError(
                f"request {request.id}: the prompt has {n_bbox} <region> placeholder(s) "
                f"but {len(request.regions)} region(s)"
            )
        boxes = None
        if request.regions:
            # eval/region_captioning/infer.py: float64 boxes, .half().to(bfloat16) on the GPU.
            normalised = [glamm_box(r.box_xyxy(), r.width, r.height) for r in request.regions]
            boxes = torch.tensor(normalised, dtype=torch.float64)
            boxes = boxes.half().to(torch.bfloat16) if self.dtype == "bfloat16" else boxes.float()
        gen = request.generation
        return Job(
            request=request,
            rendered=rendered,
            ids=ids,
            image_key=str(request.image_path),
            boxes=boxes,
            max_new_tokens=int(gen.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)),
            temperature=float(gen.get("temperature", 0.0)),
            top_p=float(gen.get("top_p", 1.0)),
            seed=int(gen.get("seed", 0)),
            want_logprobs=bool(gen.get("logprobs", False)),
            want_masks=bool(gen.get("masks", False)),
        )

    def prepare(self, image_key: str) -> PreparedImage:
        vision = self.config.vision
        return prepare_image(load_rgb(image_key), vision.clip.image_size, vision.sam.image_size)

    @torch.inference_mode()
    def encode(self, image_key: str) -> EncodedImage:
        prepared = self.prepare(image_key)
        return EncodedImage(prepared, self.model.encode_images(prepared.clip[None]))

    @torch.inference_mode()
    def answer(self, encoded: dict[str, EncodedImage], jobs: list[Job]) -> Iterator[Prediction]:
        """One batch of requests: decoded together, then each answer's masks."""
        if not jobs:
            return
        model, tok = self.model, self.tokenizer
        embeds = []
        for job in jobs:
            image = encoded[job.image_key]
            bbox_tokens = None
            if job.boxes is not None:
                if image.region_maps is None:  # per image, shared by its requests
                    image.region_maps = model.region_maps(image.features)
                bbox_tokens = model.region_tokens(image.region_maps, [job.boxes])[0]
            embeds.append(
                model.embed_inputs(torch.tensor(job.ids), image.features.tokens[0], bbox_tokens, tok.bbox_id)
            )
        for done in generate_batch(model, jobs, embeds, tok.seg_id, tok.eos_id):
            image = encoded[done.job.image_key]
            ids = done.token_ids[:-1] if done.token_ids[-1:] == [tok.eos_id] else done.token_ids
            text = tok.decode(ids)
            masks: list[MaskOutput] | None = None
            if done.job.want_masks:
                masks = []
                if len(done.seg_hidden):
                    if image.sam_embedding is None:  # SAM runs only for images that need masks
                        image.sam_embedding = model.encode_sam(image.prepared.sam[None])
                    prepared = image.prepared
                    logits = model.masks(
                        done.seg_hidden, image.sam_embedding, prepared.resized, prepared.original
                    )
                    masks = mask_outputs(text, [encode_rle(m > 0) for m in logits])
            yield self.prediction(done, text, masks)

    def prediction(self, done: Generated, text: str, masks: list[MaskOutput] | None) -> Prediction:
        return Prediction(
            done.job.request.id,
            text,
            prompt=done.job.rendered,
            token_ids=done.token_ids,
            token_logprobs=done.token_logprobs,
            masks=masks,
        )

    def close(self) -> None:
        self.__dict__.pop("model", None)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def plan_batches(jobs: Sequence[Job], batch_size: int) -> list[list[Job]]:
    """Requests grouped by image (first-seen order), batches of about ``batch_size``; an
    image's requests stay in one batch when they fit, so it is encoded once."""
    by_image: dict[str, list[Job]] = {}
    for job in jobs:
        by_image.setdefault(job.image_key, []).append(job)
    batches: list[list[Job]] = []
    current: list[Job] = []
    for group in by_image.values():
        for start in range(0, len(group), batch_size):
            part = group[start : start + batch_size]
            if current and len(current) + len(part) > batch_size:
                batches.append(current)
                current = []
            current.extend(part)
    if current:
        batches.append(current)
    return batches


def check_vocab(tokenizer: GLaMMTokenizer, vocab_size: int, source: Path) -> None:
    """GLaMM resized its embeddings to the tokenizer: every special id is a row of the table."""
    outside = sorted(name for name, tid in tokenizer.ids.items() if not 0 <= tid < vocab_size)
    if outside:
        raise ConfigError(f"{source}: tokens {outside} have ids past the model's vocab_size {vocab_size}")


def encode_rle(mask: torch.Tensor) -> dict[str, Any]:
    """A boolean ``[H, W]`` mask as compressed COCO RLE (what ``mask_to_rle_pytorch`` +
    ``coco_encode_rle`` write)."""
    arr = np.asfortranarray(mask.cpu().numpy().astype(np.uint8))
    rle = mask_utils.encode(arr)
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def mask_outputs(text: str, rles: list[dict[str, Any]]) -> list[MaskOutput]:
    """The k-th generated ``[SEG]``'s mask with the phrase that precedes it in ``text``.

    A ``[SEG]`` closing a ``<p>phrase</p>`` (:func:`evalkit.outputs.seg_phrases`) grounds that
    phrase (its span in ``text``); a bare ``[SEG]`` (or one after an empty ``<p></p>``) grounds
    its own span, with no phrase.
    When the text's ``[SEG]`` count is not the masks' (the model spelt ``[SEG]`` out of other
    tokens), the masks keep no phrase and the protocol pairs them by order.
    """
    seg_starts = []
    at = text.find(SEG)
    while at >= 0:
        seg_starts.append(at)
        at = text.find(SEG, at + len(SEG))
    if len(seg_starts) != len(rles):
        return [MaskOutput(rle) for rle in rles]
    phrase_of = {text.find(SEG, end): (phrase, start, end) for phrase, start, end in seg_phrases(text)}
    out = []
    for rle, start in zip(rles, seg_starts, strict=True):
        if start in phrase_of and phrase_of[start][0]:
            phrase, p_start, p_end = phrase_of[start]
            out.append(MaskOutput(rle, phrase, (p_start, p_end)))
        else:
            out.append(MaskOutput(rle, None, (start, start + len(SEG))))
    return out
