"""Osprey model pieces: prompts and token ids, preprocessing, ConvNeXt key names, mask pooling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from evalkit.errors import ConfigError
from evalkit.models.osprey.config import OspreyConfig, VisionSpec
from evalkit.models.osprey.convnext import ConvNeXtTrunk
from evalkit.models.osprey.mask_extractor import MaskExtractor, prepare_masks
from evalkit.models.osprey.preprocess import CLIP_MEAN, CLIP_STD, preprocess_image
from evalkit.models.osprey.prompting import IMAGE_SENTINEL, SYSTEM, osprey_question, render_prompt
from tests.osprey_helpers import TWO_REGION_PROMPT, tiny_tokenizer


def test_render_prompt_is_osprey_v1():
    rendered = render_prompt("<image>\nWhat is <region>?")
    assert rendered == f"{SYSTEM} USER: <image>\nWhat is <mask><pos>? ASSISTANT:"
    # preprocess_multimodal moves <image> to the front and strips the rest.
    assert osprey_question("Look at <region> <image>  ") == "<image>\nLook at <mask><pos>"
    assert osprey_question("<image>\n.\nThis provides") == "<image>\n.\nThis provides"


def test_two_region_prompt_token_ids():
    tok = tiny_tokenizer()
    ids = tok.encode_prompt(render_prompt(TWO_REGION_PROMPT))
    assert ids[0] == tok.bos_id and ids.count(tok.bos_id) == 1  # chunk BOS dropped after <image>
    assert ids.count(IMAGE_SENTINEL) == 1
    masks = [i for i, t in enumerate(ids) if t == tok.mask_id]
    assert len(masks) == 2 and all(ids[i + 1] == tok.pos_id for i in masks)
    assert tok.mask_id == tok.tokenizer.get_vocab_size() - 2  # never in the embedding table
    # Each piece is tokenised on its own, like tokenizer_image_token does.
    head = tok.encode_text(f"{SYSTEM} USER: ")
    assert ids[: len(head)] == head
    tail = tok.encode_text(render_prompt(TWO_REGION_PROMPT).split("<image>")[1])[1:]
    assert ids[len(head) + 1 :] == tail
    text = tok.decode([t for t in tail if t not in (tok.mask_id, tok.pos_id)])
    assert text == (
        "\nThis provides an overview of the picture.\n"
        "What is the relation between  and  ? Answer briefly. ASSISTANT:"
    )
    # Deterministic, and the prompt cache changes nothing: a fresh tokenizer (empty cache)
    # and the uncached tokenisation give the same ids.
    assert ids == tiny_tokenizer().encode_prompt(render_prompt(TWO_REGION_PROMPT))
    assert ids == tok.encode_prompt_uncached(render_prompt(TWO_REGION_PROMPT))


def test_preprocess_matches_transformers_clip_processor():
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (50, 83, 3), dtype=np.uint8))
    processor = CLIPImageProcessorPil(
        do_resize=True,
        size={"shortest_edge": 64},
        resample=3,
        do_center_crop=False,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=CLIP_MEAN.tolist(),
        image_std=CLIP_STD.tolist(),
    )
    expected = processor.preprocess(image, return_tensors="pt")["pixel_values"]
    assert expected.shape[-2:] == (64, 106)  # shortest edge 64, long edge int(64 * 83 / 50)
    expected = torch.nn.functional.interpolate(expected, size=(64, 64), mode="bilinear", align_corners=False)
    ours = preprocess_image(image, 64)
    assert ours.shape == (3, 64, 64)
    assert torch.allclose(ours, expected[0], atol=1e-5)


def test_convnext_has_timm_key_names():
    with torch.device("meta"):
        trunk = ConvNeXtTrunk(VisionSpec.depths, VisionSpec.dims)
    keys = set(trunk.state_dict())
    for key in [
        "stem.0.weight",
        "stem.0.bias",
        "stem.1.weight",
        "stem.1.bias",
        "stages.0.blocks.2.conv_dw.weight",
        "stages.0.blocks.0.norm.weight",
        "stages.1.downsample.0.weight",
        "stages.1.downsample.1.weight",
        "stages.2.blocks.26.gamma",
        "stages.3.blocks.2.mlp.fc1.weight",
        "stages.3.blocks.2.mlp.fc2.bias",
    ]:
        assert key in keys, key
    assert not any(k.startswith("stages.0.downsample") for k in keys)
    assert sum(1 for k in keys if k.endswith(".gamma")) == 36  # 3 + 3 + 27 + 3 blocks
    shapes = {k: tuple(v.shape) for k, v in trunk.state_dict().items()}
    assert shapes["stem.0.weight"] == (192, 3, 4, 4)
    assert shapes["stages.3.downsample.1.weight"] == (1536, 768, 2, 2)
    assert shapes["stages.2.blocks.0.conv_dw.weight"] == (768, 1, 7, 7)
    assert shapes["stages.2.blocks.0.mlp.fc1.weight"] == (3072, 768)


def test_convnext_feature_strides():
    trunk = ConvNeXtTrunk((1, 1, 1, 1), (4, 8, 12, 16))
    feats = trunk(torch.zeros(2, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [
        (2, 4, 16, 16),
        (2, 8, 8, 8),
        (2, 12, 4, 4),
        (2, 16, 2, 2),
    ]


def test_mask_pooling_averages_inside_the_resized_mask():
    torch.manual_seed(0)
    extractor = MaskExtractor((2, 2, 2, 2), embed_dim=3, out_dim=5, mask_shape=4)
    # A mask covering the left half of an 8x8 image: every level sees exactly its left half.
    mask = torch.zeros(1, 8, 8)
    mask[0, :, :4] = 1
    sizes = [(4, 4), (2, 2), (2, 2), (1, 1)]
    prepared = prepare_masks(mask, sizes, 4)
    assert torch.allclose(prepared.level_weights[0].view(4, 4)[:, :2].sum(), torch.tensor(1.0))
    assert prepared.level_weights[0].view(4, 4)[:, 2:].abs().sum() == 0
    assert prepared.level_weights[3].item() == pytest.approx(1.0)  # 1x1 grid: bilinear 0.5 > 0
    feats = [torch.randn(1, 2, h, w) for h, w in sizes]
    mask_tok, pos_tok = extractor(feats, torch.zeros(1, dtype=torch.long), prepared)
    expected = torch.zeros(3)
    for feat, linear, (_h, w) in zip(feats, extractor.level_linears(), sizes, strict=True):
        inside = feat[0, :, :, : max(1, w // 2)] if w > 1 else feat[0]
        expected += linear(inside.flatten(1).mean(1))
    assert torch.allclose(mask_tok[0], extractor.feat_linear(expected), atol=1e-6)
    soft = prepared.position_input.view(4, 4)
    assert torch.equal(soft[:, :2], torch.ones(4, 2)) and torch.equal(soft[:, 2:], torch.zeros(4, 2))
    assert torch.allclose(pos_tok, extractor.mask_linear(prepared.position_input))


def test_config_rejects_what_it_cannot_run():
    base = {
        "model_type": "osprey",
        "hidden_size": 8,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "vocab_size": 10,
    }
    assert OspreyConfig.from_dict(dict(base)).vision == VisionSpec()  # official sizes
    with pytest.raises(ConfigError, match="model_type"):
        OspreyConfig.from_dict({**base, "model_type": "llava"})
    with pytest.raises(ConfigError, match="mm_hidden_size"):
        OspreyConfig.from_dict({**base, "mm_hidden_size": 1024})
    with pytest.raises(ConfigError, match="mm_projector_type"):
        OspreyConfig.from_dict({**base, "mm_projector_type": "qformer"})


def test_unknown_model_args_are_refused_naming_the_known_ones():
    from evalkit.models.osprey import osprey_tiny

    with pytest.raises(ConfigError, match="unknown model args") as info:
        osprey_tiny(bogus="1")  # refused before anything is loaded
    for key in ("path", "clip", "device", "dtype", "batch_size", "mode"):
        assert key in str(info.value)
    assert "'bogus'" in str(info.value) and "self" not in str(info.value)


@torch.inference_mode()
def test_forward_is_the_reference_path_the_cascade_splices_alike():
    """``OspreyModel.forward`` (trunk -> region tokens -> projector -> splice -> LLaMA) gives
    the transformers logits of the cascade path's spliced input, bit for bit."""
    from evalkit.models.osprey.generate_cascade import embed_rows, encode_batch, position_entries
    from evalkit.models.osprey.generation import Job
    from tests.osprey_helpers import tiny_model

    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer)
    size = model.config.vision.image_size
    image = torch.randn(3, size, size, generator=torch.Generator().manual_seed(2))
    masks = torch.zeros(2, 40, 50)
    masks[0, 5:30, 5:20] = 1
    masks[1, 20:40, 10:50] = 1
    ids = tokenizer.encode_prompt(render_prompt(TWO_REGION_PROMPT))
    assert ids.count(IMAGE_SENTINEL) == 1
    embeds = model.embed_inputs(
        torch.tensor(ids)[None], image[None], [masks], tokenizer.mask_id, tokenizer.pos_id
    )

    job = Job(None, "", ids, "image", ["a", "b"], 1, 0.0, 0)  # type: ignore[arg-type]
    enc = encode_batch(model, {"image": image}, {"image": {"a": masks[0], "b": masks[1]}})
    entries = position_entries(job, tokenizer, enc.image_tokens.shape[1])
    spliced, valid = embed_rows(model, [(entries, job)], enc)
    assert bool(valid.all()) and embeds.shape == spliced.shape
    assert torch.equal(embeds, spliced)
    logits = model(torch.tensor(ids)[None], image[None], [masks], tokenizer.mask_id, tokenizer.pos_id)
    assert torch.equal(logits, model.llm(inputs_embeds=spliced).logits)
    with pytest.raises(ValueError, match="mask"):
        model.embed_inputs(
            torch.tensor(ids)[None], image[None], [masks[:1]], tokenizer.mask_id, tokenizer.pos_id
        )
