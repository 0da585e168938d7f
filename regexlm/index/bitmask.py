"""Allowed-token bitmasks, packed 32 tokens to a word.

Row ``s`` of the bitmask says which tokens may be sampled at state ``s``: bit ``j`` of word
``w`` (least significant bit first) is token ``32 * w + j``, 1 = allowed. This is the layout
xgrammar, llguidance and outlines-core share, so one mask kernel serves all of them.

Many states allow the same set of classes (every state inside ``[a-z]{1,200}`` far from the
bound), so rows are packed once per distinct class pattern and then copied. A row is packed
either sparsely (scatter the few allowed tokens) or densely (gather the class of every token,
then fold 32 booleans into a word), whichever touches less memory.
"""

from __future__ import annotations

import torch

def _bits(device) -> torch.Tensor:
    return torch.pow(2, torch.arange(32, dtype=torch.int64, device=device))


def _to_int32(words: torch.Tensor) -> torch.Tensor:
    """Unsigned 32-bit words held in int64 -> the same bits as int32."""
    return torch.where(words >= (1 << 31), words - (1 << 32), words).to(torch.int32)


def pack_bitmask(allowed_class: torch.Tensor, class_of: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """``int32[S, ceil(V/32)]`` from ``allowed_class bool[S, C]`` and ``class_of int64[V]``."""
    device = allowed_class.device
    num_words = (vocab_size + 31) // 32
    # rows: [R, C] distinct allowed-class patterns; row_of_state: [S]
    rows, row_of_state = torch.unique(allowed_class.to(torch.uint8), dim=0, return_inverse=True)
    rows = rows.bool()
    num_rows = rows.shape[0]
    live = (class_of != 0).nonzero().flatten()  # tokens allowed somewhere
    if live.numel() * 4 < vocab_size:
        # sparse: scatter each allowed (row, token) bit
        r, k = rows[:, class_of[live]].nonzero(as_tuple=True)
        tok = live[k]
        words = torch.zeros(num_rows * num_words, dtype=torch.int64, device=device)
        words.index_add_(0, r * num_words + torch.div(tok, 32, rounding_mode="floor"), _bits(device)[tok % 32])
        packed = words.view(num_rows, num_words)
    else:
        # dense: one boolean per (row, token), folded 32 to a word
        # padding ids get class 0, which no row allows
        padded = torch.zeros(num_words * 32, dtype=torch.int64, device=device)
        padded[:vocab_size] = class_of
        flags = rows[:, padded].view(num_rows, num_words, 32).to(torch.int64)
        packed = (flags * _bits(device)).sum(-1)
    packed = _to_int32(packed)
    if num_rows == allowed_class.shape[0] and bool((row_of_state == torch.arange(num_rows, device=device)).all()):
        return packed
    return packed[row_of_state]
