"""The Osprey configuration: an official ``config.json`` (LLaMA keys + ``mm_*`` keys).

The official checkpoints hard-code the vision side (ConvNeXt-Large at 512², a 1024-wide mask
extractor with 112² position masks). evalkit reads those sizes from an optional
``evalkit_vision`` block so that tiny models (tests, the bundled ``osprey-tiny``) use the
same code; an official ``config.json`` has no such block and gets the official sizes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.errors import ConfigError

# The trunk's four outputs res2..res5 have these strides; the image tokens are res4's grid
# (the official CLIP tower returns the stride-16 map to the projector, osprey_arch.py
# ``encode_images``), and the input side must divide by the coarsest stride.
LEVEL_STRIDES = (4, 8, 16, 32)
IMAGE_TOKEN_LEVEL = 2  # res4

# Keys of config.json that belong to Osprey rather than to the LLaMA decoder.
OSPREY_ONLY_KEYS = {
    "architectures",
    "model_type",
    "mm_vision_tower",
    "mm_projector_type",
    "mm_hidden_size",
    "mm_use_im_start_end",
    "mm_use_im_patch_token",
    "mm_vision_select_layer",
    "mm_vision_select_feature",
    "tune_mm_mlp_adapter",
    "freeze_mm_mlp_adapter",
    "use_mm_proj",
    "image_aspect_ratio",
    "image_grid_pinpoints",
    "evalkit_vision",
    "transformers_version",
}


@dataclass(frozen=True)
class VisionSpec:
    """ConvNeXt trunk and mask-extractor sizes (defaults: the official Osprey-7B)."""

    depths: tuple[int, ...] = (3, 3, 27, 3)
    dims: tuple[int, ...] = (192, 384, 768, 1536)
    image_size: int = 512  # shortest-edge resize target and the square input size
    mask_shape: int = 112  # the position token's soft mask is mask_shape x mask_shape
    mask_embed_dim: int = 1024  # width of the per-level projections res2..res5

    def to_json(self) -> dict[str, Any]:
        return {
            "depths": list(self.depths),
            "dims": list(self.dims),
            "image_size": self.image_size,
            "mask_shape": self.mask_shape,
            "mask_embed_dim": self.mask_embed_dim,
        }

    @property
    def image_tokens(self) -> int:
        side = self.image_size // LEVEL_STRIDES[IMAGE_TOKEN_LEVEL]
        return side * side


@dataclass
class OspreyConfig:
    llama: dict[str, Any]  # everything the LLaMA decoder needs (LlamaConfig kwargs)
    vision: VisionSpec
    mm_hidden_size: int
    mm_projector_type: str = "mlp2x_gelu"
    mm_vision_tower: str | None = None

    @property
    def hidden_size(self) -> int:
        return int(self.llama["hidden_size"])

    @staticmethod
    def from_dict(raw: dict[str, Any], source: str = "config.json") -> OspreyConfig:
        model_type = raw.get("model_type")
        if model_type != "osprey":
            raise ConfigError(f"{source}: model_type is {model_type!r}, expected 'osprey'")
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
            if key not in raw:
                raise ConfigError(f"{source}: missing LLaMA key {key!r}")
        vision_raw = raw.get("evalkit_vision") or {}
        vision = VisionSpec(
            depths=tuple(vision_raw.get("depths", VisionSpec.depths)),
            dims=tuple(vision_raw.get("dims", VisionSpec.dims)),
            image_size=int(vision_raw.get("image_size", VisionSpec.image_size)),
            mask_shape=int(vision_raw.get("mask_shape", VisionSpec.mask_shape)),
            mask_embed_dim=int(vision_raw.get("mask_embed_dim", VisionSpec.mask_embed_dim)),
        )
        if len(vision.depths) != 4 or len(vision.dims) != 4:
            raise ConfigError(f"{source}: evalkit_vision needs 4 depths and 4 dims")
        if vision.image_size % LEVEL_STRIDES[-1]:
            raise ConfigError(
                f"{source}: image_size {vision.image_size} is not a multiple of {LEVEL_STRIDES[-1]}"
            )
        # The projector reads res4; without the key, the official trunk's res4 width.
        mm_hidden = int(raw.get("mm_hidden_size", VisionSpec.dims[IMAGE_TOKEN_LEVEL]))
        if mm_hidden != vision.dims[IMAGE_TOKEN_LEVEL]:
            raise ConfigError(
                f"{source}: mm_hidden_size {mm_hidden} must equal the res4 width "
                f"{vision.dims[IMAGE_TOKEN_LEVEL]}"
            )
        projector = str(raw.get("mm_projector_type", "linear"))
        if projector != "linear" and not re.fullmatch(r"mlp(\d+)x_gelu", projector):
            raise ConfigError(f"{source}: mm_projector_type {projector!r} is not supported")
        if raw.get("mm_use_im_start_end"):
            raise ConfigError(f"{source}: mm_use_im_start_end=true is not an Osprey release setting")
        llama = {k: v for k, v in raw.items() if k not in OSPREY_ONLY_KEYS}
        return OspreyConfig(
            llama=llama,
            vision=vision,
            mm_hidden_size=mm_hidden,
            mm_projector_type=projector,
            mm_vision_tower=raw.get("mm_vision_tower"),
        )

    @staticmethod
    def from_file(path: str | Path) -> OspreyConfig:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the model config: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        return OspreyConfig.from_dict(raw, str(path))

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.llama)
        out.update(
            {
                "architectures": ["OspreyLlamaForCausalLM"],
                "model_type": "osprey",
                "mm_hidden_size": self.mm_hidden_size,
                "mm_projector_type": self.mm_projector_type,
                "mm_use_im_start_end": False,  # official code reads it; from_dict refuses true
                "evalkit_vision": self.vision.to_json(),
            }
        )
        if self.mm_vision_tower is not None:
            out["mm_vision_tower"] = self.mm_vision_tower
        return out


def tiny_config(
    vocab_size: int,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    intermediate: int = 128,
    vision: VisionSpec | None = None,
) -> OspreyConfig:
    """A small Osprey of the official shape, for tests and the bundled model."""
    vision = vision or VisionSpec(
        depths=(1, 1, 1, 1), dims=(16, 24, 32, 48), image_size=64, mask_shape=16, mask_embed_dim=32
    )
    raw = {
        "model_type": "osprey",
        "hidden_size": hidden_size,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "vocab_size": vocab_size,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "mm_hidden_size": vision.dims[IMAGE_TOKEN_LEVEL],
        "mm_projector_type": "mlp2x_gelu",
        "evalkit_vision": vision.to_json(),
    }
    return OspreyConfig.from_dict(raw, "tiny config")
