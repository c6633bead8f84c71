"""Tiny random checkpoints of real transformers VLM architectures, built offline.

A byte-level BPE tokenizer trained here with the ``tokenizers`` library (wrapped in
``PreTrainedTokenizerFast``), image processors from local settings, a chat template written
here in each family's layout, random weights: saved with ``save_pretrained`` into a folder the
``hf-vlm`` adapter loads back like a downloaded checkpoint. Nothing is fetched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

WORDS = (
    "USER: ASSISTANT: What is the category of region 1 2 3? Using only one word or phrase. "
    "This provides an overview of the picture. the object in the image red green blue circle "
    "square triangle house roof door window background Yes No Is there a in "
    '[0, 1, 2, 3, 4, 5, 6, 7, 8, 9] (1,2),(3,4) {"bbox_2d": [1, 2]} [0.125,0.5] '
    "system You are a helpful assistant. user assistant"
)
# LLaVA-1.5 (llava-hf) layout: "USER: <image>\n{text} ASSISTANT:", answers "{text}</s>".
LLAVA_TEMPLATE = (
    "{% for m in messages %}{{ m['role'].upper() }}: "
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% if m['role'] == 'assistant' %}</s>{% endif %} {% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
# Qwen2-VL layout: default system turn, <|vision_start|><|image_pad|><|vision_end|> in place.
QWEN_TEMPLATE = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAVA_SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]
QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
]


def byte_level_tokenizer(specials: list[str], vocab_size: int = 400) -> Any:
    """A byte-level BPE (every string encodes and decodes back) trained on :data:`WORDS`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([WORDS], trainer=trainer)
    return tok


def _sharpen(model: Any) -> None:
    """Logits far from ties, so greedy decoding is well defined whatever the batch padding."""
    with torch.no_grad():
        model.get_output_embeddings().weight.normal_(0, 1.0)


def build_tiny_llava(folder: Path, seed: int = 0) -> Path:
    """A 2-layer LLaVA (CLIP ViT 1 layer, 28 px images = 4 patches; Llama 32 wide)."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    raw = byte_level_tokenizer(LLAVA_SPECIALS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
    )
    image_processor = CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        chat_template=LLAVA_TEMPLATE,
        num_additional_image_tokens=1,
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            image_size=28,
            patch_size=14,
        ),
        text_config=LlamaConfig(
            vocab_size=raw.get_vocab_size(),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            bos_token_id=raw.token_to_id("<s>"),
            eos_token_id=raw.token_to_id("</s>"),
            pad_token_id=raw.token_to_id("<pad>"),
        ),
        image_token_index=raw.token_to_id("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    _sharpen(model)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_qwen2_vl(folder: Path, seed: int = 0, model_type: str = "qwen2_vl") -> Path:
    """A 2-layer Qwen2-VL (or Qwen2.5-VL with ``model_type='qwen2_5_vl'``): 1 vision block,
    images resized to at most 56x56 px (16 patches, 4 tokens), text 32 wide with M-RoPE."""
    import transformers
    from transformers import PreTrainedTokenizerFast, Qwen2VLImageProcessor

    qwen25 = model_type == "qwen2_5_vl"
    raw = byte_level_tokenizer(QWEN_SPECIALS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_start_token": "<|vision_start|>",
            "vision_end_token": "<|vision_end|>",
        },
    )
    image_processor = Qwen2VLImageProcessor(
        min_pixels=28 * 28, max_pixels=56 * 56, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    ids = {t: raw.token_to_id(t) for t in QWEN_SPECIALS}
    vision: dict[str, Any] = dict(
        depth=1, hidden_size=32, num_heads=4, patch_size=14, spatial_merge_size=2, temporal_patch_size=2
    )
    if qwen25:
        vision.update(intermediate_size=64, out_hidden_size=32, window_size=56, fullatt_block_indexes=[0])
    else:
        vision.update(embed_dim=32, mlp_ratio=2)
    config_class: Any = transformers.Qwen2_5_VLConfig if qwen25 else transformers.Qwen2VLConfig
    config = config_class(
        text_config=dict(
            vocab_size=raw.get_vocab_size(),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]},
            bos_token_id=None,
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    model_class: Any = (
        transformers.Qwen2_5_VLForConditionalGeneration
        if qwen25
        else transformers.Qwen2VLForConditionalGeneration
    )
    torch.manual_seed(seed)
    model = model_class(config).eval()
    _sharpen(model)
    model.save_pretrained(folder)
    # The processor's files as a released checkpoint has them. (Its class cannot be built
    # here: transformers 5 wants torchvision for the video half, which evalkit never uses.)
    image_processor.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "chat_template.jinja").write_text(QWEN_TEMPLATE)
    processor_class = "Qwen2_5_VLProcessor" if qwen25 else "Qwen2VLProcessor"
    (folder / "processor_config.json").write_text(json.dumps({"processor_class": processor_class}))
    return folder
