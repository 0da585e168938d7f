"""Compiled patterns for a vLLM engine: a bounded LRU of token indexes, with host-side lookups.

A logits processor compiles each request's patterns once for the model's vocabulary
(:func:`regexlm.compile`, which keeps its own memory and disk caches beneath) and shares the
result between every request that uses the same patterns. The index lives on the CPU: the
processor walks it on the host, token by token (``next_state``), and decides per row which token
*classes* are allowed there; only that small decision and one class id per token go to the
device (:mod:`regexlm.vllm.joint`).

An index may build its rows on demand: the tables are read through ``ensure_rows`` and the
current ``next_by_class`` / ``row_of`` / ``class_of`` / ``min_tokens`` tensors, and
:attr:`class_stamp` changes whenever ``class_of`` did, so the device copies derived from it are
rebuilt only then.
Where the model runs on an accelerator, a new index's exploration (what compile leaves for the
first use) starts on a worker at once (:mod:`regexlm.index.settler`): requests are added before
the engine's forward pass and masked after it, so the exploration runs while the model does.

The cache holds at most ``max_patterns`` entries and, like the index layer's own memory cache
(:mod:`regexlm.index.cache`), at most its byte bound (``REGEXLM_INDEX_MEMORY_BYTES``) of indexes,
counted as they grow. It remembers refusals as well, so a pattern that cannot be compiled is not
retried on every request.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

import numpy as np

from regexlm.errors import RegexError

logger = logging.getLogger("regexlm.vllm")

MAX_PATTERNS = 256


class CompiledPattern:
    """A token index on the CPU plus what the processor reads from it each step."""

    def __init__(self, index):
        self.index = index
        self.eos_ids = frozenset(int(e) for e in index.eos_ids)
        self._version = None
        self._class_of: np.ndarray | None = None
        self.class_stamp = 0

    @property
    def start_state(self) -> int:
        return int(self.index.start_state)

    def next_state(self, state: int, token: int) -> int:
        """State after ``token``; -1 where the index does not allow it."""
        return int(self.index.next_state(state, token))

    def is_match(self, state: int) -> bool:
        return bool(self.index.is_match(state))

    def tables(self, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows of ``states`` (``int64[b]``), built where needed, as ``int32[b, C]``, and
        ``min_tokens int32[S]`` of every state, as numpy arrays."""
        self.index.ensure_rows(states)
        return self.index.rows_of(states).numpy(), self.index.min_tokens.numpy()

    @property
    def nbytes(self) -> int:
        """The index's bytes now, plus the copy of its classes kept here."""
        copy = 0 if self._class_of is None else int(self._class_of.nbytes)
        return int(self.index.nbytes) + copy

    def class_of(self) -> np.ndarray:
        """``int32[V]``: the class of every token now; bumps :attr:`class_stamp` on a change."""
        version = self.index.version
        if version != self._version or self._class_of is None:
            current = self.index.class_of.numpy()
            if self._class_of is None or not np.array_equal(current, self._class_of):
                self._class_of = current.copy()
                self.class_stamp += 1
            self._version = version
        return self._class_of


class PatternCache:
    """Patterns -> :class:`CompiledPattern` (or the refusal), a bounded LRU; thread-safe."""

    def __init__(
        self, vocabulary, *, max_patterns: int = MAX_PATTERNS, explore_beside: bool = False
    ):
        self.vocabulary = vocabulary
        self.explore_beside = explore_beside  # start explorations on the worker at compile
        self.max_patterns = max_patterns
        self._entries: OrderedDict[tuple[str, ...], CompiledPattern | RegexError] = OrderedDict()
        self._lock = threading.Lock()
        self.compiles = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, patterns: tuple[str, ...]) -> CompiledPattern:
        """The compiled patterns; raises the :class:`~regexlm.errors.RegexError` family."""
        with self._lock:
            found = self._entries.get(patterns)
            if found is not None:
                self._entries.move_to_end(patterns)
        if found is None:
            found = self._compile(patterns)
            with self._lock:
                self._entries[patterns] = found
                self._entries.move_to_end(patterns)
                self._evict()
        if isinstance(found, RegexError):
            raise found
        return found

    def _evict(self) -> None:
        """Drop least recently used entries past the entry or the byte bound (lock held)."""
        from regexlm.index import cache as index_cache

        total = sum(e.nbytes for e in self._entries.values() if isinstance(e, CompiledPattern))
        while len(self._entries) > 1 and (
            len(self._entries) > self.max_patterns or total > index_cache.MEMORY_BYTES
        ):
            _, old = self._entries.popitem(last=False)
            if isinstance(old, CompiledPattern):
                total -= old.nbytes

    def _compile(self, patterns: tuple[str, ...]) -> CompiledPattern | RegexError:
        from regexlm.index import compile as compile_index
        from regexlm.index.settler import settle_in_background

        self.compiles += 1
        source = patterns[0] if len(patterns) == 1 else list(patterns)
        try:
            index = compile_index(source, self.vocabulary, device="cpu")
        except RegexError as exc:
            logger.warning("pattern %r refused: %s", source, exc)
            return exc
        if self.explore_beside:  # requests are added before the forward pass, masked after it
            settle_in_background([index])
        return CompiledPattern(index)
