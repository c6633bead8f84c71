"""The ``hf-vlm`` adapter: requests in, predictions out (model arguments in ``__init__.py``)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from evalkit.errors import ConfigError, DataError, EvalkitError
from evalkit.images import load_rgb
from evalkit.models import Adapter
from evalkit.models.hf_vlm.encodings import ENCODINGS, check_regions, encode, encoding_kinds
from evalkit.models.hf_vlm.generation import Finished, Job, generate_batch, job_for, rank_job
from evalkit.models.hf_vlm.loading import LoadedModel, file_hashes, load_model, read_model_type
from evalkit.models.region_text import TextFormat, format_for_model, no_format_error, text_format
from evalkit.records import Prediction, Request
from evalkit.regions import RegionError

DEFAULT_BATCH_SIZE = {"cpu": 8, "cuda": 32}
TRUE_WORDS = {"1", "true", "yes"}
FALSE_WORDS = {"0", "false", "no"}


def parse_bool(name: str, value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    if value.lower() in TRUE_WORDS | FALSE_WORDS:
        return value.lower() in TRUE_WORDS
    raise ConfigError(f"hf-vlm: {name}={value}: expected true or false")


def choose_encoding(region: str, coords: str | None, model_type: str) -> tuple[str, TextFormat | None]:
    """(encoding, text format): ``auto`` is the family's text format when it has one, else
    Set-of-Marks; ``text`` without a known format is one line listing the families."""
    if region not in (*ENCODINGS, "auto"):
        raise ConfigError(f"hf-vlm: region={region}: expected one of auto, {', '.join(ENCODINGS)}")
    if coords is not None and region not in ("text", "auto"):
        raise ConfigError("hf-vlm: coords= applies to region=text (or auto) only")
    name = coords or format_for_model(model_type)
    if region == "auto":
        region = "text" if name is not None else "som"
    if region != "text":
        return region, None
    if name is None:
        raise no_format_error("hf-vlm", model_type)
    return "text", text_format(name, "hf-vlm")


class HfVlmAdapter(Adapter):
    name = "hf-vlm"
    serves = frozenset({"generate", "rank", "token_logprobs"})

    def __init__(
        self,
        path: str,
        region: str = "auto",
        coords: str | None = None,
        margin: str | float = 0.0,
        dtype: str | None = None,
        device: str | None = None,
        batch_size: str | int | None = None,
        trust_remote_code: str | bool = False,
    ):
        self.path = Path(path).expanduser()
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device == "cuda" and "LOCAL_RANK" in os.environ:  # under torchrun each rank its GPU
            device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("hf-vlm: device=cuda but no CUDA device is available")
        dtype = dtype or ("bfloat16" if device.startswith("cuda") else "float32")
        try:
            self.margin = float(margin)
            self.batch_size = int(batch_size) if batch_size else DEFAULT_BATCH_SIZE[device.split(":")[0]]
        except ValueError as exc:
            raise ConfigError(f"hf-vlm: margin and batch_size are numbers: {exc}") from exc
        if self.margin < 0 or self.batch_size < 1:
            raise ConfigError("hf-vlm: margin must be >= 0 and batch_size >= 1")
        # the encoding first: region=text on a family without a format fails before any weights
        self.encoding, self.text = choose_encoding(region, coords, read_model_type(self.path))
        self.loaded: LoadedModel = load_model(
            self.path, device, dtype, parse_bool("trust_remote_code", trust_remote_code)
        )
        # per instance: what the engine converts to before this adapter sees a region
        self.region_kinds = encoding_kinds(self.encoding, self.text)  # type: ignore[misc]
        self.fingerprint_cache: dict[str, Any] | None = None

    # ------------------------------------------------------------------ Adapter API
    def fingerprint(self) -> dict[str, Any]:
        if self.fingerprint_cache is None:
            import transformers

            fp: dict[str, Any] = {
                "checkpoint": file_hashes(self.loaded.files),
                "model_type": self.loaded.model_type,
                "dtype": self.loaded.dtype,
                "transformers": transformers.__version__,
                "region": self.encoding,
                "trust_remote_code": self.loaded.trust_remote_code,
            }
            if self.text is not None:
                fp["coords"] = self.text.name
            if self.encoding == "crop":
                fp["margin"] = self.margin
            if self.loaded.processor_note is not None:
                fp["processor"] = self.loaded.processor_note
            self.fingerprint_cache = fp
        return self.fingerprint_cache

    def generate(self, requests: Sequence[Request]) -> Iterator[Prediction]:
        groups: dict[tuple[bool, bool, bool, bool], list[Job]] = {}
        for request in requests:
            try:
                job = self.make_job(request)
            except (DataError, RegionError) as exc:  # bad input: reported per request
                yield Prediction(request.id, "", error=str(exc))
                continue
            if job.sampled:
                yield from self.run([job])
                continue
            group = groups.setdefault(job.batch_key(), [])
            group.append(job)
            if len(group) >= self.batch_size:
                yield from self.run(group)
                group.clear()
        for group in groups.values():
            if group:
                yield from self.run(group)

    def close(self) -> None:
        self.__dict__.pop("loaded", None)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ pieces
    def make_job(self, request: Request) -> Job:
        image = None
        if request.image_path is not None:
            image = load_rgb(request.image_path, request.id)
            try:
                check_regions(request.regions, image)
            except RegionError as exc:
                raise DataError(request.image_path, str(exc), request.id) from exc
        processor = self.loaded.processor
        image_processor = getattr(processor, "image_processor", None)
        try:
            encoded = encode(request, image, self.encoding, self.margin, self.text, image_processor)
        except RegionError as exc:
            raise DataError(request.image_path or "<no image>", f"region: {exc}", request.id) from exc
        return job_for(request, encoded, processor)

    def run(self, jobs: list[Job]) -> Iterator[Prediction]:
        model, processor = self.loaded.model, self.loaded.processor
        if jobs[0].request.choices is not None:
            for job in jobs:
                yield self.prediction(rank_job(model, processor, job, self.batch_size))
            return
        try:
            finished = generate_batch(model, processor, jobs)
        except (ValueError, RuntimeError) as exc:  # e.g. a prompt longer than the model takes
            raise EvalkitError(
                f"hf-vlm: generation failed for requests {jobs[0].request.id}...: {exc}"
            ) from exc
        for done in finished:
            yield self.prediction(done)

    def prediction(self, done: Finished) -> Prediction:
        job = done.job
        meta = dict(job.encoded.meta)
        if done.choice_logprobs is not None:
            return Prediction(
                job.request.id,
                "",
                prompt=job.rendered,
                meta=meta,
                choice_logprobs=done.choice_logprobs,
                choice_tokens=done.choice_tokens,
            )
        text = self.loaded.processor.tokenizer.decode(done.token_ids, skip_special_tokens=True)
        return Prediction(
            job.request.id,
            text,
            prompt=job.rendered,
            token_ids=done.token_ids,
            meta=meta,
            token_logprobs=done.token_logprobs,
        )
