"""Official-layout GLaMM checkpoints load with zero missing / unexpected keys and the same
outputs; a wrong layout fails in one line naming the first missing keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from evalkit.errors import ConfigError
from evalkit.models.glamm.checkpoint import load_glamm
from evalkit.models.glamm.modeling import CLIP_PREFIX, GLaMMModel
from tests.glamm_helpers import tiny_model, tiny_tokenizer, write_checkpoint

TOWER = CLIP_PREFIX + "vision_model."
# One key of each part, official names (groundingLMM e74865f module paths).
OFFICIAL_KEYS = (
    "model.embed_tokens.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.norm.weight",
    "lm_head.weight",
    "model.mm_projector.0.weight",
    "model.mm_projector.2.weight",
    "model.region_encoder.mlvl_fuse.input_conv.0.weight",
    "model.region_encoder.mlvl_fuse.fuse_convs.4.conv.weight",
    "model.region_encoder.mlvl_fuse.fuse_convs.4.gn.weight",
    "model.region_encoder.roi_align.pconvs.3.weight",
    "model.region_encoder.roi_align.pos_embedd.0.weight",
    "model.region_encoder.roi_align.pos_embedd.5.weight",
    "model.region_encoder.roi_align.updims.weight",
    "model.region_encoder.roi_align.flatten_linear.weight",
    "model.grounding_encoder.image_encoder.patch_embed.proj.weight",
    "model.grounding_encoder.image_encoder.blocks.1.attn.rel_pos_h",
    "model.grounding_encoder.image_encoder.neck.3.weight",
    "model.grounding_encoder.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
    "model.grounding_encoder.prompt_encoder.point_embeddings.3.weight",
    "model.grounding_encoder.prompt_encoder.mask_downscaling.6.weight",
    "model.grounding_encoder.prompt_encoder.no_mask_embed.weight",
    "model.grounding_encoder.mask_decoder.transformer.layers.1.cross_attn_image_to_token.out_proj.weight",
    "model.grounding_encoder.mask_decoder.transformer.final_attn_token_to_image.q_proj.weight",
    "model.grounding_encoder.mask_decoder.output_upscaling.3.weight",
    "model.grounding_encoder.mask_decoder.output_hypernetworks_mlps.3.layers.2.weight",
    "model.grounding_encoder.mask_decoder.iou_prediction_head.layers.2.weight",
    "model.text_hidden_fcs.0.0.weight",
    "model.text_hidden_fcs.0.2.weight",
    TOWER + "embeddings.class_embedding",
    TOWER + "encoder.layers.9.mlp.fc2.weight",
    TOWER + "post_layernorm.weight",
)


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to the last bits: tensors read from a file are laid out in memory differently
    from the ones they were saved from, and CPU kernels sum in alignment-dependent orders."""
    return torch.allclose(a, b, rtol=0, atol=1e-5)


def outputs(model: GLaMMModel) -> torch.Tensor:
    """Decoder hidden states + logits of a fixed prompt with a box, and mask logits."""
    torch.manual_seed(5)
    size = model.config.vision.clip.image_size
    ids = torch.tensor([1, 5, -200, 7, 162, 9, 11])
    hidden, logits = model(ids, torch.randn(3, size, size), torch.tensor([[0.1, 0.1, 0.7, 0.8]]), 162)
    sam = model.config.vision.sam.image_size
    masks = model.masks(hidden[-2:], model.encode_sam(torch.randn(1, 3, sam, sam)), (sam, sam // 2), (30, 15))
    return torch.cat([hidden.flatten(), logits.flatten(), masks.flatten()])


@pytest.fixture(scope="module")
def reference() -> GLaMMModel:
    return tiny_model(tiny_tokenizer(), seed=3)


def test_the_official_key_names(reference: GLaMMModel) -> None:
    keys = set(reference.official_state_dict())
    assert set(OFFICIAL_KEYS) <= keys
    assert all(k.startswith(("model.", "lm_head.")) for k in keys)


def test_official_safetensors_folder_loads_with_zero_unused_keys(tmp_path: Path) -> None:
    model, _ = write_checkpoint(tmp_path, seed=3)
    loaded, config, report = load_glamm(tmp_path)
    assert report.unexpected == [] and report.clip_files == []
    assert report.notes == ["CLIP tower from the checkpoint's own copy (no clip= folder)"]
    assert config.vocab_size == model.config.vocab_size
    with torch.no_grad():
        assert same(outputs(loaded), outputs(model))


def write_bin_shards(model: GLaMMModel, directory: Path, drop_tower: bool) -> None:
    """Two ``pytorch_model-0000N-of-00002.bin`` shards + index, official key names."""
    state = {
        k: v.clone()
        for k, v in model.official_state_dict().items()
        if not (drop_tower and k.startswith(TOWER))
    }
    keys = sorted(state)
    weight_map = {}
    for n, part in enumerate((keys[::2], keys[1::2]), start=1):
        name = f"pytorch_model-0000{n}-of-00002.bin"
        torch.save({k: state[k] for k in part}, directory / name)
        weight_map.update(dict.fromkeys(part, name))
    (directory / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    config = model.config.to_dict()
    config["vision_tower"] = config["mm_vision_tower"] = "openai/clip-vit-large-patch14-336"
    (directory / "config.json").write_text(json.dumps(config))


def write_clip_folder(model: GLaMMModel, folder: Path, **config_changes: int) -> None:
    """A CLIPModel folder as the hub has it: vision and text towers, projections."""
    folder.mkdir()
    spec = model.config.vision.clip
    vision = {k: getattr(spec, k) for k in ("hidden_size", "num_hidden_layers", "image_size", "patch_size")}
    vision.update(config_changes)
    (folder / "config.json").write_text(json.dumps({"model_type": "clip", "vision_config": vision}))
    tensors = {
        "vision_model." + k[len(TOWER) :]: v.clone().contiguous()
        for k, v in model.official_state_dict().items()
        if k.startswith(TOWER)
    }
    tensors["text_model.embeddings.token_embedding.weight"] = torch.ones(3, 2)
    tensors["logit_scale"] = torch.ones(())
    save_file(tensors, str(folder / "model.safetensors"))


def test_bin_shards_with_the_tower_from_a_clip_folder(tmp_path: Path, reference: GLaMMModel) -> None:
    ckpt = tmp_path / "GLaMM-GCG"
    ckpt.mkdir()
    write_bin_shards(reference, ckpt, drop_tower=True)
    write_clip_folder(reference, tmp_path / "clip-vit-large-patch14-336")
    with pytest.raises(ConfigError) as err:
        load_glamm(ckpt)  # the config names a hub id, which is never fetched
    message = str(err.value)
    assert (
        "\n" not in message and "give clip=DIR, a local copy of openai/clip-vit-large-patch14-336" in message
    )
    assert TOWER + "embeddings.class_embedding" in message
    loaded, _, report = load_glamm(ckpt, clip=str(tmp_path / "clip-vit-large-patch14-336"))
    assert len(report.weight_files) == 2 and report.clip_files == [
        tmp_path / "clip-vit-large-patch14-336" / "model.safetensors"
    ]
    assert sorted(report.unexpected) == [
        "clip-vit-large-patch14-336:logit_scale",
        "clip-vit-large-patch14-336:text_model.embeddings.token_embedding.weight",
    ]
    with torch.no_grad():
        assert same(outputs(loaded), outputs(reference))


def test_a_local_vision_tower_folder_is_found_next_to_the_checkpoint(
    tmp_path: Path, reference: GLaMMModel
) -> None:
    write_bin_shards(reference, tmp_path, drop_tower=False)
    write_clip_folder(reference, tmp_path / "clip")
    config = json.loads((tmp_path / "config.json").read_text())
    config["vision_tower"] = config["mm_vision_tower"] = "clip"
    (tmp_path / "config.json").write_text(json.dumps(config))
    _, _, report = load_glamm(tmp_path)
    assert report.clip_files == [tmp_path / "clip" / "model.safetensors"]
    # As the official scripts, the named tower wins over the checkpoint's own copy.
    assert any("checkpoint's own CLIP tower" in note for note in report.notes)


def test_a_clip_folder_of_another_size_is_refused(tmp_path: Path, reference: GLaMMModel) -> None:
    write_bin_shards(reference, tmp_path, drop_tower=True)
    write_clip_folder(reference, tmp_path / "clip", hidden_size=1024)
    with pytest.raises(ConfigError, match="CLIP hidden_size is 1024, the GLaMM config expects 16"):
        load_glamm(tmp_path, clip=str(tmp_path / "clip"))


def test_a_wrong_layout_names_the_first_missing_keys(tmp_path: Path, reference: GLaMMModel) -> None:
    # LISA's name for SAM: a LISA checkpoint is not a GLaMM one.
    state = {
        k.replace("model.grounding_encoder.", "model.visual_model."): v.clone().contiguous()
        for k, v in reference.official_state_dict().items()
    }
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(reference.config.to_dict()))
    with pytest.raises(ConfigError) as err:
        load_glamm(tmp_path)
    message = str(err.value)
    assert "\n" not in message
    n_sam = sum(1 for k in reference.official_state_dict() if k.startswith("model.grounding_encoder."))
    assert f"{n_sam} parameter(s) not in the checkpoint" in message
    assert "model.grounding_encoder.image_encoder.blocks.0.attn.proj.bias" in message


def test_a_config_that_is_not_glamm_is_refused(tmp_path: Path, reference: GLaMMModel) -> None:
    config = reference.config.to_dict()
    config["model_type"] = "osprey"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="is not a GLaMM checkpoint"):
        load_glamm(tmp_path)
