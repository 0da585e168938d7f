"""`RegexLogitsProcessor`: the pattern constraint inside transformers' own ``generate``.

transformers calls a logits processor once per step with the whole sequence so far
(``input_ids`` [B, L]) and the next-token scores ([B, V]). The processor keeps one automaton
state per row and advances it by the tokens appended since its previous call, then sets the
score of every token the pattern does not allow to -inf. End-of-sequence is allowed only where
the text matches; with ``stop_after_match`` (the default, as in :func:`regexlm.generate`) it is
the *only* token allowed once the text matches, so each row ends at its first match; with
``max_new_tokens`` the budget mask applies too, so a match that fits in the budget is reached.
Grammar and budget masks come from the same code the torch sampling step uses
(:func:`regexlm.ops.reference.allowed_mask`).

Works with greedy and sampled decoding and any batch size. Beam search reorders rows between
steps, which a per-row running state cannot follow; it is not supported. A processor instance
resets itself when it sees a new generation (a shorter sequence or another batch size).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

try:  # transformers is a dependency of regexlm; subclassing keeps isinstance checks happy.
    from transformers import LogitsProcessor as _Base
except ImportError:  # pragma: no cover
    _Base = object


class RegexLogitsProcessor(_Base):
    """Mask the tokens that would take a row's generated text out of ``pattern``'s language.

    ``pattern`` is a regular expression or a list of them; ``tokenizer`` the model's tokenizer.
    ``max_new_tokens`` (the same value given to ``generate``) turns on budget-aware masking.
    ``eos_token_id`` restricts which EOS ids may end a match (default: those the index allows;
    pass the generation config's when it differs from the tokenizer's).
    """

    def __init__(
        self,
        pattern: str | Sequence[str],
        tokenizer,
        *,
        max_new_tokens: int | None = None,
        stop_after_match: bool = True,
        eos_token_id: int | Sequence[int] | None = None,
    ):
        self.pattern = pattern if isinstance(pattern, str) else list(pattern)
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.stop_after_match = stop_after_match
        if isinstance(eos_token_id, int):
            eos_token_id = [eos_token_id]
        self._eos_filter = None if eos_token_id is None else {int(e) for e in eos_token_id}
        self._index = None
        self._index_key = None
        self._reset()

    # -- transformers' entry point --------------------------------------------------------------

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """input_ids: [B, L]; scores: [B, V] -> scores with disallowed tokens at -inf."""
        self._ensure_index(scores.shape[1], scores.device)
        batch, length = input_ids.shape
        continuing = (
            self._states is not None and batch == len(self._states) and length == self._length + 1
        )
        if not continuing:  # the first step of a generation
            self._start(batch, length)
        else:
            self._advance(input_ids[:, self._length :].tolist())
            self._length = length
        allowed = self._allowed(scores.device)  # [B, V]
        return scores.masked_fill(~allowed, -torch.inf)

    # -- state tracking -------------------------------------------------------------------------

    def _reset(self) -> None:
        self._states: list[int] | None = None
        self._done: list[bool] = []
        self._generated = 0
        self._length = 0

    def _start(self, batch: int, length: int) -> None:
        start = int(self._index.start_state)
        self._states = [start] * batch
        self._done = [False] * batch
        self._generated = 0
        self._length = length

    def _advance(self, new_tokens: list[list[int]]) -> None:
        """Apply each row's appended tokens ([B][n]) to its state on the host."""
        for b, tokens in enumerate(new_tokens):
            for token in tokens:
                if self._done[b]:
                    break  # after EOS transformers appends padding; the row is over
                if token in self._eos:
                    self._done[b] = True
                    break
                nxt = int(self._next_by_class[self._states[b], self._class_of[token]])
                if nxt < 0:
                    raise ValueError(
                        f"token {token} is not allowed by the pattern at row {b}: the sequence "
                        "was changed outside this processor (beam search is not supported)"
                    )
                self._states[b] = nxt
        self._generated += max((len(t) for t in new_tokens), default=0)

    # -- masks ----------------------------------------------------------------------------------

    def _allowed(self, device) -> torch.Tensor:
        """bool[B, V]: grammar mask, budget mask, EOS rules."""
        from regexlm.ops.reference import allowed_mask

        index = self._index
        states = torch.tensor(self._states, dtype=torch.int32, device=device)  # [B]
        if self.max_new_tokens is None:
            budget = -1  # no budget: only the grammar mask
        else:
            budget = max(self.max_new_tokens - self._generated, 0)
        budgets = torch.full_like(states, budget)  # [B]
        allowed = allowed_mask(states, budgets, index)  # [B, V]
        if self._blocked_eos.numel():
            allowed[:, self._blocked_eos.to(device)] = False
        # Like the Generator, a row stops after the first *generated* token that makes a match:
        # a pattern that matches the empty text still gets one token.
        stop_at_match = self.stop_after_match and self._generated > 0
        eos_only = torch.tensor(
            [
                done or (stop_at_match and self._is_match(s))
                for s, done in zip(self._states, self._done, strict=True)
            ],
            dtype=torch.bool,
            device=device,
        )  # [B]
        if bool(eos_only.any()):
            eos = torch.zeros_like(allowed[0])
            eos[self._allowed_eos.to(device)] = True
            allowed[eos_only] = eos
        return allowed

    def _is_match(self, state: int) -> bool:
        return self._match_index[state] >= 0

    # -- the index, built for the width and device of the scores ---------------------------------

    def _ensure_index(self, vocab_size: int, device) -> None:
        key = (vocab_size, str(device))
        if self._index_key == key:
            return
        from regexlm.index import Vocabulary
        from regexlm.index import compile as compile_index

        vocabulary = Vocabulary.from_tokenizer(self.tokenizer, vocab_size=vocab_size)
        index = compile_index(self.pattern, vocabulary, device=device)
        self._index = index
        self._index_key = key
        self._next_by_class = index.next_by_class.cpu().numpy()  # [S, C]
        self._class_of = index.class_of.cpu().numpy()  # [V]
        self._match_index = index.match_index.cpu().numpy()  # [S]
        eos = [int(e) for e in index.eos_ids]
        allowed_eos = [e for e in eos if self._eos_filter is None or e in self._eos_filter]
        if not allowed_eos:
            raise ValueError(
                f"none of the end-of-sequence ids {sorted(self._eos_filter or [])} is an EOS "
                f"token of the tokenizer (its EOS ids: {eos})"
            )
        self._eos = set(eos)
        self._allowed_eos = torch.tensor(allowed_eos, dtype=torch.long)
        self._blocked_eos = torch.tensor(sorted(set(eos) - set(allowed_eos)), dtype=torch.long)
        self._reset()
