"""A compiled pattern as the decode loop uses it: the token index plus host-side questions.

The sampling step runs on the device and needs only the :class:`~regexlm.index.TokenIndex`
tables. The stop rules run on the host, once per accepted token, and ask two questions of the
row's new state: does the text match here (and which pattern), and can any token other than
end-of-sequence extend it (if not, the row has reached a dead end). The index answers both
from its host tables, building the state's row first when decoding reaches it for the first
time, so the per-token bookkeeping costs no device traffic.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Constraint:
    """A :class:`TokenIndex` with the questions the stop rules ask of it."""

    index: object  # regexlm.index.TokenIndex
    patterns: tuple[str, ...]
    start_state: int
    eos_ids: frozenset[int]

    @classmethod
    def from_index(cls, index, patterns: tuple[str, ...]) -> Constraint:
        return cls(
            index=index,
            patterns=patterns,
            start_state=int(index.start_state),
            eos_ids=frozenset(int(e) for e in index.eos_ids),
        )

    def match_of(self, state: int) -> int:
        """Lowest matching pattern index at ``state``, -1 if the text does not match."""
        return self.index.match_of(state)

    def is_match(self, state: int) -> bool:
        return self.index.match_of(state) >= 0

    def is_dead_end(self, state: int) -> bool:
        """A state from which nothing but end-of-sequence can follow."""
        return not self.index.can_extend(state)
