"""The data the per-step ops take and return.

`IndexTables` is the minimal view of a token index that the ops read: any object with the same
tensor attributes works (the index layer's `TokenIndex` has them; a ``bitmask`` attribute, if
present, is ignored), so the ops never import the index layer. `StepResult` is what one step
returns for the whole batch.

Layout of the tables (S index states, R rows, V tokens, C token classes):

- ``next_by_class`` int32[R, C]  next state after a token of that class, -1 = not allowed
- ``row_of``        int32[S]     each state's row of ``next_by_class`` (optional: without it,
                                 state s reads row s and R = S)
- ``class_of``      int32[V]     token id -> class
- ``min_tokens``    int32[S]     fewest tokens from the state to a match (or an upper bound on
                                 it), 0 at matching states, INT32_MAX where no match is reachable

Rows are separate from states so that an index stores a row only for the states whose row it
has built: a lazy index knows many more states (every target of a built row, with its bound)
than it has rows, and those states share one row that allows nothing.

Token ``t`` is allowed at state ``s`` exactly when ``next_by_class[row_of[s], class_of[t]]`` is
a state, that is in ``[0, S)``. Out-of-range values are never read through: a state outside
``[0, S)`` or a row outside ``[0, R)`` has no allowed token, a token whose class is outside
``[0, C)`` is never allowed, and an entry of ``next_by_class`` outside ``[-1, S)`` counts as
"not allowed".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

INT32_MAX = 2**31 - 1  # min_tokens value for "no match reachable from this state"


@dataclass(frozen=True)
class IndexTables:
    """The tables a step reads; a plain stand-in for the index layer's `TokenIndex`."""

    next_by_class: torch.Tensor  # [R, C] int32
    class_of: torch.Tensor  # [V] int32
    min_tokens: torch.Tensor  # [S] int32
    row_of: torch.Tensor | None = None  # [S] int32; None: state s reads row s

    @property
    def num_states(self) -> int:
        return int(self.min_tokens.shape[0])

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
            None if self.row_of is None else self.row_of.to(device),
        )


@dataclass(frozen=True)
class TableGroups:
    """A batch whose rows read different index tables: the rows at ``positions[g]`` read
    ``tables[g]``; every row of the batch is in exactly one group (``sample_step`` checks it).

    ``sample_step`` takes it in place of one set of tables. The torch reference masks each
    group's rows with the group's tables and runs the rest of the step (penalty, temperature,
    top-k, top-p, draw) once for the whole batch; the fused kernels run once per group. A row's
    result is the one it would get in a step of its group alone, or of its own.
    """

    tables: tuple  # [G] of IndexTables-like objects, over the same V tokens
    positions: tuple[tuple[int, ...], ...]  # [G] of the row positions (host ints) in each group

    def __post_init__(self):
        if len(self.tables) != len(self.positions):
            raise ValueError(
                f"TableGroups needs one list of positions per tables, got {len(self.tables)} "
                f"tables and {len(self.positions)} lists"
            )

    def position_tensors(self, device) -> list[torch.Tensor]:
        """Each group's positions as int64[n_g] on ``device``."""
        return [torch.tensor(p, dtype=torch.int64, device=device) for p in self.positions]


def state_rows(tables) -> torch.Tensor:
    """``int32[S]``: the row of each state of ``tables`` (``arange(S)`` for tables without a
    ``row_of`` attribute, or with None there)."""
    found = getattr(tables, "row_of", None)
    if found is not None:
        return found
    S = tables.min_tokens.shape[0]
    return torch.arange(S, dtype=torch.int32, device=tables.min_tokens.device)


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
