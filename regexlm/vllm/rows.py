"""Per-request automaton state in a vLLM batch, and which token classes each row may draw.

vLLM keeps a persistent batch: a request occupies a *slot* (a row of the logits in the V1 model
runner, a request-state slot in the V2 one) from the step it is added until it is removed, and
rows move when the batch is condensed. :class:`ConstrainedRows` mirrors that with one
:class:`RowState` per constrained slot and applies vLLM's updates exactly: removals, additions
(which may reuse a slot), one-way moves and swaps.

A row's state is derived from its generated tokens, never stored apart from them: each row
remembers how many of its output tokens it has *consumed* and, before every step, folds in the
ones that arrived since (:meth:`ConstrainedRows.catch_up`). A request that vLLM preempted and
later resumes comes back as an addition whose output already holds tokens; consuming starts
from zero again, so the state after resumption is the state the tokens lead to.

Per step and per row, the allowed classes (:meth:`ConstrainedRows.keep_classes`) follow the
rules of ``ARCHITECTURE.md``: a class is allowed where ``next_by_class[row_of[s], c] >= 0``;
with ``R`` tokens left (the one being drawn included) and ``min_tokens[s] <= R``, only classes
whose next state still reaches a match within ``R - 1`` tokens are kept. A row whose text
matches after a token, with ``stop_after_match``, is *done*: the next step allows only
end-of-sequence, which ends the request in vLLM. So is a row whose patterns could not be
compiled, or that reached a state with nothing allowed (a bug we log rather than emit a token
the pattern forbids).

Nothing here imports vLLM or touches a device; :mod:`regexlm.vllm.joint` turns the per-row
class decisions into one masked write on the logits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger("regexlm.vllm")

NO_LIMIT = np.iinfo(np.int64).max // 4


@dataclass(eq=False)
class RowState:
    """One constrained request in its slot."""

    pattern: object | None  # CompiledPattern; None when its patterns could not be used
    stop_after_match: bool
    #: Most tokens the request may generate (vLLM's max_tokens, capped by the context).
    limit: int | None
    #: The request's generated tokens; vLLM appends to this very list (V1), or None when the
    #: tokens are read from elsewhere each step (V2).
    output: list[int] | None = None
    state: int = 0
    consumed: int = 0
    done: bool = False
    #: Why the row is done, for the log.
    reason: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pattern is None:
            self.done, self.reason = True, "its patterns could not be compiled"
        else:
            self.state = self.pattern.start_state

    def remaining(self) -> int:
        """Tokens left, the one being drawn included (``NO_LIMIT`` without a limit)."""
        if self.limit is None:
            return NO_LIMIT
        return self.limit - self.consumed

    def consume(self, tokens) -> None:
        """Advance through ``tokens`` (the next output tokens, in order)."""
        for token in tokens:
            self.consumed += 1
            if self.done:
                continue
            pattern = self.pattern
            if token in pattern.eos_ids:
                self.done, self.reason = True, "end-of-sequence"
                continue
            nxt = pattern.next_state(self.state, int(token))
            if nxt < 0:
                logger.warning(
                    "token %d is not allowed at state %d of %r; ending the request",
                    token,
                    self.state,
                    pattern.index.patterns,
                )
                self.done, self.reason = True, "a token the pattern does not allow"
                continue
            self.state = nxt
            if self.stop_after_match and pattern.is_match(nxt):
                self.done, self.reason = True, "match"


class ConstrainedRows:
    """The constrained slots of a batch: slot -> :class:`RowState`."""

    def __init__(self) -> None:
        self.rows: dict[int, RowState] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, slot: int) -> bool:
        return slot in self.rows

    def get(self, slot: int) -> RowState | None:
        return self.rows.get(slot)

    # -- vLLM's batch updates ----------------------------------------------------------------

    def set(self, slot: int, row: RowState | None) -> None:
        """A request enters ``slot`` (replacing whatever was there); None: it is unconstrained."""
        if row is None:
            self.rows.pop(slot, None)
        else:
            self.rows[slot] = row

    def remove(self, slot: int) -> None:
        self.rows.pop(slot, None)

    def move(self, source: int, target: int) -> None:
        """One-way move: ``source``'s request now sits in ``target``; ``source`` is empty."""
        row = self.rows.pop(source, None)
        self.rows.pop(target, None)
        if row is not None:
            self.rows[target] = row

    def swap(self, a: int, b: int) -> None:
        ra, rb = self.rows.pop(a, None), self.rows.pop(b, None)
        if ra is not None:
            self.rows[b] = ra
        if rb is not None:
            self.rows[a] = rb

    # -- each step ---------------------------------------------------------------------------

    def catch_up(self, row: RowState, tokens=None) -> None:
        """Fold in the row's output tokens it has not consumed yet (from ``row.output``, or
        ``tokens``: the tokens after the consumed ones). A -1 (vLLM's placeholder for a token
        not copied back yet) stops the fold; it is read on the next call."""
        if tokens is None:
            if row.output is None or len(row.output) <= row.consumed:
                return
            tokens = row.output[row.consumed :]
        if -1 in tokens:
            tokens = tokens[: tokens.index(-1)]
        row.consume(tokens)


def keep_classes(pattern, states: np.ndarray, remaining: np.ndarray) -> np.ndarray:
    """``bool[b, C]``: the classes rows at ``states`` (``int64[b]``) of one pattern may draw,
    with ``remaining`` (``int64[b]``) tokens left each, the one being drawn included."""
    nxt, min_tokens = pattern.tables(states)  # [b, C], [S]
    allowed = nxt >= 0
    # Budget: where a match is reachable in the budget, keep only classes that keep it so.
    # (A row past its budget, which vLLM would have ended, gets the plain viable mask.)
    in_budget = (min_tokens[states] <= remaining) & (remaining >= 1)  # [b]
    after = min_tokens[np.where(allowed, nxt, 0)]  # [b, C]
    keeps_promise = after <= (remaining - 1)[:, None]
    return allowed & (~in_budget[:, None] | keeps_promise)
