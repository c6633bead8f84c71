"""Parity with the official GLaMM code, piece by piece, in this interpreter.

``GLAMM_REFERENCE_SRC`` names a checkout of mbzuai-oryx/groundingLMM (checked: e74865f); the
tests skip cleanly without it. The pure-torch / pure-python parts of the release are loaded
straight from their files and run on the same weights and inputs as evalkit's:

* SAM (``model/SAM/modeling``, the Segment Anything code GLaMM vendors): built at tiny width,
  it loads evalkit's ``grounding_encoder`` state dict with ``strict=True`` (same names and
  shapes), and GLaMM's mask path — ``prompt_encoder(text_embeds=...)``, ``mask_decoder(
  multimask_output=False)``, ``postprocess_masks`` — gives the same logits, in float32 and in
  the released bfloat16;
* the region encoder (``model/layers.py`` ``MLVLROIQueryModule``) with mmcv / mmdet replaced by
  stand-ins for their three primitives (``ConvModule`` conv + GroupNorm + ReLU, ``Linear``,
  ``BaseRoIExtractor``'s RoIAlign layers — evalkit's :func:`roi_align`, itself checked against
  mmcv's kernel in ``test_glamm_model.py``): the official forward, its bf16 casts and its box
  scaling, on evalkit's weights;
* ``eval/utils.py``: ``grounding_image_ecoder_preprocess`` and the RLE writer
  (``mask_to_rle_pytorch`` + ``coco_encode_rle``) against :func:`sam_view` / :func:`encode_rle`;
* ``model/llava``: the ``llava_v1`` template as ``eval/gcg/infer.py`` fills it and
  ``tokenizer_image_token``.

The full model (``GLaMMForCausalLM`` on transformers 4.28 with mmcv) cannot run here: evalkit
needs transformers >= 5, and the release's pins (mmcv-full, flash-attn, deepspeed) need CUDA.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from evalkit.models.glamm.adapter import encode_rle
from evalkit.models.glamm.config import RegionSpec
from evalkit.models.glamm.modeling import GLaMMModel
from evalkit.models.glamm.preprocess import longest_side_shape, sam_view
from evalkit.models.glamm.prompting import GLaMMTokenizer, render_prompt
from evalkit.models.glamm.region_encoder import RegionEncoder, roi_align
from tests.glamm_helpers import GCG_PROMPT, tiny_model, tiny_tokenizer

SRC = os.environ.get("GLAMM_REFERENCE_SRC")
pytestmark = pytest.mark.skipif(not SRC, reason="GLAMM_REFERENCE_SRC not set (a groundingLMM checkout)")


def load_module(name: str, relative: str, package: str | None = None) -> ModuleType:
    assert SRC is not None
    path = Path(SRC) / relative
    if not path.is_file():
        pytest.skip(f"{path} not found")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    if package:
        module.__package__ = package
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sam_modules() -> Iterator[dict[str, ModuleType]]:
    """``model/SAM/modeling/*`` as a package of their own (relative imports kept)."""
    assert SRC is not None
    package = types.ModuleType("glamm_ref_sam")
    package.__path__ = [str(Path(SRC) / "model" / "SAM" / "modeling")]
    sys.modules["glamm_ref_sam"] = package
    names = ["common", "image_encoder", "prompt_encoder", "transformer", "mask_decoder", "sam"]
    modules = {
        n: load_module(f"glamm_ref_sam.{n}", f"model/SAM/modeling/{n}.py", "glamm_ref_sam") for n in names
    }
    yield modules
    for name in [*(f"glamm_ref_sam.{n}" for n in names), "glamm_ref_sam"]:
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def model() -> GLaMMModel:
    return tiny_model(tiny_tokenizer(), seed=4)


def official_sam(modules: dict[str, ModuleType], model: GLaMMModel) -> Any:
    """``_build_sam`` at the tiny model's sizes."""
    spec = model.config.vision.sam
    sam = modules["sam"].Sam(
        image_encoder=modules["image_encoder"].ImageEncoderViT(
            depth=spec.depth,
            embed_dim=spec.embed_dim,
            img_size=spec.image_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=spec.num_heads,
            patch_size=spec.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=list(spec.global_attn_indexes),
            window_size=spec.window_size,
            out_chans=spec.prompt_dim,
        ),
        prompt_encoder=modules["prompt_encoder"].PromptEncoder(
            embed_dim=spec.prompt_dim,
            image_embedding_size=(spec.grid, spec.grid),
            input_image_size=(spec.image_size, spec.image_size),
            mask_in_chans=spec.mask_in_chans,
        ),
        mask_decoder=modules["mask_decoder"].MaskDecoder(
            num_multimask_outputs=spec.num_multimask_outputs,
            transformer=modules["transformer"].TwoWayTransformer(
                depth=spec.decoder_depth,
                embedding_dim=spec.prompt_dim,
                mlp_dim=spec.decoder_mlp_dim,
                num_heads=spec.decoder_heads,
            ),
            transformer_dim=spec.prompt_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=spec.iou_head_hidden_dim,
        ),
    )
    missing = sam.load_state_dict(model.grounding_encoder.state_dict(), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    return sam.eval()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sam_mask_path_equals_the_official(
    sam_modules: dict[str, ModuleType], model: GLaMMModel, dtype: torch.dtype
) -> None:
    import copy

    ours = copy.deepcopy(model).to(dtype)
    ref = official_sam(sam_modules, model).to(dtype)  # model.bfloat16() converts buffers too
    side = model.config.vision.sam.image_size
    torch.manual_seed(0)
    image = torch.randn(1, 3, side, side).to(dtype)
    seg = torch.randn(3, model.config.hidden_size).to(dtype)
    with torch.no_grad():
        embedding = ours.encode_sam(image)
        assert torch.equal(embedding, ref.image_encoder(image))
        got = ours.masks(seg, embedding, (side, side // 2), (50, 30))
        # GLaMMForCausalLM._generate_and_postprocess_masks, one image.
        pred_embedding = ours.text_hidden_fcs[0](seg)
        sparse, dense = ref.prompt_encoder(
            points=None, boxes=None, masks=None, text_embeds=pred_embedding.unsqueeze(1)
        )
        sparse = sparse.to(pred_embedding.dtype)
        low_res, _ = ref.mask_decoder(
            image_embeddings=embedding,
            image_pe=ref.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        expected = ref.postprocess_masks(low_res, input_size=(side, side // 2), original_size=(50, 30))[:, 0]
    assert got.dtype == expected.dtype == torch.float32
    assert torch.equal(got, expected)


# ---------------------------------------------------------------------- region encoder
class StandInRoIAlign(nn.Module):
    """mmcv ``RoIAlign(output_size, spatial_scale, sampling_ratio)`` (aligned, avg)."""

    def __init__(self, output_size: int, spatial_scale: float, sampling_ratio: int):
        super().__init__()
        self.output_size = (output_size, output_size)
        self.spatial_scale, self.sampling_ratio = spatial_scale, sampling_ratio

    def forward(self, feats: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return roi_align(feats, rois, self.output_size[0], self.spatial_scale, self.sampling_ratio)


class StandInBaseRoIExtractor(nn.Module):
    """mmdet ``BaseRoIExtractor.__init__``: one RoI layer per stride, ``out_channels``."""

    def __init__(
        self, roi_layer: dict[str, Any], out_channels: int, featmap_strides: list[float], init_cfg: Any
    ):
        super().__init__()
        cfg = {k: v for k, v in roi_layer.items() if k != "type"}
        self.roi_layers = nn.ModuleList(StandInRoIAlign(spatial_scale=1 / s, **cfg) for s in featmap_strides)
        self.out_channels = out_channels


class StandInConvModule(nn.Module):
    """mmcv ``ConvModule`` with a GN ``norm_cfg``: conv without bias, ``gn``, ReLU."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, conv_cfg: Any, norm_cfg: Any
    ):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
        self.gn = nn.GroupNorm(norm_cfg["num_groups"], c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.gn(self.conv(x)))


@pytest.fixture
def layers_module(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    mmdet, mmdet_models = types.ModuleType("mmdet"), types.ModuleType("mmdet.models")
    mmdet_models.BaseRoIExtractor = StandInBaseRoIExtractor  # type: ignore[attr-defined]
    mmcv, mmcv_cnn = types.ModuleType("mmcv"), types.ModuleType("mmcv.cnn")
    mmcv_cnn.ConvModule = StandInConvModule  # type: ignore[attr-defined]
    mmcv_cnn.Linear = nn.Linear  # type: ignore[attr-defined]
    mmcv_cnn.normal_init = lambda m, mean=0.0, std=1.0: nn.init.normal_(m.weight, mean, std)  # type: ignore[attr-defined]
    for name, module in (
        ("mmdet", mmdet),
        ("mmdet.models", mmdet_models),
        ("mmcv", mmcv),
        ("mmcv.cnn", mmcv_cnn),
    ):
        monkeypatch.setitem(sys.modules, name, module)
    return load_module("glamm_ref_layers", "model/layers.py")


def test_region_encoder_equals_the_official(layers_module: ModuleType) -> None:
    # The official literals: 4 levels, 5 fuse rounds, GN(64), RoIAlign 14x14 at strides 14/8..14
    # with boxes x 224, pos_embedd to 1024, updims to 4096; 64 channels at a 6x6 grid (the
    # 24x24 assert applies to token inputs only).
    torch.manual_seed(0)
    channels, grid = 64, 6
    ref = layers_module.MLVLROIQueryModule(embed_dims=channels, out_dims=4096, num_levels=4)
    ours = RegionEncoder(channels, 14, 4096, RegionSpec())
    ours.load_state_dict(ref.state_dict(), strict=True)  # the same names and shapes
    ref, ours = ref.bfloat16().eval(), ours.bfloat16().eval()
    levels = [torch.randn(2, channels, grid, grid).bfloat16() for _ in range(4)]
    boxes = [
        torch.tensor([[0.1, 0.2, 0.7, 0.9]]),
        torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.5, 0.4, 0.6, 0.45]]),
    ]
    boxes = [b.half().to(torch.bfloat16) for b in boxes]  # region_captioning/infer.py
    with torch.no_grad():
        expected = ref([lvl.clone() for lvl in levels], boxes)
        tokens = [lvl.flatten(2).transpose(1, 2) for lvl in levels]  # [B, g*g, C], row-major
        got = ours(tokens, boxes)
    assert [g.shape for g in got] == [e.shape for e in expected] == [(1, 4096), (2, 4096)]
    for g, e in zip(got, expected, strict=True):
        assert torch.equal(g, e)


# ---------------------------------------------------------------------- preprocessing, RLE, prompts
def test_sam_preprocessing_and_rle_equal_the_official(tmp_path: Path) -> None:
    utils = load_module("glamm_ref_eval_utils", "eval/utils.py")
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 255, (70, 90, 3), dtype=np.uint8))
    got, resized = sam_view(image, 64)
    h, w = longest_side_shape(70, 90, 64)
    # ResizeLongestSide.apply_image: torchvision resize of a PIL image = PIL bilinear.
    pixels = np.array(image.resize((w, h), resample=Image.Resampling.BILINEAR))
    expected = utils.grounding_image_ecoder_preprocess(
        torch.from_numpy(pixels).permute(2, 0, 1).contiguous(), img_size=64
    )
    assert resized == (h, w) and torch.equal(got, expected)
    masks = torch.from_numpy(rng.random((3, 70, 90)) > 0.6)
    masks[1] = False
    masks[2, 0, 0] = True
    official = [utils.coco_encode_rle(m) for m in utils.mask_to_rle_pytorch(masks)]
    assert [encode_rle(m) for m in masks] == official


def test_the_template_and_tokenizer_image_token_equal_the_official(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SRC is not None
    monkeypatch.syspath_prepend(SRC)  # mm_utils imports tools.utils
    conversation = load_module("glamm_ref_conversation", "model/llava/conversation.py")
    mm_utils = load_module("glamm_ref_mm_utils", "model/llava/mm_utils.py")
    # eval/gcg/infer.py's inference(): begin_str + instruction, <image> wrapped, llava_v1.
    instruction = GCG_PROMPT.split("\n", 1)[1]
    conv = conversation.conv_templates["llava_v1"].copy()
    conv.messages = []
    prompt = "The <image> provides an overview of the picture.\n" + instruction
    prompt = prompt.replace("<image>", "<im_start><image><im_end>")
    conv.append_message(conv.roles[0], prompt)
    conv.append_message(conv.roles[1], "")
    assert conv.get_prompt() == render_prompt(GCG_PROMPT)

    tok: GLaMMTokenizer = tiny_tokenizer()

    class SlowTokenizer:
        bos_token_id = tok.bos_id

        def __call__(self, text: str) -> Any:
            return types.SimpleNamespace(input_ids=tok.encode_text(text))

    expected = mm_utils.tokenizer_image_token(conv.get_prompt(), SlowTokenizer())
    assert tok.encode_prompt(render_prompt(GCG_PROMPT)) == expected
