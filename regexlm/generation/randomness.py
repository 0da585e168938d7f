"""Per-row randomness: every sampled row has its own seed, and counts its own steps.

The sampling step draws a token as ``argmax(z - log(-log u))`` (see :mod:`regexlm.ops`), and
every backend computes the uniform numbers ``u`` inside the step, from a counter-based generator
keyed by the row's seed and step and counted by the token id (:mod:`regexlm.ops.noise`). A row's
seed is its request's seed, or a fresh one drawn from torch's global generator when the request
gives none; its step is the number of tokens it has generated so far. Nothing about the batch
enters the numbers, so a seeded request gives the same tokens alone or in any batch, at any row,
and on every backend (they compute the same numbers). No noise tensor is drawn or copied: the
step receives two small per-row columns. Greedy rows draw nothing; their seed is 0.
"""

from __future__ import annotations

import torch

from regexlm.ops.noise import as_int64, fresh_seed


def row_seed(temperature: float, seed: int | None) -> int:
    """The row's seed (an int64 value): the request's, a fresh one, or 0 for a greedy row."""
    if not temperature > 0:
        return 0
    return as_int64(fresh_seed() if seed is None else int(seed))


def step_counters(seeds: list[int], steps: list[int], device) -> tuple[torch.Tensor, torch.Tensor]:
    """The step's per-row columns in one host-to-device copy: seeds int64[B], steps int32[B]."""
    host = torch.tensor([seeds, steps], dtype=torch.int64)  # [2, B]
    both = host.to(device)
    return both[0], both[1].to(torch.int32)
