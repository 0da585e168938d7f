"""Helpers for tests that walk an index the way decoding does."""

from __future__ import annotations

import numpy as np


def text_tokens(index, state: int, eos_ids) -> np.ndarray:
    """``int64[n]``: the ids allowed at ``state`` other than end-of-sequence, ascending (what a
    random walk through the index chooses from)."""
    allowed = index.allowed_tokens(state).numpy()
    return allowed[~np.isin(allowed, eos_ids)]
