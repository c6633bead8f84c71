"""The lean cascade-attention decoder equals transformers' Llama forward on full sequences."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from evalkit.models.osprey.cascade_decoder import Grouping, RowKV, SharedKV, decode_forward


def llama(kv_heads: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        max_position_embeddings=128,
    )
    config._attn_implementation = "eager"
    return LlamaForCausalLM(config).eval()


def reference_hidden(model: LlamaForCausalLM, embeds: torch.Tensor) -> torch.Tensor:
    """Final-normed hidden states of one unpadded sequence ``[L, hidden]``."""
    out = model.model(inputs_embeds=embeds[None], use_cache=False)
    return out.last_hidden_state[0]


@pytest.mark.parametrize("kv_heads", [4, 2])  # multi-head and grouped-query attention
@torch.inference_mode()
def test_text_prefix_image_prefix_suffix_and_steps_match_full_forward(kv_heads: int) -> None:
    model = llama(kv_heads)
    hidden = 32
    g = torch.Generator().manual_seed(1)
    text = torch.randn(5, hidden, generator=g)  # shared by everything
    images = [torch.randn(n, hidden, generator=g) for n in (7, 4)]  # per-group prefixes
    # rows: (group, own suffix length); group 0 has three rows, group 1 one
    rows = [(0, 3), (0, 1), (1, 4), (0, 2)]
    suffixes = [torch.randn(n, hidden, generator=g) for _, n in rows]
    steps = [torch.randn(len(rows), hidden, generator=g) for _ in range(2)]

    # 1. text prefix (one group), 2. image prefixes over it (left-padded), 3. suffixes over
    # the image prefixes, 4. two decoding steps.
    text_kv = RowKV(1, torch.device("cpu"))
    ones = torch.ones(1, 5, dtype=torch.bool)
    assert decode_forward(model, text[None], torch.arange(5)[None], ones, text_kv, None, None, "none") is None
    text_shared = SharedKV(text_kv.keys_view(), text_kv.values_view(), text_kv.valid)

    width = max(len(x) for x in images)
    img_embeds = torch.zeros(2, width, hidden)
    img_valid = torch.zeros(2, width, dtype=torch.bool)
    img_pos = torch.zeros(2, width, dtype=torch.long)
    for r, x in enumerate(images):
        img_embeds[r, width - len(x) :] = x
        img_valid[r, width - len(x) :] = True
        img_pos[r, width - len(x) :] = torch.arange(5, 5 + len(x))
    image_kv = RowKV(2, torch.device("cpu"))
    everyone = Grouping.build(torch.zeros(2, dtype=torch.long), 1)
    decode_forward(model, img_embeds, img_pos, img_valid, image_kv, text_shared, everyone, "none")
    prefix = text_shared.extend(2, image_kv)
    assert prefix.valid.tolist()[1] == [True] * 5 + [False] * 3 + [True] * 4

    grouping = Grouping.build(torch.tensor([gr for gr, _ in rows]), 2)
    width = max(n for _, n in rows)
    suf = torch.zeros(len(rows), width, hidden)
    suf_valid = torch.zeros(len(rows), width, dtype=torch.bool)
    suf_pos = torch.zeros(len(rows), width, dtype=torch.long)
    for r, ((gr, n), x) in enumerate(zip(rows, suffixes, strict=True)):
        start = 5 + len(images[gr])
        suf[r, width - n :] = x
        suf_valid[r, width - n :] = True
        suf_pos[r, width - n :] = torch.arange(start, start + n)
    own = RowKV(len(rows), torch.device("cpu"))
    got = [decode_forward(model, suf, suf_pos, suf_valid, own, prefix, grouping, "last")]
    assert got[0] is not None and got[0].shape == (len(rows), 1, hidden)
    next_pos = suf_pos[:, -1] + 1
    for k, step in enumerate(steps):
        got.append(
            decode_forward(
                model,
                step[:, None],
                (next_pos + k)[:, None],
                torch.ones(len(rows), 1, dtype=torch.bool),
                own,
                prefix,
                grouping,
                "all",
            )
        )

    for r, (gr, _) in enumerate(rows):
        full = torch.cat([text, images[gr], suffixes[r], *[s[r : r + 1] for s in steps]])
        expected = reference_hidden(model, full)
        n = len(full)
        for k, out in enumerate(got):
            assert out is not None
            position = n - len(steps) - 1 + k
            torch.testing.assert_close(out[r, -1], expected[position], atol=1e-5, rtol=1e-5)


@torch.inference_mode()
def test_finished_rows_leave_without_changing_the_others() -> None:
    model = llama(4)
    g = torch.Generator().manual_seed(2)
    prefix_kv = RowKV(2, torch.device("cpu"))
    pre = torch.randn(2, 6, 32, generator=g)
    valid = torch.ones(2, 6, dtype=torch.bool)
    pos = torch.arange(6).expand(2, -1)
    decode_forward(model, pre, pos, valid, prefix_kv, None, None, "none")
    prefix = SharedKV(prefix_kv.keys_view(), prefix_kv.values_view(), prefix_kv.valid)
    grouping = Grouping.build(torch.tensor([0, 1, 1]), 2)
    own = RowKV(3, torch.device("cpu"))
    steps = torch.randn(3, 3, 32, generator=g)
    ones = torch.ones(3, 1, dtype=torch.bool)
    for k in range(2):
        decode_forward(
            model, steps[:, k : k + 1], torch.full((3, 1), 6 + k), ones, own, prefix, grouping, "all"
        )
    keep = torch.tensor([0, 2])
    own.select(keep)
    grouping = Grouping.build(grouping.group_of[keep], 2)
    out = decode_forward(
        model, steps[keep, 2:3], torch.full((2, 1), 8), ones[keep], own, prefix, grouping, "all"
    )
    assert out is not None
    for slot, row in enumerate(keep.tolist()):
        group = grouping.group_of[slot]
        full = torch.cat([pre[group], steps[row]])
        torch.testing.assert_close(out[slot, -1], reference_hidden(model, full)[-1], atol=1e-5, rtol=1e-5)
