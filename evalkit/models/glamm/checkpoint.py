"""Loading (and writing) GLaMM checkpoint directories in the official layout.

A directory (``MBZUAI/GLaMM-GCG`` and its siblings) holds ``config.json``
(``GLaMMForCausalLM``), the tokenizer files and weight shards (``*.safetensors`` or
``pytorch_model*.bin``, with or without an index; ``.bin`` read with ``weights_only=True``):
the LLaMA decoder, ``mm_projector``, the region encoder, SAM (``grounding_encoder``) and
``text_hidden_fcs`` under their official names.

The CLIP tower: the official scripts build it from ``config.vision_tower``, a hub id
(``openai/clip-vit-large-patch14-336``, ``initialize_vision_modules``), whatever the
checkpoint holds. evalkit never contacts a hub: ``clip=DIR`` names a local CLIP folder
(``config.json`` + weights with ``vision_model.*`` keys; a CLIP file alone also works), or
``vision_tower`` itself when it is a local folder (absolute or next to the checkpoint). Without
either, the tower's keys must be in the checkpoint
(``model.vision_tower.vision_tower.vision_model.*``, as a tiny evalkit checkpoint has them),
and the load report says it used them.

Every parameter must be found (zero missing keys; a wrong layout fails in one line naming the
first missing keys), and every checkpoint key must be used or listed as unused in the report.
Nothing is ever executed from the checkpoint (no ``trust_remote_code``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from evalkit.errors import ConfigError
from evalkit.models.glamm.config import GLaMMConfig
from evalkit.models.glamm.modeling import CLIP_OWN_PREFIX, GLaMMModel, to_internal_key, to_official_key
from evalkit.models.osprey.checkpoint import read_tensors, weight_files

SHOWN_UNUSED_KEYS = 6  # how many unused keys the load summary names
SHOWN_MISSING_KEYS = 8  # how many missing parameters the error names
# CLIP config keys that must agree with the GLaMM config's tower.
CLIP_SHAPE_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "image_size",
    "patch_size",
)


@dataclass
class LoadReport:
    weight_files: list[Path]
    clip_files: list[Path]  # the CLIP folder's files read, if any
    unexpected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(self.weight_files)} weight file(s)"]
        if self.clip_files:
            parts.append(f"CLIP tower from {self.clip_files[0].parent}")
        if self.unexpected:
            shown = ", ".join(self.unexpected[:SHOWN_UNUSED_KEYS])
            if len(self.unexpected) > SHOWN_UNUSED_KEYS:
                shown += " ..."
            parts.append(f"{len(self.unexpected)} unused key(s): {shown}")
        return "; ".join(parts + self.notes)


def resolve_clip(config: GLaMMConfig, directory: Path, clip: str | None) -> Path | None:
    """The CLIP folder or file to read the tower from, or None (the checkpoint's own copy)."""
    if clip:
        path = Path(clip).expanduser()
        if not path.exists():
            raise ConfigError(f"clip={clip}: not found (a local CLIP folder or weights file)")
        return path
    if config.vision_tower:
        for candidate in (Path(config.vision_tower).expanduser(), directory / config.vision_tower):
            if candidate.exists():
                return candidate
    return None


def check_clip_config(config: GLaMMConfig, folder: Path) -> None:
    file = folder / "config.json"
    if not file.is_file():
        return
    raw = json.loads(file.read_text())
    vision = raw.get("vision_config", raw)
    spec = config.vision.clip
    for key in CLIP_SHAPE_KEYS:
        if key in vision and int(vision[key]) != int(getattr(spec, key)):
            raise ConfigError(
                f"{file}: CLIP {key} is {vision[key]}, the GLaMM config expects {getattr(spec, key)}"
            )


def clip_tensors(config: GLaMMConfig, path: Path) -> tuple[list[Path], dict[str, torch.Tensor]]:
    if path.is_dir():
        check_clip_config(config, path)
        files = weight_files(path)
    else:
        files = [path]
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(read_tensors(file))
    return files, state


def assemble_state(
    model: GLaMMModel, directory: Path, clip_path: Path | None
) -> tuple[dict[str, torch.Tensor], LoadReport]:
    files = weight_files(directory)
    report = LoadReport(files, [])
    wanted = set(model.state_dict())
    state: dict[str, torch.Tensor] = {}
    tower_in_checkpoint: dict[str, torch.Tensor] = {}
    for file in files:
        for key, tensor in read_tensors(file).items():
            internal = to_internal_key(key)
            if internal is None or internal not in wanted:
                report.unexpected.append(key)
            elif internal.startswith("clip."):
                tower_in_checkpoint[internal] = tensor
            else:
                state[internal] = tensor
    if clip_path is not None:
        report.clip_files, clip_state = clip_tensors(model.config, clip_path)
        for key, tensor in clip_state.items():
            internal = "clip." + key[len(CLIP_OWN_PREFIX) :] if key.startswith(CLIP_OWN_PREFIX) else None
            if internal is None or internal not in wanted:
                report.unexpected.append(f"{clip_path.name}:{key}")
            else:
                state[internal] = tensor
        if tower_in_checkpoint:
            # The official scripts replace the checkpoint's copy with config.vision_tower's.
            report.notes.append(f"the checkpoint's own CLIP tower ({len(tower_in_checkpoint)} keys) not used")
    elif tower_in_checkpoint:
        state.update(tower_in_checkpoint)
        report.notes.append("CLIP tower from the checkpoint's own copy (no clip= folder)")
    missing = sorted(wanted - set(state))
    if missing:
        hint = ""
        if any(k.startswith("clip.") for k in missing) and clip_path is None:
            tower = model.config.vision_tower or "the tower"
            hint = f" (the CLIP tower: give clip=DIR, a local copy of {tower})"
        shown = ", ".join(to_official_key(k) for k in missing[:SHOWN_MISSING_KEYS])
        raise ConfigError(f"{directory}: {len(missing)} parameter(s) not in the checkpoint{hint}: {shown}")
    return state, report


def load_glamm(
    directory: str | Path,
    clip: str | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[GLaMMModel, GLaMMConfig, LoadReport]:
    """Builds the model on the meta device and assigns the checkpoint's tensors."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise ConfigError(f"path={directory}: not a directory")
    config = GLaMMConfig.from_file(directory / "config.json")
    clip_path = resolve_clip(config, directory, clip)
    with torch.device("meta"):
        model = GLaMMModel(config)
    state, report = assemble_state(model, directory, clip_path)
    model.load_state_dict(state, strict=True, assign=True)
    model.to(dtype)
    model.rebuild_buffers()
    model.to(device)
    model.eval()
    return model, config, report


def save_official(
    model: GLaMMModel,
    directory: str | Path,
    tokenizer_dir: str | Path | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Writes ``config.json`` + ``model.safetensors`` (official key names, the CLIP tower
    included) [+ the tokenizer files of ``tokenizer_dir``]."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
    tensors = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
        for k, v in model.official_state_dict().items()
    }
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer_dir is not None:
        for name in (
            "tokenizer.json",
            "tokenizer_config.json",
            "added_tokens.json",
            "special_tokens_map.json",
        ):
            source = Path(tokenizer_dir) / name
            if source.is_file():
                (directory / name).write_bytes(source.read_bytes())
    return directory
