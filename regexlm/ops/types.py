"""The data the per-step ops take and return.

`IndexTables` is the minimal view of a token index that the ops read: any object with the same
three tensor attributes works (the index layer's `TokenIndex` has them; a ``bitmask`` attribute,
if present, is ignored), so the ops never import the index layer. `StepResult` is what one step
returns for the whole batch.

Layout of the tables (S index states, V tokens, C token classes):

- ``next_by_class`` int32[S, C]  next state after a token of that class, -1 = not allowed
- ``class_of``      int32[V]     token id -> class
- ``min_tokens``    int32[S]     fewest tokens from the state to a match (or an upper bound on
                                 it), 0 at matching states, INT32_MAX where no match is reachable

Token ``t`` is allowed at state ``s`` exactly when ``next_by_class[s, class_of[t]]`` is a state,
that is in ``[0, S)``. Out-of-range values are never read through: a row whose state is outside
``[0, S)`` has no allowed token, a token whose class is outside ``[0, C)`` is never allowed, and
an entry of ``next_by_class`` outside ``[-1, S)`` counts as "not allowed".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

INT32_MAX = 2**31 - 1  # min_tokens value for "no match reachable from this state"


@dataclass(frozen=True)
class IndexTables:
    """The three tables a step reads; a plain stand-in for the index layer's `TokenIndex`."""

    next_by_class: torch.Tensor  # [S, C] int32
    class_of: torch.Tensor  # [V] int32
    min_tokens: torch.Tensor  # [S] int32

    @property
    def num_states(self) -> int:
        return int(self.next_by_class.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.next_by_class.shape[1])

    @property
    def vocab_size(self) -> int:
        return int(self.class_of.shape[0])

    def to(self, device: torch.device | str) -> IndexTables:
        return IndexTables(
            self.next_by_class.to(device),
            self.class_of.to(device),
            self.min_tokens.to(device),
        )


@dataclass(frozen=True)
class StepResult:
    """One decode step for a batch of B rows.

    ``tokens`` int64[B] is the drawn token, -1 where the row had no allowed token;
    ``next_states`` int32[B] is the index state after the token (unchanged where -1);
    ``no_allowed`` bool[B] flags the rows that had no allowed token.
    """

    tokens: torch.Tensor  # [B] int64
    next_states: torch.Tensor  # [B] int32
    no_allowed: torch.Tensor  # [B] bool
