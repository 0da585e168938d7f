"""Allowed-token bitmasks, packed 32 tokens to a word.

Row ``s`` of the bitmask says which tokens may be sampled at state ``s``: bit ``j`` of word
``w`` (least significant bit first) is token ``32 * w + j``, 1 = allowed. This is the layout
xgrammar, llguidance and outlines-core share, so one mask kernel serves all of them.

Many states allow the same set of classes (every state inside ``[a-z]{1,200}`` far from the
bound), so rows are packed once per distinct class pattern and then copied. A row is packed
sparsely (scatter the few allowed tokens) when few tokens are ever allowed; otherwise each class
gets its own packed mask, and since classes own disjoint bits, a row is the sum of the masks of
the classes it allows: one ``[R, C] x [C, W]`` matrix product (float64 holds 32-bit words
exactly). With very many classes, each token's flag is gathered and folded 8 to a byte.
"""

from __future__ import annotations

import numpy as np
import torch

_BITS: dict = {}


def _bits(device) -> torch.Tensor:
    """``float64[32]``: ``2 ** j``, made once per device."""
    key = str(device)
    found = _BITS.get(key)
    if found is None:
        found = _BITS[key] = torch.pow(2.0, torch.arange(32, dtype=torch.float64, device=device))
    return found


def _sum_bits(
    slot: torch.Tensor, token: torch.Tensor, size: int, exact: bool = True
) -> torch.Tensor:
    """Words ``[size]`` with bit ``token % 32`` set in word ``slot``, for each (slot, token).

    The bits of one word are distinct, so their sum is their union; float64 holds any sum of
    distinct 32-bit values exactly. Returned as int64 (``exact``) or float64.
    """
    weights = _bits(slot.device)[token % 32]
    words = torch.bincount(slot, weights=weights, minlength=size)
    return words.to(torch.int64) if exact else words


def _to_int32(words: torch.Tensor) -> torch.Tensor:
    """Unsigned 32-bit words held in int64 -> the same bits as int32 (the cast truncates)."""
    return words.to(torch.int32)


# Below this many states, rows are packed as they are, without looking for repeats.
DEDUPE_FROM = 64
# Up to this many classes, wide rows are packed by a matrix product of per-class masks.
MATMUL_MAX_CLASSES = 1024


def pack_bitmask(
    allowed_class: torch.Tensor,
    class_of: torch.Tensor,
    vocab_size: int,
    candidates: torch.Tensor | None = None,
) -> torch.Tensor:
    """``int32[S, ceil(V/32)]`` from ``allowed_class bool[S, C]`` and ``class_of int64[V]``.

    ``candidates`` optionally lists every token whose class is not 0 (saves a scan of V).
    """
    device = allowed_class.device
    num_words = (vocab_size + 31) // 32
    num_states = allowed_class.shape[0]
    if num_states >= DEDUPE_FROM:
        # rows: [R, C] distinct allowed-class patterns; row_of_state: [S]
        rows, row_of_state = _distinct_rows(allowed_class)
    else:
        rows, row_of_state = allowed_class, None
    num_rows = rows.shape[0]
    live = (class_of != 0).nonzero().flatten() if candidates is None else candidates
    if live.numel() * 4 < vocab_size:
        # sparse: scatter each allowed (row, token) bit
        r, k = rows[:, class_of[live]].nonzero(as_tuple=True)
        tok = live[k]
        slot = r * num_words + torch.div(tok, 32, rounding_mode="floor")
        packed = _sum_bits(slot, tok, num_rows * num_words).view(num_rows, num_words)
    elif rows.shape[1] <= MATMUL_MAX_CLASSES:
        # per-class masks: tokens of different classes are different bits, so a row's words
        # are the *sum* of its allowed classes' words, a matrix product (exact in float64)
        tok = live
        cls = class_of[tok]
        slot = cls * num_words + torch.div(tok, 32, rounding_mode="floor")
        class_words = _sum_bits(slot, tok, rows.shape[1] * num_words, exact=False).view(
            rows.shape[1], num_words
        )
        packed = (rows.to(torch.float64) @ class_words).to(torch.int64)  # [R, W]
    else:
        # dense: one boolean per (row, token), folded 8 to a byte; 4 little-endian bytes a word
        padded = torch.zeros(num_words * 32, dtype=torch.int64, device=device)
        padded[:vocab_size] = class_of  # padding ids get class 0, which no row allows
        flags = rows[:, padded].view(num_rows, num_words * 4, 8).to(torch.uint8)
        weights = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8, device=device)
        packed_bytes = (flags * weights).sum(-1, dtype=torch.uint8)  # [R, 4W]
        return _select(packed_bytes.view(torch.int32), row_of_state)
    return _select(_to_int32(packed), row_of_state)


def _distinct_rows(flags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows bool[R, C], row_of_state int64[S])``: the distinct rows of ``flags bool[S, C]``.

    On the CPU each row is packed to bytes and the byte strings are sorted by numpy, many times
    faster than ``torch.unique(dim=0)``; the rows may come in another order, which the packed
    result does not depend on.
    """
    if flags.device.type != "cpu":
        rows, row_of_state = torch.unique(flags.to(torch.uint8), dim=0, return_inverse=True)
        return rows.bool(), row_of_state
    host = flags.numpy()
    packed = np.ascontiguousarray(np.packbits(host, axis=1))  # uint8[S, ceil(C/8)]
    keys = packed.view(np.dtype((np.void, packed.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return torch.from_numpy(host[first]), torch.from_numpy(inverse.reshape(-1).astype(np.int64))


def _select(packed: torch.Tensor, row_of_state: torch.Tensor | None) -> torch.Tensor:
    return packed if row_of_state is None else packed[row_of_state]
