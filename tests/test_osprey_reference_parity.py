"""Parity with the official Osprey code.

Two sources, each optional (the tests skip cleanly without them):

* ``OSPREY_REFERENCE_SRC`` — a checkout of the official code. The pure-python / pure-torch
  pieces (conversation template, ``tokenizer_image_token``, ``MaskExtractor``) are loaded
  straight from their files and run in this interpreter.
* ``OSPREY_REFERENCE_LOGITS`` — a file written by ``tests/reference/official_osprey_logits.py``
  in a separate interpreter with the official dependencies (see ``tests/reference/README.md``):
  the official ``OspreyLlamaForCausalLM`` (ConvNeXt-L trunk, 4096-wide decoder and mask
  extractor) on seeded random weights — its state dict under official key names, the inputs,
  its logits and intermediate outputs. The full model cannot be run here: the official code
  needs transformers 4.31, open_clip and timm 0.6, evalkit needs transformers >= 5, and one
  interpreter cannot hold both transformers (so the former in-process full-model test, which
  imported the official package here, could never run and was removed).

The full-model tests load the official state dict through evalkit's own loader
(:func:`load_osprey`, official -> internal key mapping), encode and splice the same inputs
with the functions the adapter uses (:func:`encode_batch`, :func:`embed_rows`) and compare
every stage: trunk features, image tokens, mask/position tokens, decoder input, logits (the
transformers forward and the cascade path's lean decoder).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from evalkit.models.osprey.cascade_decoder import RowKV, decode_forward
from evalkit.models.osprey.checkpoint import LoadReport, load_osprey
from evalkit.models.osprey.generate_cascade import embed_rows, encode_batch, position_entries
from evalkit.models.osprey.generation import Job
from evalkit.models.osprey.mask_extractor import MaskExtractor, prepare_masks
from evalkit.models.osprey.modeling import OspreyModel
from evalkit.models.osprey.prompting import IMAGE_SENTINEL, OspreyTokenizer, osprey_question, render_prompt
from tests.osprey_helpers import CLS_PROMPT, TWO_REGION_PROMPT, tiny_tokenizer

SRC = os.environ.get("OSPREY_REFERENCE_SRC")
LOGITS_FILE = os.environ.get("OSPREY_REFERENCE_LOGITS")
needs_src = pytest.mark.skipif(not SRC, reason="OSPREY_REFERENCE_SRC not set")


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


@needs_src
@pytest.mark.parametrize("prompt", [CLS_PROMPT, TWO_REGION_PROMPT, "<image>\nIs there a house in the image?"])
def test_conversation_template(prompt: str) -> None:
    conversation = load_file("osprey_reference_conversation", "osprey/conversation.py")
    conv = conversation.conv_templates["osprey_v1"].copy()
    question = official_preprocess_multimodal(prompt.replace("<region>", "<mask><pos>"))
    assert question == osprey_question(prompt)
    conv.append_message(conv.roles[0], question)
    conv.append_message(conv.roles[1], None)
    assert conv.get_prompt() == render_prompt(prompt)


@needs_src
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


@needs_src
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


# ---------------------------------------------------------------------- full model, from a file
# Official keys evalkit does not use: the CLIP head (open_clip's projection MLP and the timm
# head's norm: Osprey reads the trunk's stage outputs) and transformers 4.31's persistent RoPE
# ``inv_freq`` buffers (checked against evalkit's rotary table instead).
UNUSED_KEYS = re.compile(
    r"model\.vision_tower\.vision_tower\.visual\.(head|trunk\.head)\..*"
    r"|model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq"
)
STAGES = ("res2", "res3", "res4", "res5", "image_tokens", "mask_tokens", "pos_tokens", "inputs_embeds")


@dataclass
class Reference:
    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]  # inputs and per-run outputs (``<run>.<stage>``), no weights
    official_keys: list[str]
    inv_freq: torch.Tensor
    checkpoint: Path  # config.json + model.safetensors: the official state dict, official names


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    if not LOGITS_FILE:
        pytest.skip("OSPREY_REFERENCE_LOGITS not set (see tests/reference/README.md)")
    path = Path(LOGITS_FILE)
    if not path.is_file():
        pytest.skip(f"{path} not found")
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["osprey_reference"])
        keys = list(f.keys())
        state = {k.removeprefix("state."): f.get_tensor(k) for k in keys if k.startswith("state.")}
        tensors = {k: f.get_tensor(k) for k in keys if not k.startswith("state.")}
    directory = tmp_path_factory.mktemp("official_osprey")
    (directory / "config.json").write_text(json.dumps(meta["config"]))
    save_file(state, str(directory / "model.safetensors"))
    inv_freq = state["model.layers.0.self_attn.rotary_emb.inv_freq"]
    return Reference(meta, tensors, sorted(state), inv_freq, directory)


def evalkit_run(
    ref: Reference,
    vision: torch.dtype,
    llm: torch.dtype,
    round_through_bf16: bool = False,
    half_pixels: bool = False,
) -> tuple[dict[str, torch.Tensor], LoadReport, OspreyModel]:
    """The reference inputs through evalkit: loader, encoder, splicing, both decoders."""
    via = torch.float16 if half_pixels else None  # the eval scripts' fp16 tower and image.half()
    model, _, report = load_osprey(ref.checkpoint, None, "cpu", vision, llm, round_through_bf16, via)
    images = ref.tensors["input.images"]
    masks = ref.tensors["input.masks"]
    names = [f"region{q}" for q in range(masks.shape[0])]
    ids = ref.tensors["input.input_ids"][0].tolist()
    tokenizer = OspreyTokenizer(
        None, bos_id=1, eos_id=2, mask_id=ref.meta["mask_id"], pos_id=ref.meta["pos_id"]
    )
    job = Job(None, "", ids, "image", names, 1, 0.0, 0)  # type: ignore[arg-type]
    seen: dict[str, torch.Tensor] = {}

    def record(_module: Any, _args: Any, feats: list[torch.Tensor]) -> None:
        seen.update({f"res{i + 2}": f for i, f in enumerate(feats)})

    hook = model.trunk.register_forward_hook(record)
    try:
        with torch.no_grad():
            enc = encode_batch(model, {"image": images[0]}, {"image": dict(zip(names, masks, strict=True))})
            entries = position_entries(job, tokenizer, enc.image_tokens.shape[1])
            embeds, valid = embed_rows(model, [(entries, job)], enc)
            logits = model.llm(inputs_embeds=embeds).logits
            positions = torch.arange(embeds.shape[1])[None]
            hidden = decode_forward(
                model.llm, embeds, positions, valid, RowKV(1, model.device), None, None, "all"
            )
            assert hidden is not None
            lean = model.llm.lm_head(hidden)
    finally:
        hook.remove()
    seen.update(
        image_tokens=enc.image_tokens,
        mask_tokens=enc.mask_tokens,
        pos_tokens=enc.pos_tokens,
        inputs_embeds=embeds,
        logits=logits,
        lean_logits=lean,
    )
    return seen, report, model


def max_differences(ours: dict[str, torch.Tensor], ref: Reference, run: str) -> dict[str, float]:
    out = {}
    for name, value in ours.items():
        expected = ref.tensors[f"{run}.{'logits' if name == 'lean_logits' else name}"]
        out[name] = float((value.float() - expected.float()).abs().max())
    return out


def test_full_model_logits_from_reference_file(reference: Reference) -> None:
    """float32 everywhere (the official forward's two bf16 casts neutralised): exact parity."""
    ours, report, model = evalkit_run(reference, torch.float32, torch.float32)
    # load_osprey raises on any missing parameter; the unused official keys are exactly these.
    assert sorted(report.unexpected) == [k for k in reference.official_keys if UNUSED_KEYS.fullmatch(k)]
    torch.testing.assert_close(model.llm.model.rotary_emb.inv_freq, reference.inv_freq, rtol=1e-6, atol=0)
    diffs = max_differences(ours, reference, "float32")
    print(f"\nfloat32 max |evalkit - official|: {diffs}")  # shown with -s: the numbers to report
    for stage in STAGES:
        expected = reference.tensors[f"float32.{stage}"]
        assert ours[stage].dtype == expected.dtype == torch.float32, stage
        torch.testing.assert_close(ours[stage], expected, rtol=1e-5, atol=1e-5, msg=f"{stage}: {diffs}")
    assert diffs["logits"] <= 1e-4, diffs
    assert diffs["lean_logits"] <= 1e-4, diffs
    expected = reference.tensors["float32.logits"]
    assert torch.equal(ours["logits"].argmax(-1), expected.argmax(-1))


# run -> evalkit's vision dtype, decoder dtype, weights rounded through bf16, pixels through fp16
LOW_PRECISION = {
    # the released forward on a float32 model: only the decoder (and lm_head) in bf16
    "bf16_first": (torch.float32, torch.bfloat16, False, False),
    # its later calls: the first call's ``self.model.bfloat16()`` also converted tower + projector
    "bf16_steady": (torch.bfloat16, torch.bfloat16, False, False),
    # the eval scripts' first forward (bf16 checkpoint, tower set to fp16)
    "eval_first": (torch.float16, torch.bfloat16, True, True),
    # the eval scripts' later forwards: the tower is bf16 by then, its weights and the pixels
    # rounded through fp16 (evalkit's dtype=bfloat16)
    "eval_steady": (torch.bfloat16, torch.bfloat16, True, True),
}


@pytest.mark.parametrize("run", list(LOW_PRECISION))
def test_low_precision_logits_from_reference_file(reference: Reference, run: str) -> None:
    """The released forward always runs the decoder in bf16 (``inputs_embeds.bfloat16()``,
    ``self.model.bfloat16()``), so these match only to bf16 rounding: evalkit in the same
    dtypes must be no further from the official logits than the official bf16 logits are
    from the official float32 ones (twice that, for margin; a wrong splice or module is off
    by the logits' own scale, ~10x more)."""
    if f"{run}.logits" not in reference.tensors:
        pytest.skip(f"{run} not in the reference file (written with --float32-only)")
    vision, llm, round_through_bf16, half_pixels = LOW_PRECISION[run]
    ours, _, _ = evalkit_run(reference, vision, llm, round_through_bf16, half_pixels)
    diffs = max_differences(ours, reference, run)
    official = reference.tensors[f"{run}.logits"].float()
    own_rounding = float((official - reference.tensors["float32.logits"]).abs().max())
    print(f"\n{run}: official bf16 vs its float32 {own_rounding:.3g}; max |evalkit - official|: {diffs}")
    assert ours["logits"].dtype == llm
    # Same dtypes and roundings up to the decoder: the vision features are bit-identical.
    assert all(diffs[f"res{i}"] == 0 for i in range(2, 6)), diffs
    assert diffs["logits"] <= 2 * own_rounding, (own_rounding, diffs)
    assert diffs["lean_logits"] <= 2 * own_rounding, (own_rounding, diffs)
