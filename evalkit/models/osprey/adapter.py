"""The Osprey adapter: requests in, predictions out, through the cascade path.

Model arguments (``--model-args k=v,...``):

* ``path=DIR`` — checkpoint directory (official layout); bundled for ``osprey-tiny``;
* ``clip=FILE`` — ``open_clip_pytorch_model.bin`` (else ``mm_vision_tower`` of the config);
* ``device=cpu|cuda`` (default: cuda when available);
* ``dtype=float32|bfloat16|float16`` — ``bfloat16`` is the released eval scripts' mix as
  it stands for every forward but a process's first (the CUDA default): checkpoint loaded
  in bf16, decoder bf16, vision tower and projector bf16 on weights and pixels rounded
  through fp16 (the scripts set the tower to fp16; the first forward's
  ``self.model.bfloat16()`` converts it), mask extractor fp32. ``float32`` everywhere is
  the CPU default; ``float16`` puts decoder and tower in fp16;
* ``batch_size=N`` — requests decoded together (default 256 on CPU, 64 on CUDA). An
  image's prefix KV is stored once and shared by its requests' rows, so a row costs only
  its own suffix and generated tokens (~0.5 MB per token for a 7B model);
* ``mode=cascade|naive`` — ``cascade`` (the default; ``fast``, its former name, is still
  accepted) decodes a batch together over shared prefixes
  (:mod:`~evalkit.models.osprey.generate_cascade`); ``naive`` is the official loop (one
  ``generate`` per request, the image re-encoded every call,
  :mod:`~evalkit.models.osprey.generate_naive`), for comparisons.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evalkit.errors import ConfigError, DataError, EvalkitError
from evalkit.images import load_rgb
from evalkit.models import Adapter
from evalkit.models.osprey.checkpoint import LoadReport, file_hashes, load_osprey
from evalkit.models.osprey.generate_cascade import TextPrefixCache, encode_batch, generate_cascade
from evalkit.models.osprey.generate_naive import generate_naive
from evalkit.models.osprey.generation import Finished, Job, SamplingSettings, region_key
from evalkit.models.osprey.modeling import OspreyModel
from evalkit.models.osprey.preprocess import preprocess_image
from evalkit.models.osprey.prompting import OspreyTokenizer, render_prompt
from evalkit.models.osprey.rank import choice_ids, rank_cascade, rank_naive
from evalkit.records import Prediction, Request

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
MODES = ("cascade", "naive")
MODE_ALIASES = {"fast": "cascade"}  # the cascade path's former name, kept for old commands
DEFAULT_BATCH_SIZE = {"cpu": 256, "cuda": 64}
FROM_PARTS_BATCH_SIZE = 32
# The eval scripts' answer budget when a task card sets none.
DEFAULT_MAX_NEW_TOKENS = 1024
# Image/mask decoding runs beside the model on this many threads (one batch ahead).
LOADER_THREADS = 2
Batch = list[Job]
# (images, masks per image, images that could not be read -> why)
Loaded = tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]], dict[str, str]]


class OspreyAdapter(Adapter):
    region_kinds = frozenset({"mask"})
    serves = frozenset({"generate", "rank", "token_logprobs"})

    def __init__(
        self,
        name: str,
        path: str | Path,
        clip: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int | str | None = None,
        mode: str = "cascade",
    ):
        self.name = name  # type: ignore[misc]  # per-instance: one class serves every Osprey name
        self.path = Path(path).expanduser()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cuda" and "LOCAL_RANK" in os.environ:
            # Under torchrun each rank takes its own GPU.
            self.device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("device=cuda but no CUDA device is available")
        self.dtype = dtype or ("bfloat16" if self.device.startswith("cuda") else "float32")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype={self.dtype}: expected one of {sorted(DTYPES)}")
        device_kind = "cuda" if self.device.startswith("cuda") else "cpu"
        self.batch_size = int(batch_size) if batch_size else DEFAULT_BATCH_SIZE[device_kind]
        if self.batch_size < 1:
            raise ConfigError("batch_size must be >= 1")
        self.mode = checked_mode(mode)
        if not self.path.is_dir():
            raise ConfigError(f"path={self.path}: not a directory (the checkpoint folder)")
        # The tokenizer first: a missing tokenizer.json is found before minutes of weight loading.
        self.tokenizer = OspreyTokenizer.from_dir(self.path)
        official_mix = self.dtype == "bfloat16"
        self.model, self.config, self.report = load_osprey(
            self.path,
            clip,
            self.device,
            DTYPES[self.dtype],
            DTYPES[self.dtype],
            round_through_bf16=official_mix,
            vision_via=torch.float16 if official_mix else None,
        )
        print(f"evalkit: {name} loaded from {self.path}: {self.report.summary()}", file=sys.stderr)
        self.sampling = read_sampling(self.path)
        if self.device.startswith("cuda"):
            torch.backends.cuda.matmul.allow_tf32 = False  # keep fp32 mode exact
        self.text_prefix_cache = TextPrefixCache()
        self.fingerprint_cache: dict[str, Any] | None = None

    @classmethod
    def from_parts(
        cls,
        name: str,
        model: OspreyModel,
        tokenizer: OspreyTokenizer,
        batch_size: int = FROM_PARTS_BATCH_SIZE,
        mode: str = "cascade",
    ) -> OspreyAdapter:
        """An adapter around a model built in memory (benchmarks, experiments)."""
        self = cls.__new__(cls)
        self.name = name  # type: ignore[misc]
        self.path = Path(".")
        self.device = str(model.device)
        self.dtype = str(model.llm_dtype).removeprefix("torch.")
        self.batch_size, self.mode = batch_size, checked_mode(mode)
        self.model, self.config = model, model.config
        self.report = LoadReport([], None)
        self.tokenizer, self.sampling = tokenizer, SamplingSettings()
        self.text_prefix_cache = TextPrefixCache()
        self.fingerprint_cache = {"in_memory": True, "dtype": self.dtype}
        return self

    # ------------------------------------------------------------------ Adapter API
    def fingerprint(self) -> dict[str, Any]:
        if self.fingerprint_cache is None:
            # generation_config.json (top-k / top-p) and tokenizer_config.json (decoding's
            # space clean-up) change outputs too; both are optional.
            optional = [self.path / n for n in ("generation_config.json", "tokenizer_config.json")]
            files = [
                self.path / "config.json",
                self.path / "tokenizer.json",
                *(f for f in optional if f.is_file()),
                *self.report.weight_files,
            ]
            fp: dict[str, Any] = {"checkpoint": file_hashes(files), "dtype": self.dtype}
            if self.report.clip_file is not None:
                fp["clip"] = file_hashes([self.report.clip_file])
            self.fingerprint_cache = fp
        return self.fingerprint_cache

    def generate(self, requests: Sequence[Request]) -> Iterator[Prediction]:
        jobs = [self.make_job(r) for r in requests]
        batches = plan_batches(jobs, self.batch_size)
        size = self.config.vision.image_size
        with ThreadPoolExecutor(max_workers=LOADER_THREADS) as pool:
            # Nothing overlaps the first batch's decoding, so it gets both workers.
            first = split_by_image(batches[0]) if batches else []
            pending: list[Future[Loaded]] = [pool.submit(load_inputs, part, size) for part in first]
            for k, batch in enumerate(batches):
                loaded = merge_loaded([f.result() for f in pending])
                # Decode the next batch's images and masks while this one runs.
                pending = [pool.submit(load_inputs, batches[k + 1], size)] if k + 1 < len(batches) else []
                images, _, failed = loaded
                for job in batch:
                    if job.image_key in failed:  # bad input: reported per request, run goes on
                        yield Prediction(job.request.id, "", error=failed[job.image_key])
                batch = [job for job in batch if job.image_key in images]
                if batch:
                    for done in self.run_batch(batch, loaded):
                        yield self.prediction(done)

    # ------------------------------------------------------------------ pieces
    def make_job(self, request: Request) -> Job:
        if request.image_path is None:
            raise EvalkitError(f"request {request.id}: Osprey needs an image")
        rendered = render_prompt(request.prompt)
        ids = self.tokenizer.encode_prompt(rendered)
        n_masks = sum(1 for t in ids if t == self.tokenizer.mask_id)
        if n_masks != len(request.regions) or sum(1 for t in ids if t == self.tokenizer.pos_id) != n_masks:
            raise EvalkitError(
                f"request {request.id}: the prompt has {n_masks} <region> placeholder(s) "
                f"but {len(request.regions)} region(s)"
            )
        gen = request.generation
        choices = None
        if request.choices is not None:
            try:
                choices = choice_ids(self.tokenizer, rendered, request.choices)
            except ValueError as exc:
                raise EvalkitError(f"request {request.id}: {exc}") from exc
        return Job(
            request=request,
            rendered=rendered,
            ids=ids,
            image_key=str(request.image_path),
            region_keys=[region_key(r.rle, f"{request.id}#{i}") for i, r in enumerate(request.regions)],
            max_new_tokens=int(gen.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)),
            temperature=float(gen.get("temperature", 0.0)),
            seed=int(gen.get("seed", 0)),
            choice_ids=choices,
            want_logprobs=bool(gen.get("logprobs", False)),
        )

    @torch.inference_mode()
    def run_batch(self, batch: Batch, loaded: Loaded) -> Iterator[Finished]:
        images, regions, _ = loaded
        if self.mode == "naive":
            for job in batch:
                # The official loop preprocesses an image once but runs the vision tower
                # (and pools the request's own regions) again for every request.
                own = regions.get(job.image_key, {})
                masks = [own[key] for key in job.region_keys]
                image = images[job.image_key]
                if job.choice_ids is not None:
                    yield rank_naive(self.model, self.tokenizer, job, image, masks)
                else:
                    yield generate_naive(self.model, self.tokenizer, job, image, masks, self.sampling)
            return
        encoded = encode_batch(self.model, images, regions)
        ranked = [job for job in batch if job.choice_ids is not None]
        generated = [job for job in batch if job.choice_ids is None]
        if ranked:
            yield from rank_cascade(self.model, self.tokenizer, ranked, encoded, self.text_prefix_cache)
        if generated:
            yield from generate_cascade(
                self.model, self.tokenizer, generated, encoded, self.sampling, self.text_prefix_cache
            )

    def prediction(self, done: Finished) -> Prediction:
        if done.choice_logprobs is not None:
            assert done.job.choice_ids is not None
            return Prediction(
                done.job.request.id,
                "",
                prompt=done.job.rendered,
                choice_logprobs=done.choice_logprobs,
                choice_tokens=[len(ids) for ids in done.job.choice_ids],
            )
        asked = done.token_logprobs is not None
        return Prediction(
            done.job.request.id,
            self.tokenizer.decode(done.token_ids),
            prompt=done.job.rendered,
            token_ids=done.token_ids,
            token_logprobs=done.token_logprobs,
            token_texts=self.tokenizer.token_texts(done.token_ids) if asked else None,
        )

    def close(self) -> None:
        self.__dict__.pop("model", None)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def checked_mode(mode: str) -> str:
    mode = MODE_ALIASES.get(mode, mode)
    if mode not in MODES:
        raise ConfigError(f"mode={mode}: expected one of {', '.join(MODES)}")
    return mode


def plan_batches(jobs: Sequence[Job], batch_size: int) -> list[Batch]:
    """Requests grouped by image (first-seen order), batches of about ``batch_size``.

    An image's requests stay in one batch when they fit, so its prefix is computed once.
    """
    by_image: dict[str, list[Job]] = {}
    for job in jobs:
        by_image.setdefault(job.image_key, []).append(job)
    batches: list[Batch] = []
    current: Batch = []
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


def split_by_image(batch: Batch) -> list[Batch]:
    """The batch in two halves that share no image."""
    keys = list(dict.fromkeys(job.image_key for job in batch))
    first = set(keys[: (len(keys) + 1) // 2])
    halves = [[j for j in batch if j.image_key in first], [j for j in batch if j.image_key not in first]]
    return [h for h in halves if h]


def merge_loaded(parts: list[Loaded]) -> Loaded:
    images: dict[str, torch.Tensor] = {}
    regions: dict[str, dict[str, torch.Tensor]] = {}
    failed: dict[str, str] = {}
    for part_images, part_regions, part_failed in parts:
        images.update(part_images)
        regions.update(part_regions)
        failed.update(part_failed)
    return images, regions, failed


def load_inputs(batch: Batch, size: int) -> Loaded:
    """Preprocessed images and masks of a batch, and the images that could not be read."""
    images: dict[str, torch.Tensor] = {}
    regions: dict[str, dict[str, torch.Tensor]] = {}
    failed: dict[str, str] = {}
    for job in batch:
        if job.image_key in failed:
            continue
        if job.image_key not in images:
            try:
                images[job.image_key] = preprocess_image(load_rgb(job.image_key), size)
            except DataError as exc:
                failed[job.image_key] = str(exc)
                continue
        masks = regions.setdefault(job.image_key, {})
        for key, region in zip(job.region_keys, job.request.regions, strict=True):
            if key not in masks:
                # C order: pycocotools decodes column-major, and stacking those is slow.
                # cache=False: the copy is all we keep; the request's region lives until
                # generate() ends and would otherwise hold a full-resolution mask as well.
                masks[key] = torch.from_numpy(
                    np.ascontiguousarray(region.to_mask(cache=False), dtype=np.uint8)
                )
    return images, regions, failed


def read_sampling(path: Path) -> SamplingSettings:
    """top-k / top-p of the checkpoint's ``generation_config.json`` (what ``generate`` used)."""
    file = path / "generation_config.json"
    settings = SamplingSettings()
    if file.is_file():
        cfg = json.loads(file.read_text())
        settings.top_k = int(cfg.get("top_k", settings.top_k) or 0)
        settings.top_p = float(cfg.get("top_p", settings.top_p) or 1.0)
    return settings
