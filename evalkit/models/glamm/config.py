"""The GLaMM configuration: an official ``config.json`` (LLaMA keys + LLaVA/GLaMM keys).

The official checkpoints (``MBZUAI/GLaMM-*``) fix their vision side in code: a CLIP
ViT-L/14-336 global image encoder loaded by name (``vision_tower``), SAM ViT-H as the
grounding encoder (``build_sam_vit_h``), and a region encoder whose sizes are literals in
``model/layers.py`` (groundingLMM e74865f). evalkit reads those sizes from an optional
``evalkit_vision`` block so that tiny models (tests, ``glamm-tiny``) run the same code; an
official ``config.json`` has no such block and gets the official sizes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evalkit.errors import ConfigError

# Keys of config.json that belong to LLaVA / GLaMM rather than to the LLaMA decoder (the
# official configs carry several spellings of the same settings, all ignored by LlamaConfig).
GLAMM_ONLY_KEYS = {
    "architectures",
    "model_type",
    "mm_vision_tower",
    "vision_tower",
    "vision_module",
    "mm_vision_module",
    "mm_hidden_size",
    "mm_vision_select_layer",
    "mm_vision_select_feature",
    "select_feature_type",
    "mm_use_im_start_end",
    "mm_use_image_start_end",
    "mm_use_im_patch_token",
    "use_image_patch_token",
    "tune_mm_mlp_adapter",
    "freeze_mm_mlp_adapter",
    "tune_mlp_adapter",
    "freeze_mlp_adapter",
    "pretrain_mm_mlp_adapter",
    "use_mm_proj",
    "image_aspect_ratio",
    "image_aspect",
    "image_grid_pinpoints",
    "image_grid_points",
    "with_region",
    "num_level_reg_features",
    "num_reg_features",
    "bbox_token_idx",
    "seg_token_idx",
    "bop_token_idx",
    "eop_token_idx",
    "out_dim",
    "train_mask_decoder",
    "vision_pretrained",
    "evalkit_vision",
    "transformers_version",
    "_name_or_path",
}
OFFICIAL_CLIP = "openai/clip-vit-large-patch14-336"


@dataclass(frozen=True)
class ClipSpec:
    """The global image encoder (``CLIPVisionConfig`` keys; default ViT-L/14-336)."""

    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    image_size: int = 336
    patch_size: int = 14
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def image_tokens(self) -> int:
        """Patch tokens the decoder reads (``select_feature='patch'`` drops CLS)."""
        return self.grid * self.grid


@dataclass(frozen=True)
class SamSpec:
    """The grounding encoder (default SAM ViT-H, ``build_sam_vit_h``)."""

    image_size: int = 1024  # ResizeLongestSide target and the padded square
    patch_size: int = 16
    embed_dim: int = 1280
    depth: int = 32
    num_heads: int = 16
    global_attn_indexes: tuple[int, ...] = (7, 15, 23, 31)
    window_size: int = 14
    prompt_dim: int = 256  # out_chans of the neck, width of prompts and mask decoder
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    mask_in_chans: int = 16
    num_multimask_outputs: int = 3
    iou_head_hidden_dim: int = 256

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


@dataclass(frozen=True)
class RegionSpec:
    """The region encoder (``MLVLROIQueryModule``; literals of ``model/layers.py``)."""

    num_levels: int = 4  # num_level_reg_features: CLIP layers pooled
    num_fuse: int = 5  # MLVLFuseModule's fuse convolutions
    gn_groups: int = 64  # GroupNorm groups of each fuse convolution
    roi_size: int = 14  # RoIAlign output_size (sampling_ratio 2, aligned)
    sampling_ratio: int = 2
    # Normalised boxes are multiplied by 224 before RoIAlign although the CLIP view is 336
    # pixels wide (MlvlRoIExtractor.forward, copied from GPT4RoI's 224 input): the official
    # model pools the top-left 2/3 of its feature maps for a box spanning the image.
    roi_box_scale: float = 224.0
    query_dim: int = 1024  # flatten_linear / pos_embedd output width
    pos_hidden: int = 256  # pos_embedd's first Linear(4, 256)


@dataclass(frozen=True)
class VisionSpec:
    clip: ClipSpec = field(default_factory=ClipSpec)
    sam: SamSpec = field(default_factory=SamSpec)
    region: RegionSpec = field(default_factory=RegionSpec)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["sam"]["global_attn_indexes"] = list(self.sam.global_attn_indexes)
        return out

    @staticmethod
    def from_json(raw: dict[str, Any], source: str) -> VisionSpec:
        def build(kind: Any, key: str) -> Any:
            values = dict(raw.get(key) or {})
            known = set(kind.__dataclass_fields__)
            unknown = sorted(set(values) - known)
            if unknown:
                raise ConfigError(f"{source}: evalkit_vision.{key} has unknown keys {unknown}")
            if "global_attn_indexes" in values:
                values["global_attn_indexes"] = tuple(values["global_attn_indexes"])
            return kind(**values)

        unknown = sorted(set(raw) - {"clip", "sam", "region"})
        if unknown:
            raise ConfigError(f"{source}: evalkit_vision has unknown keys {unknown}")
        return VisionSpec(build(ClipSpec, "clip"), build(SamSpec, "sam"), build(RegionSpec, "region"))


@dataclass
class GLaMMConfig:
    llama: dict[str, Any]  # everything the LLaMA decoder needs (LlamaConfig kwargs)
    vision: VisionSpec
    mm_hidden_size: int = 1024
    mm_vision_select_layer: int = -2
    out_dim: int = 256  # text_hidden_fcs output: the [SEG] prompt's width
    with_region: bool = True
    vision_tower: str | None = OFFICIAL_CLIP
    extra: dict[str, Any] = field(default_factory=dict)  # other LLaVA/GLaMM keys, written back

    @property
    def hidden_size(self) -> int:
        return int(self.llama["hidden_size"])

    @property
    def vocab_size(self) -> int:
        return int(self.llama["vocab_size"])

    @staticmethod
    def from_dict(raw: dict[str, Any], source: str = "config.json") -> GLaMMConfig:
        architectures = raw.get("architectures") or []
        if raw.get("model_type") not in ("llava", "glamm") or (
            architectures and "GLaMMForCausalLM" not in architectures
        ):
            raise ConfigError(
                f"{source}: model_type {raw.get('model_type')!r} / architectures {architectures} "
                "is not a GLaMM checkpoint (expected model_type 'llava', GLaMMForCausalLM)"
            )
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
            if key not in raw:
                raise ConfigError(f"{source}: missing LLaMA key {key!r}")
        vision = VisionSpec.from_json(raw.get("evalkit_vision") or {}, source)
        mm_hidden = int(raw.get("mm_hidden_size", vision.clip.hidden_size))
        if mm_hidden != vision.clip.hidden_size:
            raise ConfigError(
                f"{source}: mm_hidden_size {mm_hidden} is not the CLIP width {vision.clip.hidden_size}"
            )
        out_dim = int(raw.get("out_dim", vision.sam.prompt_dim))
        if out_dim != vision.sam.prompt_dim:
            raise ConfigError(
                f"{source}: out_dim {out_dim} is not SAM's prompt width {vision.sam.prompt_dim}"
            )
        if raw.get("mm_vision_select_feature", "patch") != "patch":
            raise ConfigError(f"{source}: only mm_vision_select_feature 'patch' is a GLaMM setting")
        if int(raw.get("num_level_reg_features", vision.region.num_levels)) != vision.region.num_levels:
            raise ConfigError(f"{source}: num_level_reg_features must be {vision.region.num_levels}")
        llama = {k: v for k, v in raw.items() if k not in GLAMM_ONLY_KEYS}
        extra = {k: v for k, v in raw.items() if k in GLAMM_ONLY_KEYS and k != "evalkit_vision"}
        tower = raw.get("mm_vision_tower") or raw.get("vision_tower")
        return GLaMMConfig(
            llama=llama,
            vision=vision,
            mm_hidden_size=mm_hidden,
            mm_vision_select_layer=int(raw.get("mm_vision_select_layer", -2)),
            out_dim=out_dim,
            with_region=bool(raw.get("with_region", True)),
            vision_tower=str(tower) if tower else None,
            extra=extra,
        )

    @staticmethod
    def from_file(path: str | Path) -> GLaMMConfig:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the model config: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        return GLaMMConfig.from_dict(raw, str(path))

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.llama)
        out.update(self.extra)
        out.update(
            {
                "architectures": ["GLaMMForCausalLM"],
                "model_type": "llava",
                "mm_hidden_size": self.mm_hidden_size,
                "mm_vision_select_layer": self.mm_vision_select_layer,
                "mm_vision_select_feature": "patch",
                "mm_use_im_start_end": True,
                "out_dim": self.out_dim,
                "with_region": self.with_region,
                "num_level_reg_features": self.vision.region.num_levels,
                "evalkit_vision": self.vision.to_json(),
            }
        )
        if self.vision_tower is not None:
            out["vision_tower"] = out["mm_vision_tower"] = self.vision_tower
        return out


def tiny_config(
    vocab_size: int,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    intermediate: int = 128,
    vision: VisionSpec | None = None,
) -> GLaMMConfig:
    """A small GLaMM of the official shape, for tests and the bundled model."""
    vision = vision or TEST_VISION
    raw = {
        "architectures": ["GLaMMForCausalLM"],
        "model_type": "llava",
        "hidden_size": hidden_size,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "vocab_size": vocab_size,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "mm_hidden_size": vision.clip.hidden_size,
        "out_dim": vision.sam.prompt_dim,
        "vision_tower": None,
        "evalkit_vision": vision.to_json(),
    }
    return GLaMMConfig.from_dict(raw, "tiny config")


# Ten CLIP layers are the fewest that give four region levels: the official slice
# hidden_states[-2::-3][::-1][-4:] reads layers L-11, L-8, L-5 and L-2 of L + 1 states.
TEST_VISION = VisionSpec(
    clip=ClipSpec(
        hidden_size=16, intermediate_size=32, num_hidden_layers=10, num_attention_heads=2, image_size=56
    ),
    sam=SamSpec(
        image_size=64,
        embed_dim=16,
        depth=2,
        num_heads=2,
        global_attn_indexes=(1,),
        window_size=3,
        prompt_dim=16,
        decoder_heads=2,
        decoder_mlp_dim=32,
        mask_in_chans=4,
        iou_head_hidden_dim=16,
    ),
    region=RegionSpec(gn_groups=4, roi_size=4, roi_box_scale=37.0, query_dim=24, pos_hidden=16),
)
