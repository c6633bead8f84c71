"""KV-cache plumbing for Osprey's batched decoding.

* :func:`causal_pad_mask` — the 4D mask for rows padded anywhere (left pads, pads between
  a shared prefix and a row's own suffix): each query sees earlier valid keys only;
* :func:`growable_cache` — a transformers ``Cache`` that grows by doubling, so appending a
  token does not copy the whole cache (``DynamicLayer`` concatenates at every step);
* :func:`text_prefix_cache` — the KV of the text every request starts with (BOS, system
  prompt), computed once per model and reused by every batch.
"""

from __future__ import annotations

from typing import Any

import torch

from evalkit.models.osprey.modeling import OspreyModel


def causal_pad_mask(valid: torch.Tensor, q_len: int) -> torch.Tensor:
    """4D boolean mask ``[B, 1, q, K]`` for the last ``q_len`` of ``K`` positions.

    A query sees earlier valid keys; a pad query sees itself only, so no row is empty
    (an all-masked row would give NaN values that leak through a zero weight).
    """
    k_len = valid.shape[1]
    q_idx = torch.arange(k_len - q_len, k_len, device=valid.device)
    k_idx = torch.arange(k_len, device=valid.device)
    causal = k_idx[None, :] <= q_idx[:, None]
    diagonal = k_idx[None, :] == q_idx[:, None]
    return (causal[None] & (valid[:, None, :] | diagonal[None]))[:, None]


def decoder_forward(
    model: OspreyModel,
    embeds: torch.Tensor,
    valid: torch.Tensor,
    positions: torch.Tensor,
    cache: Any,
) -> torch.Tensor:
    """Runs the decoder on new positions with the cache; returns the last hidden states."""
    mask = causal_pad_mask(valid, embeds.shape[1])
    out = model.llm.model(
        inputs_embeds=embeds,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
    )
    return out.last_hidden_state


def growable_cache(data: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> Any:
    """A transformers ``Cache`` whose layers grow by doubling instead of ``torch.cat``.

    transformers' ``DynamicLayer`` copies the whole cache at every decoding step; with a
    7B model and a batch of prefix copies that is gigabytes per token.
    """
    from transformers.cache_utils import Cache, DynamicLayer

    class GrowableLayer(DynamicLayer):
        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
                self.buffers = (key_states[..., :0, :], value_states[..., :0, :])
                self.length = 0
            new_len = self.length + key_states.shape[-2]
            if (
                new_len > self.buffers[0].shape[-2]
                or self.buffers[0].shape[0] != key_states.shape[0]
            ):
                grown = []
                for old, new in zip(self.buffers, (key_states, value_states), strict=True):
                    shape = (*new.shape[:2], max(64, 2 * new_len), new.shape[-1])
                    buffer = new.new_empty(shape)
                    buffer[..., : self.length, :] = old[..., : self.length, :]
                    grown.append(buffer)
                self.buffers = (grown[0], grown[1])
            self.buffers[0][..., self.length : new_len, :] = key_states
            self.buffers[1][..., self.length : new_len, :] = value_states
            self.length = new_len
            self.keys = self.buffers[0][..., :new_len, :]
            self.values = self.buffers[1][..., :new_len, :]
            return self.keys, self.values

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            if self.is_initialized:
                self.buffers = (self.buffers[0][indices], self.buffers[1][indices])
                self.keys = self.buffers[0][..., : self.length, :]
                self.values = self.buffers[1][..., : self.length, :]

    cache = Cache(layer_class_to_replicate=GrowableLayer)
    for layer_idx, (keys, values) in enumerate(data or []):
        cache.update(keys, values, layer_idx)
    return cache


def text_prefix_cache(model: OspreyModel, ids: list[int]) -> Any:
    """A fresh cache holding the KV of ``ids`` (batch 1); computed once per model and text."""
    if not ids:
        return growable_cache()
    store: dict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]]
    store = model.__dict__.setdefault("_text_prefix_kv", {})
    key = tuple(ids)
    if key not in store:
        cache = growable_cache()
        embeds = model.embed_text(torch.tensor(ids))[None]
        valid = torch.ones(1, len(ids), dtype=torch.bool, device=model.device)
        positions = torch.arange(len(ids), device=model.device)[None]
        decoder_forward(model, embeds, valid, positions, cache)
        store.clear()  # one template at a time is the common case; keep memory flat
        layers: list[Any] = list(cache.layers)
        store[key] = [(layer.keys.clone(), layer.values.clone()) for layer in layers]
    return growable_cache(store[key])
