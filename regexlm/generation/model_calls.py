"""Calls into a Hugging Face causal LM: a left-padded prefill, one-token steps, the KV cache.

Everything here is about the model's interface, nothing about patterns: how a batch of prompts
of different lengths becomes one tensor (left padding, an attention mask, position ids that count
only real tokens), which argument carries the KV cache (``cache`` in recent transformers,
``past_key_values`` before), and how rows leave the cache when they finish.
"""

from __future__ import annotations

import inspect

import torch


def left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts -> input_ids int64[B, L] and attention_mask int64[B, L], padded on the left."""
    length = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), length), dtype=torch.long)
    for b, ids in enumerate(prompts):
        input_ids[b, length - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention_mask[b, length - len(ids) :] = 1
    return input_ids.to(device), attention_mask.to(device)


def prefill(model, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """One pass over the padded prompts: next-token logits [B, V] and the KV cache."""
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)  # [B, L]
    kwargs = {}
    if _accepts(model, "logits_to_keep"):
        kwargs["logits_to_keep"] = 1
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=True,
        **kwargs,
    )
    return out.logits[:, -1, :], _cache_of(out)  # [B, V]


def step(
    model, tokens: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, cache
):
    """One new token per row against the cache: tokens [B], attention_mask [B, T] (the new
    token included), position_ids [B, 1] -> (logits [B, V], cache)."""
    out = model(
        input_ids=tokens.unsqueeze(1),  # [B, 1]
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=True,
        **{_cache_argument(model): cache},
    )
    return out.logits[:, -1, :], _cache_of(out)  # [B, V]


def select_cache_rows(cache, index: torch.Tensor) -> None:
    """Keep only the rows at ``index`` in a transformers KV cache (in place)."""
    if hasattr(cache, "batch_select_indices"):
        cache.batch_select_indices(index)
    elif hasattr(cache, "reorder_cache"):
        cache.reorder_cache(index)
    else:  # legacy tuple-of-tuples caches are not produced by current transformers models
        raise TypeError(f"cannot select rows of a {type(cache).__name__} KV cache")


def synchronize(device) -> None:
    """Wait for queued device work, so that a host clock measures it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


_ACCEPTS: dict[tuple[type, str], bool] = {}


def _accepts(model, name: str) -> bool:
    key = (type(model), name)
    if key not in _ACCEPTS:
        try:
            _ACCEPTS[key] = name in inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            _ACCEPTS[key] = False
    return _ACCEPTS[key]


def _cache_argument(model) -> str:
    """The forward argument that takes the KV cache: ``cache`` (recent transformers) or the
    older ``past_key_values``."""
    return "cache" if _accepts(model, "cache") else "past_key_values"


def _cache_of(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values
