"""Synthetic index tables and step inputs, shared by the ops tests and benchmarks.

`random_tables` builds tables shaped like a real index's: a token is allowed in a state exactly
when its class has a next state there. The automaton behind them is random, so ``min_tokens`` is
just a plausible labelling. `pack_bitmask` packs an allowed mask in the xgrammar layout, for the
benchmarks that compare against bitmask-based pipelines.
"""

from __future__ import annotations

import torch

from regexlm.ops.types import IndexTables


def pack_bitmask(allowed: torch.Tensor) -> torch.Tensor:
    """bool[S, V] -> int32[S, ceil(V/32)], bit j of word w is token 32w + j."""
    S, V = allowed.shape
    W = (V + 31) // 32
    padded = torch.zeros(S, W * 32, dtype=torch.int64, device=allowed.device)
    padded[:, :V] = allowed.to(torch.int64)
    weights = 1 << torch.arange(32, dtype=torch.int64, device=allowed.device)  # [32]
    words = (padded.view(S, W, 32) * weights).sum(-1)  # [S, W] in [0, 2^32)
    words = torch.where(words >= 2**31, words - 2**32, words)
    return words.to(torch.int32)


def unpack_bitmask(words: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Bitmask rows int32[B, W] -> bool[B, V]; bit j of word w is token 32w + j."""
    shifts = torch.arange(32, dtype=torch.int32, device=words.device)
    # bits: [B, W, 32]; an arithmetic shift keeps bit 31 correct, as only the low bit is read.
    bits = (words.unsqueeze(-1) >> shifts) & 1
    return bits.view(words.shape[0], -1)[:, :vocab_size] != 0


def random_tables(
    num_states: int,
    vocab_size: int,
    num_classes: int = 16,
    *,
    allow_prob: float = 0.5,
    max_min_tokens: int = 6,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> IndexTables:
    """Random but self-consistent tables; state 0 allows nothing, states 1.. allow some classes."""
    g = torch.Generator().manual_seed(seed)
    S, V, C = num_states, vocab_size, num_classes
    class_of = torch.randint(0, C, (V,), generator=g, dtype=torch.int32)
    class_of[:C] = torch.arange(min(C, V), dtype=torch.int32)[: min(C, V)]  # every class used
    nxt = (
        torch.randint(1, S, (S, C), generator=g, dtype=torch.int32)
        if S > 1
        else torch.zeros(S, C, dtype=torch.int32)
    )
    ok = torch.rand(S, C, generator=g) < allow_prob
    ok[0] = False
    nxt = torch.where(ok, nxt, torch.full_like(nxt, -1))
    min_tokens = torch.randint(0, max_min_tokens + 1, (S,), generator=g, dtype=torch.int32)
    return IndexTables(nxt, class_of, min_tokens).to(device)


def step_inputs(
    batch: int,
    vocab_size: int,
    tables: IndexTables,
    *,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict:
    """Logits, states, budgets, per-row parameters, seen and noise for one step.

    ``seeds`` (int64[B]) and ``steps`` (int32[B]) are included too; a step given both ``noise``
    and seeds reads the noise, so pop ``noise`` to use the in-step generator.
    """
    g = torch.Generator().manual_seed(seed)
    B, V = batch, vocab_size
    S = tables.num_states
    logits = (torch.randn(B, V, generator=g) * 3).to(dtype)
    states = torch.randint(1, max(S, 2), (B,), generator=g, dtype=torch.int32) % max(S, 1)
    return dict(
        logits=logits.to(device),
        states=states.to(device),
        budgets=torch.full((B,), -1, dtype=torch.int32, device=device),
        temperature=torch.ones(B, device=device),
        top_k=torch.zeros(B, dtype=torch.int32, device=device),
        top_p=torch.ones(B, device=device),
        repetition_penalty=torch.ones(B, device=device),
        seen=(torch.rand(B, V, generator=g) < 0.05).to(device),
        tables=tables,
        noise=torch.rand(B, V, generator=g).clamp(min=1e-12).to(device),
        seeds=torch.randint(-(2**63), 2**63 - 1, (B,), generator=g).to(device),
        steps=torch.randint(0, 1000, (B,), generator=g, dtype=torch.int32).to(device),
    )
