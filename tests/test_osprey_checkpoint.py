"""Official-layout Osprey checkpoints load with zero missing keys and the same logits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from evalkit.errors import ConfigError
from evalkit.models.osprey.checkpoint import load_osprey, save_official
from evalkit.models.osprey.modeling import OspreyModel
from tests.osprey_helpers import tiny_model, tiny_tokenizer

TRUNK = "model.vision_tower.vision_tower.visual.trunk."


def outputs(model: OspreyModel) -> torch.Tensor:
    """Image tokens, region tokens and decoder logits of a fixed input, concatenated."""
    torch.manual_seed(5)
    size = model.config.vision.image_size
    image_tokens, feats = model.encode_images(torch.randn(1, 3, size, size))
    from evalkit.models.osprey.mask_extractor import prepare_masks

    masks = torch.zeros(2, 40, 50)
    masks[0, 5:30, 5:20] = 1
    masks[1, 20:40, 10:50] = 1
    prepared = prepare_masks(masks, model.level_sizes(), model.config.vision.mask_shape)
    mask_tok, pos_tok = model.region_tokens(feats, torch.zeros(2, dtype=torch.long), prepared)
    text = model.embed_text(torch.tensor([1, 5, 9, 12]))
    embeds = torch.cat([text[:2], image_tokens[0], mask_tok[:1], pos_tok[:1], text[2:]])[None]
    logits = model.llm(inputs_embeds=embeds).logits[0]
    return torch.cat([image_tokens.flatten(), mask_tok.flatten(), pos_tok.flatten(), logits.flatten()])


@pytest.fixture(scope="module")
def reference() -> OspreyModel:
    return tiny_model(tiny_tokenizer(), seed=3)


def write_bin_shards(model: OspreyModel, directory: Path, extra: dict[str, torch.Tensor]) -> None:
    """Two ``pytorch_model-0000N-of-00002.bin`` shards + index, official key names."""
    state = {**model.official_state_dict(), **extra}
    keys = sorted(state)
    shards = {
        "pytorch_model-00001-of-00002.bin": keys[::2],
        "pytorch_model-00002-of-00002.bin": keys[1::2],
    }
    weight_map = {}
    for name, names in shards.items():
        torch.save({k: state[k].clone() for k in names}, directory / name)
        weight_map.update(dict.fromkeys(names, name))
    (directory / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))


def test_official_bin_checkpoint_with_clip_file(tmp_path: Path, reference: OspreyModel) -> None:
    tok = tiny_tokenizer()
    official = reference.official_state_dict()
    gammas = [k for k in official if k.startswith(TRUNK) and k.endswith(".gamma")]
    assert gammas and all(k.startswith(TRUNK + "stages.") for k in gammas)
    # The checkpoint's own gammas are wrong on purpose: the official model never used them.
    extra = {k: torch.full_like(official[k], 7.0) for k in gammas}
    extra[TRUNK + "head.norm.weight"] = torch.ones(3)  # unused by Osprey
    extra["model.vision_tower.vision_tower.visual.head.mlp.fc1.weight"] = torch.ones(2, 2)
    write_bin_shards(reference, tmp_path, extra)
    clip = {"visual.trunk." + k[len(TRUNK) :]: v.clone() for k, v in official.items() if k.startswith(TRUNK)}
    clip["visual.head.proj.weight"] = torch.ones(2, 2)
    clip["transformer.resblocks.0.attn.in_proj_weight"] = torch.ones(2, 2)
    torch.save(clip, tmp_path / "open_clip_pytorch_model.bin")
    config = reference.config.to_dict()
    config["mm_vision_tower"] = "open_clip_pytorch_model.bin"  # resolved next to the checkpoint
    (tmp_path / "config.json").write_text(json.dumps(config))
    tok.tokenizer.save(str(tmp_path / "tokenizer.json"))

    model, _, report = load_osprey(tmp_path)
    assert report.clip_file == tmp_path / "open_clip_pytorch_model.bin"
    assert len(report.weight_files) == 2
    assert sorted(report.unexpected) == sorted(
        [
            TRUNK + "head.norm.weight",
            "model.vision_tower.vision_tower.visual.head.mlp.fc1.weight",
            "open_clip_pytorch_model.bin:transformer.resblocks.0.attn.in_proj_weight",
            "open_clip_pytorch_model.bin:visual.head.proj.weight",
        ]
    )
    loaded = model.official_state_dict()
    assert set(loaded) == set(official)  # zero missing, nothing invented
    for key in gammas:
        assert torch.equal(loaded[key], official[key]), key  # from the CLIP file, not 7.0
    with torch.no_grad():
        assert torch.equal(outputs(model), outputs(reference))


def test_sharded_safetensors_without_clip(tmp_path: Path, reference: OspreyModel) -> None:
    from safetensors.torch import save_file

    state = reference.official_state_dict()
    keys = sorted(state)
    halves = {
        "model-00001-of-00002.safetensors": keys[: len(keys) // 2],
        "model-00002-of-00002.safetensors": keys[len(keys) // 2 :],
    }
    for name, names in halves.items():
        save_file({k: state[k].contiguous() for k in names}, str(tmp_path / name))
    index = {"weight_map": {k: name for name, names in halves.items() for k in names}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "config.json").write_text(json.dumps(reference.config.to_dict()))
    model, _, report = load_osprey(tmp_path)
    assert report.unexpected == [] and report.clip_file is None
    assert "gammas taken from the checkpoint" in report.summary()
    with torch.no_grad():
        assert torch.equal(outputs(model), outputs(reference))


def test_missing_key_is_an_error_naming_it(tmp_path: Path, reference: OspreyModel) -> None:
    save_official(reference, tmp_path)
    from safetensors.torch import load_file, save_file

    state = load_file(str(tmp_path / "model.safetensors"))
    del state["mask_extractor.feat_linear.weight"]
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(
        ConfigError, match=r"1 parameter\(s\) found nowhere.*mask_extractor.feat_linear.weight"
    ):
        load_osprey(tmp_path)


def test_bfloat16_mode_rounds_like_the_official_loader(tmp_path: Path, reference: OspreyModel) -> None:
    save_official(reference, tmp_path)
    bf16, fp16 = torch.bfloat16, torch.float16
    model, _, _ = load_osprey(
        tmp_path, vision_dtype=bf16, llm_dtype=bf16, round_through_bf16=True, vision_via=fp16
    )
    assert model.vision_dtype == bf16 and model.llm_dtype == bf16
    assert model.mask_extractor.feat_linear.weight.dtype == torch.float32
    expected = reference.mask_extractor.feat_linear.weight.to(bf16).float()
    assert torch.equal(model.mask_extractor.feat_linear.weight, expected)
    # tower and projector: bf16 checkpoint -> the scripts' fp16 tower -> bf16 again
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = [
        (model.trunk.stem[0].weight, reference.trunk.stem[0].weight),  # type: ignore[list-item]
        (model.mm_projector[0].weight, reference.mm_projector[0].weight),  # type: ignore[list-item]
    ]
    for ours, theirs in pairs:
        assert torch.equal(ours, theirs.to(bf16).to(fp16).to(bf16))
    decoder = model.llm.model.layers[0].mlp.up_proj.weight
    assert torch.equal(decoder, reference.llm.model.layers[0].mlp.up_proj.weight.to(bf16))
