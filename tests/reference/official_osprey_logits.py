"""Runs the OFFICIAL Osprey model on seeded random weights and saves weights, inputs and logits.

Run with a separate interpreter that has the official dependencies (transformers==4.31.0,
open_clip_torch, timm==0.6.13; see ``tests/reference/README.md``), never with evalkit's
(transformers>=5). The official source is found through ``--src`` or
``OSPREY_REFERENCE_SRC``. The output file is read by
``tests/test_osprey_reference_parity.py::test_full_model_logits_from_reference_file``
(``OSPREY_REFERENCE_LOGITS=<file>``).

What is built: ``OspreyLlamaForCausalLM`` (ConvNeXt-L CLIP trunk and the 4096-wide mask
extractor, both hard-coded by the official code) with a LLaMA decoder of width 4096 and a
small vocabulary, intermediate size and layer count. No CLIP file is read: the tower's
``torch.load(mm_vision_tower)`` gets an empty state dict saved to a temporary file, then
every parameter is overwritten from a seeded generator (layer-scale gammas 0.1-0.5 so the
trunk is no identity, norm scales around 1, biases non-zero, an ``lm_head`` giving logits of
a few units).

The official ``OspreyLlamaForCausalLM.forward`` casts to bfloat16 itself:
``inputs_embeds = inputs_embeds.bfloat16()`` and ``self.model = self.model.bfloat16()``
(``self.model`` holds the decoder AND the vision tower and projector), then
``self.lm_head.to(hidden_states.dtype)``. Three runs are saved:

* ``float32``: those two casts neutralised (``Tensor.bfloat16`` and ``self.model.bfloat16``
  made identities for the call), so everything runs in float32 — the exact-parity target;
* ``bf16_first``: the forward as released, on the float32 model: vision tower, projector,
  mask extractor and embedding table in float32, decoder and ``lm_head`` in bfloat16;
* ``bf16_steady``: the forward as released, called again: the first call left ``self.model``
  (vision tower and projector included) in bfloat16, so from then on the trunk and projector
  run in bfloat16 too (the mask extractor recasts its own Linears to float32 each call).

and two that replay the released eval scripts (``osprey/eval/*_eval.py``, ``demo/``): the
model loaded with ``torch_dtype=torch.bfloat16`` (here: ``official.bfloat16()``), the vision
tower then put in float16, images passed as ``image.half()`` and masks as ``masks.half()``:

* ``eval_first``: the first ``forward`` of such a script: trunk and projector in float16;
* ``eval_steady``: every later one: the first forward's ``self.model.bfloat16()`` turned the
  float16 tower into bfloat16 (float16 pixels are cast to it by ``CLIP.extract_features``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

IMAGE_TOKEN_INDEX = -200
MASK_ID = 298  # '<mask>' (the official code looks this id up through the tokenizer)
POS_ID = 299  # '<pos>' (the official code takes the position after each <mask>)

CONFIG: dict[str, Any] = {
    "model_type": "osprey",
    "architectures": ["OspreyLlamaForCausalLM"],
    "hidden_size": 4096,  # the official MaskExtractor's out_dim is hard-coded to 4096
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 300,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
    "initializer_range": 0.02,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
    "mm_hidden_size": 768,
    "mm_projector_type": "mlp2x_gelu",
    "mm_use_im_start_end": False,
}


def import_official(src: str) -> Any:
    sys.path.insert(0, src)
    from osprey.model.language_model.osprey_llama import (
        OspreyConfig,
        OspreyLlamaForCausalLM,
    )

    return OspreyConfig, OspreyLlamaForCausalLM


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Every parameter from one seeded generator, at scales that keep activations O(1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".gamma"):  # ConvNeXt layer scale (official init 1e-6)
                value = 0.1 + 0.4 * torch.rand(p.shape, generator=gen)
            elif name.endswith("embed_tokens.weight"):
                value = torch.randn(p.shape, generator=gen)
            elif name == "lm_head.weight":
                value = 0.05 * torch.randn(p.shape, generator=gen)
            elif p.ndim >= 2:  # Linear / Conv weights
                value = torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel())
            elif name.endswith("weight"):  # LayerNorm / RMSNorm scales
                value = 1 + 0.1 * torch.randn(p.shape, generator=gen)
            else:  # biases
                value = 0.05 * torch.randn(p.shape, generator=gen)
            p.copy_(value)


def make_inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed + 1)
    images = torch.randn(1, 3, 512, 512, generator=gen)
    h, w = 300, 410  # the regions' original resolution (not the 512x512 of the pixels)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    masks = torch.zeros(2, h, w)
    masks[0] = (((yy - 120) / 80.0) ** 2 + ((xx - 150) / 110.0) ** 2 <= 1).float()  # ellipse
    masks[1, 180:290, 230:400] = 1  # a box ...
    masks[1, 150:200, 300:330] = 1  # ... with a thin spur
    text = torch.randint(3, MASK_ID, (14,), generator=gen).tolist()
    ids = [1, *text[:4], IMAGE_TOKEN_INDEX, *text[4:8], MASK_ID, POS_ID, *text[8:11], MASK_ID, POS_ID]
    ids += text[11:]
    return images, masks, torch.tensor([ids])


@contextlib.contextmanager
def float32_forward(official: Any) -> Iterator[None]:
    """Makes the forward's two bfloat16 casts identities for the duration of one call."""
    had_own = "bfloat16" in torch.Tensor.__dict__
    original = torch.Tensor.bfloat16
    torch.Tensor.bfloat16 = lambda self, *a, **k: self  # type: ignore[method-assign]
    official.model.bfloat16 = lambda: official.model
    try:
        yield
    finally:
        if had_own:
            torch.Tensor.bfloat16 = original  # type: ignore[method-assign]
        else:
            del torch.Tensor.bfloat16
        del official.model.bfloat16


def run(
    official: Any, images: torch.Tensor, masks: torch.Tensor, ids: torch.Tensor
) -> dict[str, torch.Tensor]:
    """One official forward; returns the logits and the intermediates it computed."""
    seen: dict[str, torch.Tensor] = {}
    encode_images = official.encode_images
    extractor_forward = official.mask_extractor.forward

    def encode_and_record(x: torch.Tensor) -> Any:
        tokens, feats = encode_images(x)
        seen["image_tokens"] = tokens
        for name in ("res2", "res3", "res4", "res5"):
            seen[name] = feats[name]
        return tokens, feats

    def extract_and_record(feats: Any, m: Any) -> Any:
        mask_feats, pos_feats = extractor_forward(feats, m)
        seen["mask_tokens"] = torch.cat(mask_feats)
        seen["pos_tokens"] = torch.cat(pos_feats)
        return mask_feats, pos_feats

    def record_embeds(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        seen["inputs_embeds"] = kwargs["inputs_embeds"]

    official.encode_images = encode_and_record
    official.mask_extractor.forward = extract_and_record
    hook = official.model.register_forward_pre_hook(record_embeds, with_kwargs=True)
    try:
        with torch.no_grad():
            out = official(input_ids=ids, images=images, masks=[masks], return_dict=True)
    finally:
        hook.remove()
        del official.encode_images
        del official.mask_extractor.forward
    seen["logits"] = out.logits
    return {k: v.detach().contiguous().clone() for k, v in seen.items()}


def dtypes(official: Any) -> dict[str, str]:
    def first(module: torch.nn.Module) -> str:
        return str(next(module.parameters()).dtype)

    return {
        "vision_tower": first(official.model.vision_tower),
        "mm_projector": first(official.model.mm_projector),
        "embed_tokens": first(official.model.embed_tokens),
        "decoder_layers": first(official.model.layers),
        "lm_head": first(official.lm_head),
        "mask_extractor": first(official.mask_extractor),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--src", default=os.environ.get("OSPREY_REFERENCE_SRC"), help="official checkout")
    parser.add_argument("--out", required=True, help="output .safetensors")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, default=CONFIG["num_hidden_layers"])
    parser.add_argument("--float32-only", action="store_true", help="skip the two bfloat16 runs")
    args = parser.parse_args()
    if not args.src:
        parser.error("give --src or set OSPREY_REFERENCE_SRC to the official Osprey checkout")
    from safetensors.torch import save_file

    OspreyConfig, OspreyLlamaForCausalLM = import_official(args.src)
    config = dict(CONFIG, num_hidden_layers=args.layers)
    with tempfile.TemporaryDirectory() as tmp:
        empty_clip = Path(tmp) / "empty_clip.bin"
        torch.save({}, empty_clip)  # CLIPVisionTower.load_model: load_state_dict(..., strict=False)
        official = OspreyLlamaForCausalLM(OspreyConfig(**config, mm_vision_tower=str(empty_clip)))
    official = official.float().eval()
    randomise(official, args.seed)
    # The official splicing looks '<mask>' up through a tokenizer attached to every module.
    tokenizer = types.SimpleNamespace(convert_tokens_to_ids=lambda tokens: [MASK_ID for _ in tokens])
    for module in official.modules():
        module.tokenizer = tokenizer

    tensors: dict[str, torch.Tensor] = {
        "state." + k: v.detach().float().contiguous().clone() for k, v in official.state_dict().items()
    }
    images, masks, ids = make_inputs(args.seed)
    tensors.update({"input.images": images, "input.masks": masks, "input.input_ids": ids})
    meta: dict[str, Any] = {
        "config": config,
        "mask_id": MASK_ID,
        "pos_id": POS_ID,
        "seed": args.seed,
        "versions": {},
        "dtypes": {},
        "seconds": {},
    }
    import open_clip  # noqa: F401  (imported by the official code already)
    import timm
    import transformers

    meta["versions"] = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "timm": timm.__version__,
        "python": sys.version.split()[0],
    }

    runs = ["float32"]
    if not args.float32_only:
        runs += ["bf16_first", "bf16_steady", "eval_first", "eval_steady"]
    for name in runs:
        if name == "eval_first":  # from_pretrained(torch_dtype=bf16), then the tower to fp16
            official.bfloat16()
            official.get_vision_tower().to(dtype=torch.float16)
        meta["dtypes"][name + "_before"] = dtypes(official)
        start = time.perf_counter()
        if name == "float32":
            with float32_forward(official):
                seen = run(official, images, masks, ids)
            assert all(v.dtype == torch.float32 for v in seen.values()), {k: v.dtype for k, v in seen.items()}
        elif name.startswith("eval_"):
            seen = run(official, images.half(), masks.half(), ids)
        else:
            seen = run(official, images, masks, ids)
        meta["seconds"][name] = round(time.perf_counter() - start, 1)
        meta["dtypes"][name + "_after"] = dtypes(official)
        meta["dtypes"][name + "_tensors"] = {k: str(v.dtype) for k, v in seen.items()}
        for key, value in seen.items():
            tensors[f"{name}.{key}"] = value
        print(f"{name}: {meta['seconds'][name]} s, logits {tuple(seen['logits'].shape)}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, args.out, metadata={"osprey_reference": json.dumps(meta)})
    print(json.dumps(meta, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
