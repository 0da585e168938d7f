"""One table for a batch whose rows follow different patterns.

The sampling step reads four tables per row: the allowed bitmask and the fewest-tokens count of
the row's state, and the next state through ``next_by_class[state, class_of[token]]``. Rows of
different patterns can share one step call if their indexes are stacked into one:

* states are renumbered: index ``i``'s states follow those of indexes ``0 .. i-1``
  (``offset[i]`` = the states before it), so ``bitmask`` and ``min_tokens`` simply concatenate;
* token classes must mean the same thing for every index, so the stacked classes are the
  *joint* classes: two tokens share one when they share a class in every index. With
  ``class_of`` of each index as a column of ``[V, k]``, the joint classes are its distinct rows,
  and ``next_by_class[offset[i] + s, j] = offset[i] + next_i(s, representative of j)``.

A row's state on the device is then ``offset + local state``; the host subtracts the offset.
The joint classes can outnumber every index's own; when the stacked transition table would grow
past :data:`MAX_ENTRIES`, :func:`stack_indexes` returns None and the caller steps each index's
rows separately. Recent stacks are kept, so a server batching the same pattern set again pays
the build once.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from regexlm.ops.types import IndexTables

MAX_ENTRIES = 1 << 23  # int32 entries of the stacked next_by_class (32 MiB)
_CACHE_SIZE = 8


@dataclass(frozen=True)
class StackedIndex(IndexTables):
    """Several indexes' tables in one (``[sum S, ...]`` rows, joint token classes), plus where
    each index's states start: the stacked id of index ``i``'s state ``s`` is ``offsets[i] + s``."""

    offsets: tuple[int, ...] = ()


_cache: OrderedDict[tuple[int, ...], tuple[tuple, StackedIndex | None]] = OrderedDict()


def stack_indexes(indexes) -> StackedIndex | None:
    """Stack token indexes (all over the same vocabulary and device); None when too large."""
    indexes = tuple(indexes)
    key = tuple(id(index) for index in indexes)
    hit = _cache.get(key)
    if hit is not None:  # the entry holds the indexes, so their ids cannot have been reused
        _cache.move_to_end(key)
        return hit[1]
    stacked = _build(indexes)
    _cache[key] = (indexes, stacked)
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return stacked


def _build(indexes) -> StackedIndex | None:
    columns = torch.stack([index.class_of.long() for index in indexes], dim=1)  # [V, k]
    joint, class_of = torch.unique(columns, dim=0, return_inverse=True)  # [Cj, k], [V]
    total_states = sum(int(index.next_by_class.shape[0]) for index in indexes)
    if total_states * joint.shape[0] > MAX_ENTRIES:
        return None
    parts, offsets, offset = [], [], 0
    for i, index in enumerate(indexes):
        nxt = index.next_by_class[:, joint[:, i]]  # [S_i, Cj]
        parts.append(torch.where(nxt >= 0, nxt + offset, nxt).to(torch.int32))
        offsets.append(offset)
        offset += int(index.next_by_class.shape[0])
    return StackedIndex(
        bitmask=torch.cat([index.bitmask for index in indexes]),
        next_by_class=torch.cat(parts).contiguous(),
        class_of=class_of.to(torch.int32),
        min_tokens=torch.cat([index.min_tokens.to(torch.int32) for index in indexes]),
        offsets=tuple(offsets),
    )
