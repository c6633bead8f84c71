"""Loading (and writing) Osprey checkpoint directories in the official layout.

A directory holds ``config.json`` (``model_type: osprey``), ``tokenizer.json`` and weight
shards: ``model.safetensors`` / ``model-0000N-of-0000M.safetensors`` (with or without an
index) or ``pytorch_model*.bin`` (read with ``weights_only=True``). The CLIP file
``open_clip_pytorch_model.bin`` (path from ``mm_vision_tower`` or ``clip=``) supplies the
ConvNeXt trunk the way the official model sees it:

* trunk tensors come from the checkpoint where present, **except** the layer-scale
  ``gamma`` tensors: transformers 4.31 renamed checkpoint keys containing ``gamma`` to
  ``weight`` at load time, so the official model always ran with the CLIP file's gammas;
* anything the checkpoint lacks comes from the CLIP file; a key found nowhere is an error.

Every parameter must be found (zero missing keys); keys the model does not use (the CLIP
head, the CLIP text tower) are listed once in the load report. Nothing is ever executed
from the checkpoint (no ``trust_remote_code``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from evalkit.errors import ConfigError
from evalkit.files import cache_dir
from evalkit.hashing import FileHashCache
from evalkit.models.osprey.config import OspreyConfig
from evalkit.models.osprey.modeling import OspreyModel, to_internal_key, to_official_key

CLIP_TRUNK_PREFIX = "visual.trunk."
SHOWN_UNUSED_KEYS = 6  # how many unused keys the load summary names
SHOWN_MISSING_KEYS = 8  # how many missing parameters the error names


@dataclass
class LoadReport:
    weight_files: list[Path]
    clip_file: Path | None
    unexpected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(self.weight_files)} weight file(s)"]
        if self.clip_file is not None:
            parts.append(f"CLIP trunk from {self.clip_file.name}")
        if self.unexpected:
            shown = ", ".join(self.unexpected[:SHOWN_UNUSED_KEYS])
            if len(self.unexpected) > SHOWN_UNUSED_KEYS:
                shown += " ..."
            parts.append(f"{len(self.unexpected)} unused key(s): {shown}")
        return "; ".join(parts + self.notes)


def weight_files(directory: Path) -> list[Path]:
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = directory / index_name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [directory / s for s in shards]
    found = sorted(directory.glob("*.safetensors"))
    if not found:
        found = sorted(directory.glob("pytorch_model*.bin"))
    if not found:
        raise ConfigError(f"{directory}: no *.safetensors or pytorch_model*.bin weight files")
    return found


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError(f"{path}: weight file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # a pickle that is not plain tensors is refused, not executed
        raise ConfigError(f"{path}: cannot read weights safely (weights_only=True): {exc}") from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: expected a state dict")
    return obj


def resolve_clip(config: OspreyConfig, directory: Path, clip: str | None) -> Path | None:
    if clip:
        path = Path(clip).expanduser()
        if not path.is_file():
            raise ConfigError(f"clip={clip}: file not found")
        return path
    if config.mm_vision_tower:
        for candidate in (
            Path(config.mm_vision_tower).expanduser(),
            directory / config.mm_vision_tower,
        ):
            if candidate.is_file():
                return candidate
    return None


def assemble_state(
    model: OspreyModel, directory: Path, clip_path: Path | None, round_through_bf16: bool
) -> tuple[dict[str, torch.Tensor], LoadReport]:
    files = weight_files(directory)
    report = LoadReport(files, clip_path)
    wanted = set(model.state_dict())
    state: dict[str, torch.Tensor] = {}
    for file in files:
        for key, tensor in read_tensors(file).items():
            internal = to_internal_key(key)
            if internal is None or internal not in wanted:
                report.unexpected.append(key)
                continue
            if clip_path is not None and internal.startswith("trunk.") and internal.endswith(".gamma"):
                continue  # the official model never used the checkpoint's gammas
            state[internal] = tensor
    if clip_path is not None:
        clip_state = read_tensors(clip_path)
        for key, tensor in clip_state.items():
            if not key.startswith(CLIP_TRUNK_PREFIX):
                report.unexpected.append(f"{clip_path.name}:{key}")
                continue
            internal = "trunk." + key[len(CLIP_TRUNK_PREFIX) :]
            if internal not in wanted:
                report.unexpected.append(f"{clip_path.name}:{key}")
            elif internal not in state:
                state[internal] = tensor
    elif any(k.startswith("trunk.") for k in state):
        report.notes.append("no CLIP file: layer-scale gammas taken from the checkpoint")
    if round_through_bf16:
        # from_pretrained(torch_dtype=bfloat16) held every tensor in bfloat16 before the eval
        # scripts cast the tower to fp16 and the mask extractor to fp32.
        state = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state.items()}
    missing = sorted(wanted - set(state))
    if missing:
        where = "the checkpoint" + (" or the CLIP file" if clip_path else " (no CLIP file given)")
        shown = ", ".join(to_official_key(k) for k in missing[:SHOWN_MISSING_KEYS])
        raise ConfigError(f"{directory}: {len(missing)} parameter(s) found nowhere in {where}: {shown}")
    return state, report


def load_osprey(
    directory: str | Path,
    clip: str | None = None,
    device: str = "cpu",
    vision_dtype: torch.dtype = torch.float32,
    llm_dtype: torch.dtype = torch.float32,
    round_through_bf16: bool = False,
    vision_via: torch.dtype | None = None,
) -> tuple[OspreyModel, OspreyConfig, LoadReport]:
    """Builds the model on the meta device and assigns the checkpoint's tensors."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise ConfigError(f"path={directory}: not a directory")
    config = OspreyConfig.from_file(directory / "config.json")
    clip_path = resolve_clip(config, directory, clip)
    with torch.device("meta"):
        model = OspreyModel(config)
    state, report = assemble_state(model, directory, clip_path, round_through_bf16)
    model.load_state_dict(state, strict=True, assign=True)
    model.init_rotary()  # non-persistent buffers (RoPE inverse frequencies): in no checkpoint
    model.set_dtypes(vision_dtype, llm_dtype, vision_via)
    model.to(device)
    model.eval()
    return model, config, report


def save_official(
    model: OspreyModel,
    directory: str | Path,
    tokenizer_json: str | Path | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Writes ``config.json`` + ``model.safetensors`` (official key names) [+ tokenizer]."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
    tensors = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
        for k, v in model.official_state_dict().items()
    }
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer_json is not None:
        (directory / "tokenizer.json").write_bytes(Path(tokenizer_json).read_bytes())
    return directory


# ---------------------------------------------------------------------- fingerprints
def _hash_cache_path() -> Path:
    return cache_dir() / "checkpoint_hashes.json"


def file_hashes(files: list[Path]) -> dict[str, str]:
    """sha256 of each file by name, cached by (path, size, mtime): 7B shards take a while."""
    # A fresh cache per call re-reads the file: another process may have hashed since.
    hashes = FileHashCache(_hash_cache_path()).hash_files(files)
    return {file.name: digest for file, digest in hashes.items()}
