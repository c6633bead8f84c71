"""Parity with the official Osprey code, when ``OSPREY_REFERENCE_SRC`` points to a checkout.

Skipped otherwise. The pure-python / pure-torch pieces (conversation template,
``tokenizer_image_token``, ``MaskExtractor``) are loaded straight from their files, so they
run in this environment; the full-model logits test needs the official package importable
(open_clip, transformers 4.31) and skips when it is not.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path
from types import ModuleType

import pytest
import torch

from evalkit.models.osprey.mask_extractor import MaskExtractor, prepare_masks
from evalkit.models.osprey.prompting import IMAGE_SENTINEL, osprey_question, render_prompt

try:
    from tests.osprey_helpers import CLS_PROMPT, TWO_REGION_PROMPT, tiny_tokenizer
except ImportError:  # tests/ is not a package: pytest puts this folder on sys.path
    from osprey_helpers import CLS_PROMPT, TWO_REGION_PROMPT, tiny_tokenizer  # type: ignore[no-redef]

SRC = os.environ.get("OSPREY_REFERENCE_SRC")
pytestmark = pytest.mark.skipif(not SRC, reason="OSPREY_REFERENCE_SRC not set")


def load_file(name: str, relative: str) -> ModuleType:
    assert SRC is not None
    path = Path(SRC) / relative
    if not path.is_file():
        pytest.skip(f"{path} not found")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def official_preprocess_multimodal(question: str) -> str:
    """``osprey/train/train.py::preprocess_multimodal`` (mm_use_im_start_end=False)."""
    if "<image>" in question:
        question = "<image>\n" + question.replace("<image>", "").strip()
    return question.strip()


@pytest.mark.parametrize(
    "prompt", [CLS_PROMPT, TWO_REGION_PROMPT, "<image>\nIs there a house in the image?"]
)
def test_conversation_template(prompt: str) -> None:
    conversation = load_file("osprey_reference_conversation", "osprey/conversation.py")
    conv = conversation.conv_templates["osprey_v1"].copy()
    question = official_preprocess_multimodal(prompt.replace("<region>", "<mask><pos>"))
    assert question == osprey_question(prompt)
    conv.append_message(conv.roles[0], question)
    conv.append_message(conv.roles[1], None)
    assert conv.get_prompt() == render_prompt(prompt)


def test_tokenizer_image_token() -> None:
    from transformers import PreTrainedTokenizerFast

    if "osprey" not in sys.modules:  # mm_utils imports osprey.constants only
        package = types.ModuleType("osprey")
        package.__path__ = []
        sys.modules["osprey"] = package
    sys.modules["osprey.constants"] = load_file("osprey.constants", "osprey/constants.py")
    mm_utils = load_file("osprey_reference_mm_utils", "osprey/mm_utils.py")
    ours = tiny_tokenizer()
    hf = PreTrainedTokenizerFast(
        tokenizer_object=ours.tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    for prompt in (CLS_PROMPT, TWO_REGION_PROMPT):
        rendered = render_prompt(prompt)
        expected = mm_utils.tokenizer_image_token(rendered, hf, IMAGE_SENTINEL)
        assert ours.encode_prompt(rendered) == expected


def test_mask_extractor_matches_official() -> None:
    layer = load_file("osprey_reference_layer", "osprey/model/layer.py")
    torch.manual_seed(0)
    official = layer.MaskExtractor().eval()
    ours = MaskExtractor((192, 384, 768, 1536), 1024, 4096, 112).eval()
    ours.load_state_dict(official.state_dict())
    sizes = [(128, 128), (64, 64), (32, 32), (16, 16)]
    # fp16 features, as the eval scripts' vision tower produces them.
    feats = {
        f"res{i + 2}": torch.randn(1, c, h, w).half()
        for i, (c, (h, w)) in enumerate(zip((192, 384, 768, 1536), sizes, strict=True))
    }
    masks = torch.zeros(3, 300, 410)
    masks[0, 20:200, 30:90] = 1
    masks[1, 150:300, 100:410] = 1
    masks[2, 5:9, 7:12] = 1  # tiny: vanishes on the coarse grids
    with torch.no_grad():
        ref_mask, ref_pos = official(feats, [masks.half()])
        prepared = prepare_masks(masks, sizes, 112)
        got_mask, got_pos = ours(
            [feats[f"res{i}"] for i in range(2, 6)], torch.zeros(3, dtype=torch.long), prepared
        )
    assert torch.allclose(got_mask, ref_mask[0].float(), atol=1e-4, rtol=1e-4)
    assert torch.allclose(got_pos, ref_pos[0].float(), atol=1e-4, rtol=1e-4)


def test_full_model_logits() -> None:
    assert SRC is not None
    for name in [m for m in sys.modules if m == "osprey" or m.startswith("osprey.")]:
        del sys.modules[name]  # drop the stub package of test_tokenizer_image_token
    sys.path.insert(0, SRC)
    try:
        from osprey.model.language_model.osprey_llama import (  # type: ignore[import-not-found]
            OspreyConfig as OfficialConfig,
        )
        from osprey.model.language_model.osprey_llama import (
            OspreyLlamaForCausalLM,
        )
    except Exception as exc:  # open_clip / transformers 4.31 missing here
        pytest.skip(f"official model not importable: {exc}")
    finally:
        sys.path.remove(SRC)
    from evalkit.models.osprey.config import OspreyConfig
    from evalkit.models.osprey.modeling import OspreyModel, to_internal_key

    # The official code hard-codes ConvNeXt-L and a 4096-wide mask extractor: a 1-layer
    # decoder of width 4096 is the smallest model it can build.
    raw = {
        "model_type": "osprey",
        "hidden_size": 4096,
        "intermediate_size": 256,
        "num_hidden_layers": 1,
        "num_attention_heads": 32,
        "vocab_size": 300,
        "mm_hidden_size": 768,
        "mm_projector_type": "mlp2x_gelu",
        "mm_vision_tower": "none",
    }
    torch.manual_seed(0)
    official = OspreyLlamaForCausalLM(OfficialConfig(**raw)).float().eval()
    ours = OspreyModel(OspreyConfig.from_dict(dict(raw))).eval()
    state = {to_internal_key(k): v for k, v in official.state_dict().items()}
    ours.load_state_dict(
        {k: v for k, v in state.items() if k is not None and k in ours.state_dict()}
    )
    images = torch.randn(1, 3, 512, 512)
    masks = torch.zeros(1, 200, 300)
    masks[0, 50:150, 60:200] = 1
    ids = torch.tensor([[1, 5, -200, 7, 300, 301, 9]])
    official.model.tokenizer = types.SimpleNamespace(convert_tokens_to_ids=lambda t: [300])
    for module in official.modules():
        module.tokenizer = official.model.tokenizer
    with torch.no_grad():
        ref = official(input_ids=ids, images=images, masks=[masks], return_dict=True).logits.float()
        tokens, feats = ours.encode_images(images)
        prepared = prepare_masks(masks, ours.level_sizes(), 112)
        m_tok, p_tok = ours.region_tokens(feats, torch.zeros(1, dtype=torch.long), prepared)
        text = ours.embed_text(torch.tensor([1, 5, 7, 9]))
        embeds = torch.cat([text[:2], tokens[0], text[2:3], m_tok, p_tok, text[3:]])[None]
        got = ours.llm(inputs_embeds=embeds.bfloat16().float()).logits
    # The official forward runs the decoder in bf16; compare at bf16 precision.
    assert torch.allclose(got, ref, atol=5e-2, rtol=5e-2)
