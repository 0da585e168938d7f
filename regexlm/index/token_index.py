"""The token index: everything one decode step needs, as tensors on the model's device.

For index states ``0 .. S-1`` (the DFA states a token boundary can reach and still complete a
match, renumbered), V tokens, C token classes and W = ceil(V / 32) mask words:

* ``next_by_class int32[S, C]``: state after a token of the class, -1 = not allowed;
* ``class_of int32[V]``: the class of every token id (class 0 is never allowed);
* ``bitmask int32[S, W]``: allowed tokens, bit ``j`` of word ``w`` is token ``32w + j``;
* ``min_tokens int32[S]``: fewest tokens (EOS excluded) that complete a match, 0 at matches;
* ``match_index int32[S]``: lowest matching pattern index, -1 where the text does not match;
* ``start_state``: the state before any token; ``eos_ids``: allowed exactly at matching states,
  where they keep the state.

``dfa_state int32[S]`` records which DFA state each index state came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

TENSOR_FIELDS = ("next_by_class", "class_of", "bitmask", "min_tokens", "match_index", "dfa_state")


@dataclass(frozen=True, eq=False)
class TokenIndex:
    next_by_class: torch.Tensor  # [S, C] int32
    class_of: torch.Tensor  # [V] int32
    bitmask: torch.Tensor  # [S, W] int32
    min_tokens: torch.Tensor  # [S] int32
    match_index: torch.Tensor  # [S] int32
    dfa_state: torch.Tensor  # [S] int32
    start_state: int
    eos_ids: list[int]
    patterns: tuple[str, ...] = ()
    vocab_fingerprint: str = ""
    info: dict = field(default_factory=dict, compare=False)

    # -- sizes ------------------------------------------------------------------------------

    @property
    def num_states(self) -> int:
        return int(self.next_by_class.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.next_by_class.shape[1])

    @property
    def vocab_size(self) -> int:
        return int(self.class_of.shape[0])

    @property
    def device(self) -> torch.device:
        return self.bitmask.device

    @property
    def nbytes(self) -> int:
        """Bytes held by the index's tensors."""
        return sum(t.numel() * t.element_size() for t in (getattr(self, n) for n in TENSOR_FIELDS))

    # -- per-state queries ------------------------------------------------------------------

    def next_state(self, state: int, token: int) -> int:
        """State after ``token`` at ``state``; -1 if the token is not allowed there."""
        return int(self.next_by_class[state, self.class_of[token]])

    def allowed_bitmask(self, state: int) -> torch.Tensor:
        """``int32[W]`` view of the allowed-token mask at ``state`` (no copy)."""
        return self.bitmask[state]

    def allowed_tokens(self, state: int) -> torch.Tensor:
        """``int64[n]`` ids allowed at ``state``, ascending."""
        return (self.next_by_class[state, self.class_of] >= 0).nonzero().flatten()

    def min_tokens_to_match(self, state: int) -> int:
        return int(self.min_tokens[state])

    def is_match(self, state: int) -> bool:
        return bool(self.match_index[state] >= 0)

    # -- rows on demand ---------------------------------------------------------------------

    @property
    def version(self) -> int:
        """Bumped whenever the tables grow or are replaced; 0 for an index built whole."""
        return 0

    def ensure_rows(self, states) -> None:
        """Make the rows of ``states`` (ints or an int tensor) ready; an index built whole has
        every row already."""

    def tables(self):
        """The tables one sampling step reads (``next_by_class``, ``class_of``, ``min_tokens``),
        as they are now; read again after :meth:`ensure_rows`."""
        return self

    def bitmask_rows(self, states) -> torch.Tensor:
        """``int32[n, W]`` allowed-token masks of ``states`` in the xgrammar layout."""
        idx = torch.as_tensor(states, dtype=torch.long, device=self.device).reshape(-1)
        return self.bitmask.index_select(0, idx)

    def to(self, device) -> TokenIndex:
        device = torch.device(device)
        if device == self.device:
            return self
        return replace(self, **{n: getattr(self, n).to(device) for n in TENSOR_FIELDS})

    def __repr__(self) -> str:
        return (
            f"TokenIndex(patterns={self.patterns!r}, states={self.num_states}, "
            f"classes={self.num_classes}, vocab={self.vocab_size}, device={self.device})"
        )
