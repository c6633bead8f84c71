"""A lean LLaMA forward for batched decoding over shared prefixes (cascade attention).

The cascade path (:mod:`evalkit.models.osprey.generate_cascade`) decodes many requests
that share a long prefix: every region question about one image starts with the same
system prompt, image tokens and fixed text. Copying that
prefix's keys and values into every batch row (what a per-row KV cache must do) costs
memory and bandwidth in proportion to rows x prefix length; at 7B with 1,024 image tokens
it is ~0.6 GB per row. Here the prefix is stored once per *group* (an image) and attended
to with one matmul per group:

* :class:`SharedKV` — a prefix's keys/values ``[G, Hkv, P, D]`` per layer and which of its
  positions are real (``[G, P]``; prefixes are left-padded to one length);
* :class:`RowKV` — each row's own keys/values (its suffix and generated tokens) in buffers
  that grow by doubling, and which of its positions are real;
* :func:`attend` — softmax over (the row's group prefix ∪ the row's own keys), the prefix
  scores computed per group with the group's rows stacked as queries, so no prefix copy.

Everything per token is transformers' own modules (RMSNorm, projections, rotary table, MLP),
called on the model's weights; only the attention is ours: for a few queries per row (a
request's suffix, decoding) scores over prefix and own keys go through one float32 softmax,
as transformers' eager attention and the released LLaVA-era code do; for long query runs
over a short shared prefix (an image's prefix after the system prompt) torch's fused
``scaled_dot_product_attention``, whose memory does not grow with queries x keys.

``need`` says which outputs a forward must produce: ``"none"`` (a prefix: only its
keys/values matter) and ``"last"`` (a prompt's suffix: the last position's hidden state)
let the last layer skip its query, attention and MLP where nobody reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

Need = Literal["none", "last", "all"]
# A RowKV buffer that must grow (decoding past its reserve) gains at least this many
# positions, and otherwise doubles: appending a token is amortised O(1).
MIN_GROWTH_TOKENS = 16


@dataclass
class SharedKV:
    """Keys/values of prefixes shared by groups of rows, one entry per decoder layer."""

    keys: list[torch.Tensor]  # [G, Hkv, P, D]
    values: list[torch.Tensor]
    valid: torch.Tensor  # [G, P] bool

    @property
    def length(self) -> int:
        return int(self.valid.shape[1])

    def extend(self, rows: int, own: RowKV | None) -> SharedKV:
        """This prefix (one group, or one per row) followed by ``own``'s tokens, if any:
        ``rows`` rows become the groups of the result."""
        keys, values, valid = self.keys, self.values, self.valid
        if valid.shape[0] == 1 and rows != 1:
            keys = [k.expand(rows, -1, -1, -1) for k in keys]
            values = [v.expand(rows, -1, -1, -1) for v in values]
            valid = valid.expand(rows, -1)
        if own is None:
            return SharedKV(keys, values, valid)
        return SharedKV(
            [torch.cat([a, b], dim=2) for a, b in zip(keys, own.keys_view(), strict=True)],
            [torch.cat([a, b], dim=2) for a, b in zip(values, own.values_view(), strict=True)],
            torch.cat([valid, own.valid], dim=1),
        )


class RowKV:
    """Per-row keys/values that grow along the sequence by doubling (appending a token
    does not copy the cache)."""

    def __init__(self, rows: int, device: torch.device, reserve: int = 0):
        """``reserve``: room for tokens appended after the first forward (a prefix that is
        never extended needs none: at 7B, 1,024 tokens of KV are 0.5 GB per image)."""
        self.buffers: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.length = 0
        self.reserve = reserve
        self.valid = torch.zeros(rows, 0, dtype=torch.bool, device=device)

    def append_valid(self, valid: torch.Tensor) -> None:
        self.valid = torch.cat([self.valid, valid], dim=1)

    def append(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Stores a layer's new ``[B, Hkv, q, D]``; call for every layer, then ``commit``."""
        new_len = self.length + keys.shape[2]
        if layer == len(self.buffers):
            self.buffers.append((keys[:, :, :0], values[:, :, :0]))
        old_k, old_v = self.buffers[layer]
        if new_len > old_k.shape[2]:
            grown = []
            for old, new in ((old_k, keys), (old_v, values)):
                room = self.reserve if self.length == 0 else max(MIN_GROWTH_TOKENS, new_len)
                buffer = new.new_empty((*new.shape[:2], new_len + room, new.shape[3]))
                buffer[:, :, : self.length] = old[:, :, : self.length]
                grown.append(buffer)
            old_k, old_v = grown
            self.buffers[layer] = (old_k, old_v)
        old_k[:, :, self.length : new_len] = keys
        old_v[:, :, self.length : new_len] = values

    def commit(self, added: int) -> None:
        self.length += added

    def keys_view(self) -> list[torch.Tensor]:
        return [k[:, :, : self.length] for k, _ in self.buffers]

    def values_view(self) -> list[torch.Tensor]:
        return [v[:, :, : self.length] for _, v in self.buffers]

    def select(self, index: torch.Tensor) -> None:
        """Keeps rows ``index`` (finished rows leave the batch)."""
        self.buffers = [(k[index], v[index]) for k, v in self.buffers]
        self.valid = self.valid[index]


@dataclass
class Grouping:
    """Which prefix group each row reads, and the rows laid out per group for matmuls."""

    group_of: torch.Tensor  # [B] long
    # [G, R] long: the row of each group's r-th member; padding slots repeat row 0 (what
    # they compute is never read back)
    slots: torch.Tensor
    flat_slot: torch.Tensor  # [B] long: where row b sits in the flattened [G * R]

    @staticmethod
    def build(group_of: torch.Tensor, groups: int) -> Grouping:
        members: list[list[int]] = [[] for _ in range(groups)]
        for row, g in enumerate(group_of.tolist()):
            members[g].append(row)
        width = max(1, max(len(m) for m in members))
        rows = group_of.shape[0]
        slots = torch.zeros((groups, width), dtype=torch.long)
        flat = torch.empty(rows, dtype=torch.long)
        for g, m in enumerate(members):
            slots[g, : len(m)] = torch.tensor(m, dtype=torch.long)
            for r, row in enumerate(m):
                flat[row] = g * width + r
        device = group_of.device
        return Grouping(group_of, slots.to(device), flat.to(device))

    def to_groups(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, H, q, X]`` -> ``[G, H, R * q, X]``."""
        g, r = self.slots.shape
        grouped = x[self.slots.flatten()].view(g, r, *x.shape[1:])
        return grouped.transpose(1, 2).reshape(g, x.shape[1], r * x.shape[2], x.shape[3])

    def to_rows(self, x: torch.Tensor, q: int) -> torch.Tensor:
        """``[G, H, R * q, X]`` -> ``[B, H, q, X]``."""
        g, h, _, last = x.shape
        r = self.slots.shape[1]
        per_slot = x.view(g, h, r, q, last).transpose(1, 2).reshape(g * r, h, q, last)
        return per_slot[self.flat_slot]


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """transformers' ``apply_rotary_pos_emb`` for one tensor (cos/sin ``[B, q, D]``)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return (x * cos[:, None]) + (rotated * sin[:, None])


def attend(
    q: torch.Tensor,
    own_k: torch.Tensor,
    own_v: torch.Tensor,
    allowed: torch.Tensor,
    scaling: float,
    prefix: tuple[torch.Tensor, torch.Tensor, Grouping] | None = None,
) -> torch.Tensor:
    """Attention of queries ``[B, H, q, D]`` over their group's prefix and their own keys.

    ``own_k``/``own_v``: ``[B, Hkv, S, D]``; ``prefix``: one layer's prefix keys/values
    ``[G, Hkv, P, D]`` and the rows' grouping; ``allowed``: ``[B, 1, H/Hkv * q, P + S]``
    from :func:`attention_mask`. Grouped-query models fold the query heads that share a key
    head into the query axis, so keys are never repeated.
    """
    b, heads, n_q, dim = q.shape
    kv_heads = own_k.shape[1]
    if n_q > 1 and (prefix is None or (prefix[0].shape[0] == 1 and prefix[0].shape[2] <= n_q)):
        # Many queries over a short prefix all rows share (the system prompt): the fused
        # kernel, whose memory does not grow with queries x keys, over the prefix copied
        # per row (cheap when it is shorter than the queries).
        keys, values = own_k, own_v
        if prefix is not None and prefix[0].shape[2]:
            expand = (b, -1, -1, -1)
            keys = torch.cat([prefix[0].expand(*expand), own_k], dim=2)
            values = torch.cat([prefix[1].expand(*expand), own_v], dim=2)
        return F.scaled_dot_product_attention(
            q, keys, values, attn_mask=allowed[:, :, :n_q], scale=scaling, enable_gqa=heads != kv_heads
        )
    folded = (heads // kv_heads) * n_q
    q = q.reshape(b, kv_heads, folded, dim)
    scores = torch.matmul(q, own_k.transpose(2, 3))
    p = 0
    if prefix is not None and prefix[0].shape[2]:
        pre_k, pre_v, grouping = prefix
        p = pre_k.shape[2]
        pre = grouping.to_rows(torch.matmul(grouping.to_groups(q), pre_k.transpose(2, 3)), folded)
        scores = torch.cat([pre, scores], dim=-1)
    scores = (scores * scaling).masked_fill_(~allowed, float("-inf"))
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    out = torch.matmul(probs[..., p:], own_v)
    if p:
        out = out + grouping.to_rows(torch.matmul(grouping.to_groups(probs[..., :p]), pre_v), folded)
    return out.reshape(b, heads, n_q, dim)


def attention_mask(
    own_valid: torch.Tensor,
    n_q: int,
    last_only: bool,
    rep: int,
    shared: SharedKV | None,
    grouping: Grouping | None,
) -> torch.Tensor:
    """``[B, 1, rep * q, P + S]``: which keys each (folded) query may see.

    Query i (own index S - n_q + i) sees its group's real prefix positions, earlier real
    own keys and itself (a pad query must see something, or its softmax is NaN; its output
    is never used). ``last_only``: the mask of the last query alone.
    """
    total = own_valid.shape[1]
    q_idx = torch.arange(total - n_q, total, device=own_valid.device)
    if last_only:
        q_idx = q_idx[-1:]
    k_idx = torch.arange(total, device=own_valid.device)
    causal = k_idx[None, :] <= q_idx[:, None]
    own = causal[None] & (own_valid[:, None, :] | (k_idx[None, :] == q_idx[:, None])[None])
    allowed = own.repeat(1, rep, 1)[:, None]
    if shared is not None and shared.length:
        assert grouping is not None
        pre = shared.valid[grouping.group_of][:, None, None, :]
        allowed = torch.cat([pre.expand(-1, 1, allowed.shape[2], -1), allowed], dim=-1)
    return allowed


def decode_forward(
    llm: Any,
    embeds: torch.Tensor,
    positions: torch.Tensor,
    valid: torch.Tensor,
    own: RowKV,
    shared: SharedKV | None,
    grouping: Grouping | None,
    need: Need,
) -> torch.Tensor | None:
    """Runs new positions ``[B, q, hidden]`` (left-padded; ``valid`` ``[B, q]``) through the
    decoder, appending their keys/values to ``own``. Returns the final-normed hidden states
    of the positions ``need`` asks for (``[B, 1, hidden]`` for ``"last"``), or None."""
    model = llm.model
    layers = model.layers
    n_q = embeds.shape[1]
    own.append_valid(valid)
    total = own.length + n_q
    rep = model.config.num_attention_heads // model.config.num_key_value_heads
    allowed = attention_mask(own.valid, n_q, False, rep, shared, grouping)
    cos, sin = model.rotary_emb(embeds, positions)
    x = embeds
    last_layer = len(layers) - 1
    for i, layer in enumerate(layers):
        attn = layer.self_attn
        h = layer.input_layernorm(x)
        shape = (*h.shape[:2], -1, attn.head_dim)
        k = rotate(attn.k_proj(h).view(shape).transpose(1, 2), cos, sin)
        v = attn.v_proj(h).view(shape).transpose(1, 2)
        own.append(i, k, v)
        if i == last_layer and need == "none":
            break
        own_k = own.buffers[i][0][:, :, :total]
        own_v = own.buffers[i][1][:, :, :total]
        layer_allowed, layer_cos, layer_sin = allowed, cos, sin
        if i == last_layer and need == "last":
            x, h = x[:, -1:], h[:, -1:]
            layer_cos, layer_sin = cos[:, -1:], sin[:, -1:]
            layer_allowed = attention_mask(own.valid, n_q, True, rep, shared, grouping)
            shape = (h.shape[0], 1, -1, attn.head_dim)
        q = rotate(attn.q_proj(h).view(shape).transpose(1, 2), layer_cos, layer_sin)
        prefix = None
        if shared is not None:
            assert grouping is not None
            prefix = (shared.keys[i], shared.values[i], grouping)
        out = attend(q, own_k, own_v, layer_allowed, attn.scaling, prefix)
        x = x + attn.o_proj(out.transpose(1, 2).reshape(*x.shape[:2], -1))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    own.commit(n_q)
    if need == "none":
        return None
    result: torch.Tensor = model.norm(x)
    return result
