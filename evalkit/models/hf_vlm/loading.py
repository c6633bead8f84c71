"""Loading a local transformers image-text-to-text checkpoint: processor, model, what identifies it.

``AutoProcessor`` + ``AutoModelForImageTextToText`` from a local folder only
(``local_files_only=True``: nothing is fetched), ``trust_remote_code`` only when the user passes
it. transformers 5 builds Qwen2-VL-style processors with a video processor that needs
torchvision; evalkit sends images only, so when that is all that fails the same processor class
is built without its video half (:func:`image_only_processor`), and the fingerprint says so.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from evalkit.errors import ConfigError
from evalkit.files import cache_dir
from evalkit.hashing import FileHashCache

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# What else than weights changes outputs: configs, tokenizer, processor, chat template.
CONFIG_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "preprocessor_config.json",
    "processor_config.json",
    "chat_template.jinja",
    "chat_template.json",
)
WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel (image-text-to-text)
    processor: Any  # its ProcessorMixin
    model_type: str  # config.json's model_type: the family
    device: str
    dtype: str
    trust_remote_code: bool
    processor_note: str | None  # set when the processor was built without its video half
    files: list[Path]


def read_model_type(path: Path) -> str:
    """config.json's ``model_type`` (the family), read before any weights are."""
    if not path.is_dir():
        raise ConfigError(f"hf-vlm: path={path} is not a folder (hf-vlm loads local checkpoints only)")
    file = path / "config.json"
    if not file.is_file():
        raise ConfigError(f"hf-vlm: {path} has no config.json: not a transformers checkpoint folder")
    try:
        return str(json.loads(file.read_text())["model_type"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"hf-vlm: {file}: no model_type ({exc})") from exc


def load_model(path: Path, device: str, dtype: str, trust_remote_code: bool) -> LoadedModel:
    """The checkpoint in ``path`` on ``device`` in ``dtype``, in eval mode, tokenizer left-padded."""
    from transformers import AutoModelForImageTextToText

    read_model_type(path)
    if dtype not in DTYPES:
        raise ConfigError(f"hf-vlm: dtype={dtype}: expected one of {', '.join(DTYPES)}")
    if trust_remote_code:
        print(f"evalkit: hf-vlm runs code from {path} (trust_remote_code=true)", file=sys.stderr)
    processor, note = load_processor(path, trust_remote_code)
    try:
        model: Any = AutoModelForImageTextToText.from_pretrained(
            path, dtype=DTYPES[dtype], trust_remote_code=trust_remote_code, local_files_only=True
        )
    except ValueError as exc:  # an architecture without an image-text-to-text class
        raise ConfigError(f"hf-vlm: {path}: not an image-text-to-text model ({exc})") from exc
    model.to(device)
    model.eval()
    if model.config.is_encoder_decoder:
        raise ConfigError(
            f"hf-vlm: {path} is an encoder-decoder model ({model.config.model_type}); hf-vlm runs "
            "decoder-only image-text-to-text models (use the api adapter behind a server for it)"
        )
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"  # generation appends on the right of every row
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    files = [path / n for n in CONFIG_FILES if (path / n).is_file()]
    files += sorted(f for f in path.iterdir() if f.suffix in WEIGHT_SUFFIXES and f.is_file())
    return LoadedModel(
        model,
        processor,
        str(model.config.model_type),
        device,
        dtype,
        trust_remote_code,
        note,
        files,
    )


def load_processor(path: Path, trust_remote_code: bool) -> tuple[Any, str | None]:
    """``AutoProcessor`` of the folder; the image-only form when only torchvision is missing."""
    from transformers import AutoProcessor, ProcessorMixin

    try:
        processor = AutoProcessor.from_pretrained(
            path, trust_remote_code=trust_remote_code, local_files_only=True
        )
    except ImportError as exc:
        if "torchvision" not in str(exc).lower() or "video" not in str(exc).lower():
            raise ConfigError(f"hf-vlm: cannot build the processor of {path}: {exc}") from exc
        processor = image_only_processor(path, trust_remote_code)
        return processor, f"{type(processor).__mro__[1].__name__} without its video processor"
    if not isinstance(processor, ProcessorMixin):
        raise ConfigError(
            f"hf-vlm: {path}: AutoProcessor gave a {type(processor).__name__}, not an image-text "
            "processor (is processor_class missing from processor_config.json?)"
        )
    return processor, None


def processor_class_name(path: Path) -> str:
    for name in ("processor_config.json", "preprocessor_config.json"):
        file = path / name
        if file.is_file():
            found = json.loads(file.read_text()).get("processor_class")
            if found:
                return str(found)
    raise ConfigError(f"hf-vlm: {path}: no processor_class in processor_config.json")


def image_only_processor(path: Path, trust_remote_code: bool) -> Any:
    """The checkpoint's processor class without its ``video_processor`` attribute.

    ``ProcessorMixin`` takes its attributes from ``__init__``'s parameter names, so a subclass
    whose ``__init__`` has none for video builds (and loads) only the image processor and the
    tokenizer; the processor's own ``__call__`` skips video when none is passed.
    """
    import transformers

    name = processor_class_name(path)
    base = getattr(transformers, name, None)
    if base is None:
        raise ConfigError(f"hf-vlm: {path}: processor class {name} is not in transformers")

    def __init__(
        self: Any, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kw: Any
    ) -> None:
        base.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kw)

    image_only: Any = type(f"{name}ImageOnly", (base,), {"__init__": __init__})
    return image_only.from_pretrained(path, trust_remote_code=trust_remote_code, local_files_only=True)


def file_hashes(files: list[Path]) -> dict[str, str]:
    """sha256 of each file by name, cached by (path, size, mtime) in the checkpoint-hash file
    the Osprey adapter keeps too: shards of a 7B model take a while to hash."""
    hashes = FileHashCache(cache_dir() / "checkpoint_hashes.json").hash_files(files)
    return {file.name: digest for file, digest in hashes.items()}
