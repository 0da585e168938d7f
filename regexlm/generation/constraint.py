"""A compiled pattern as the decode loop uses it: the token index plus host-side lookups.

The sampling step runs on the device and needs only the :class:`~regexlm.index.TokenIndex`
tensors. The stop rules run on the host, once per accepted token, and ask two questions of the
row's new state: does the text match here (and which pattern), and can any token other than
end-of-sequence extend it (if not, the row has reached a dead end). Both answers are read once
from the index into plain Python lists, so the per-token bookkeeping costs no device traffic.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Constraint:
    """A :class:`TokenIndex` with its per-state match index and dead-end flags on the host."""

    index: object  # regexlm.index.TokenIndex
    patterns: tuple[str, ...]
    match_index: list[int]  # per state: lowest matching pattern index, -1 if none
    can_extend: list[bool]  # per state: some non-EOS token is allowed
    start_state: int
    eos_ids: frozenset[int]

    @classmethod
    def from_index(cls, index, patterns: tuple[str, ...]) -> Constraint:
        eos_ids = frozenset(int(e) for e in index.eos_ids)
        return cls(
            index=index,
            patterns=patterns,
            match_index=[int(i) for i in index.match_index.tolist()],
            can_extend=_can_extend(index.bitmask, eos_ids),
            start_state=int(index.start_state),
            eos_ids=eos_ids,
        )

    def is_match(self, state: int) -> bool:
        return self.match_index[state] >= 0

    def is_dead_end(self, state: int) -> bool:
        """A matching state from which nothing but end-of-sequence can follow."""
        return not self.can_extend[state]


def _can_extend(bitmask, eos_ids: frozenset[int]) -> list[bool]:
    """Per state, whether a token other than EOS is allowed: bitmask int32[S, W] -> list[bool]."""
    words = bitmask.clone()  # [S, W]
    for eos in eos_ids:
        word, bit = divmod(eos, 32)
        if word < words.shape[1]:
            # int32 two's complement: clearing bit 31 keeps the low 31 bits.
            keep = 0x7FFFFFFF if bit == 31 else ~(1 << bit)
            words[:, word] &= keep
    return [bool(x) for x in (words != 0).any(dim=1).tolist()]
