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
steps, which a per-row running state cannot follow; it is not supported (a reordering is
detected and refused).

**One instance, many generations.** transformers gives a processor no signal when a generation
starts, so the processor tells by what it is given. A call continues the generation it saw last
only when it could have come from the same ``generate`` loop: the same rows, exactly one token
longer, the earlier columns identical to the sequence it saw, every new token one its mask
allowed, some row not yet ended by EOS (transformers stops once every row has), and, when
``max_new_tokens`` is set, the budget not yet spent. Anything else (a shorter, equal or much
longer prompt, another batch size, other text) starts afresh. One case cannot be told apart from
the inputs: a new prompt that is exactly the previous output, when that generation ended for
another reason than EOS or ``max_new_tokens`` (a stop string, ``max_time``, or ``max_new_tokens``
not given to the processor). Call :meth:`RegexLogitsProcessor.reset` before such a call, or use
one instance per ``generate`` call.
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
        if not self._continue(input_ids):  # the first step of a generation
            self._start(input_ids)
        allowed = self._allowed(scores.device)  # [B, V]
        return scores.masked_fill(~allowed, -torch.inf)

    def reset(self) -> None:
        """Forget the generation seen so far: the next call starts a new one, whatever it is."""
        self._reset()

    # -- state tracking -------------------------------------------------------------------------

    def _reset(self) -> None:
        self._states: list[int] | None = None
        self._done: list[bool] = []
        self._generated = 0
        self._seen: torch.Tensor | None = None  # [B, L] the sequence of the last call

    def _start(self, input_ids: torch.Tensor) -> None:
        batch = input_ids.shape[0]
        start = int(self._index.start_state)
        self._states = [start] * batch
        self._done = [False] * batch
        self._generated = 0
        self._seen = input_ids.detach().clone()

    def _continue(self, input_ids: torch.Tensor) -> bool:
        """Advance by the newest column when this call continues the last generation (see the
        module docstring); False, changing nothing, when it starts a new one."""
        seen = self._seen
        if seen is None or self._states is None:
            return False
        batch, length = input_ids.shape
        if batch != seen.shape[0] or length != seen.shape[1] + 1 or all(self._done):
            return False
        if self.max_new_tokens is not None and self._generated + 1 >= self.max_new_tokens:
            return False  # the budget is spent: that generation is over
        prefix = input_ids[:, :-1]  # [B, L - 1]
        seen = seen.to(prefix.device)
        if not torch.equal(prefix, seen):
            if _rows_permuted(prefix, seen):
                raise ValueError(
                    "the rows of the sequence were reordered between two steps, as beam search "
                    "does: a RegexLogitsProcessor follows each row's text and does not support "
                    "beam search; use greedy or sampled decoding"
                )
            return False
        step = self._step(input_ids[:, -1].tolist())
        if step is None or all(step[1]):
            return False  # a token the mask forbade, or every row ended: not that loop
        self._states, self._done = step
        self._generated += 1
        self._seen = input_ids.detach().clone()
        return True

    def _step(self, column: list[int]) -> tuple[list[int], list[bool]] | None:
        """Each row's state and done flag after its newest token; None if one was not allowed."""
        states, done = list(self._states), list(self._done)
        for b, token in enumerate(column):
            if done[b]:
                continue  # after EOS transformers appends padding; the row is over
            if token in self._eos:
                done[b] = True
                continue
            if not 0 <= token < self._index.vocab_size:
                return None
            nxt = self._index.next_state(states[b], token)  # builds the row if needed
            if nxt < 0:
                return None
            states[b] = nxt
        return states, done

    # -- masks ----------------------------------------------------------------------------------

    def _allowed(self, device) -> torch.Tensor:
        """bool[B, V]: grammar mask, budget mask, EOS rules."""
        from regexlm.ops.reference import allowed_mask

        index = self._index
        index.ensure_rows(self._states)  # rows of states reached for the first time
        states = torch.tensor(self._states, dtype=torch.int32, device=device)  # [B]
        if self.max_new_tokens is None:
            budget = -1  # no budget: only the grammar mask
        else:
            budget = max(self.max_new_tokens - self._generated, 0)
        budgets = torch.full_like(states, budget)  # [B]
        allowed = allowed_mask(states, budgets, index.tables())  # [B, V]
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
        return self._index.is_match(state)

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


def _rows_permuted(prefix: torch.Tensor, seen: torch.Tensor) -> bool:
    """Every row of ``prefix`` [B, L] is some row of ``seen`` [B, L], yet not all in place."""
    same = (prefix.unsqueeze(1) == seen.unsqueeze(0)).all(-1)  # [B, B]
    return bool(same.any(1).all()) and not bool(same.diagonal().all())
