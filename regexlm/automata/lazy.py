"""The lazy DFA: states made when a walk first reaches them, within a byte budget.

Counted repeats of multi-byte classes multiply DFA states: ``\\w{1,50}`` has tens of thousands,
``(a|b)*a(a|b){20}`` two million. Yet a decoder only ever visits a few of them: one per
generated token and the states inside the tokens it tries. So, as RE2 and Rust's regex-automata
do, the subset construction runs on demand: a state is a set of NFA positions
(:class:`~regexlm.automata.dfa.SubsetConstruction`), interned when first reached, and its row of
transitions (one entry per construction byte class) is computed the first time any of its
transitions is asked for, then kept in a table.

**Cache.** The table and the position sets cost memory. Each automaton has a byte budget
(``cache_bytes``); when a new state would push the cache past it, the cache is cleared and the
walk goes on from scratch, rebuilding what it needs. Clearing changes state ids, so callers
that remember states across calls keep their *keys* (:meth:`LazyDFA.key`, the position set) and
map them back with :meth:`LazyDFA.intern` when :attr:`LazyDFA.epoch` has changed. No pattern is
refused for its DFA size; the only size limit left is the NFA's (see ``limits``).

**Limits per call.** A caller that needs states in one go (a token row: a walk of the whole
vocabulary) wraps the work in :meth:`LazyDFA.time_limit`: the states it creates then cost at
most ``step_timeout`` CPU seconds and ``step_bytes`` bytes, past which
:class:`~regexlm.PatternTooComplexError` is raised. Within one call the cache cannot be cleared
(the ids in flight must stay valid), so without this a pattern whose states each hold hundreds of
positions (``(.{0,20}\\w{0,20}){0,40}``) could take seconds and hundreds of MB for one row.

**Distances.** :meth:`LazyDFA.byte_distance` is the fewest bytes that lead from a state to a
match, found by a breadth-first search over *positions* (NFA states and points inside a
character), never over DFA states, so it costs in proportion to the distance. Bytes can be
restricted to a usable set (a vocabulary's single-byte tokens); then the distance is the fewest
single-byte tokens, or :data:`UNREACHABLE`.

The interface is the eager :class:`~regexlm.automata.dfa.DFA`'s where it makes sense (``start``,
``next``, ``run``, ``fullmatch``, ``is_viable``, ``match_index``, ``byte_classes``), plus the
vectorized :meth:`LazyDFA.step` that the token index walks with.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from regexlm.automata.char_classes import CharPartition
from regexlm.automata.dfa import DEAD, SubsetConstruction, WholeInputs
from regexlm.automata.limits import DEFAULT_TIMEOUT, Deadline, too_many_walk_bytes
from regexlm.automata.nfa import CharNFA

UNREACHABLE = np.iinfo(np.int32).max
_UNKNOWN = -1  # a table entry not computed yet

# Default byte budget of one automaton's state cache.
DEFAULT_CACHE_BYTES = 32 << 20
# Bytes of new states one call under time_limit may create (the cache is not cleared within it).
DEFAULT_STEP_BYTES = 64 << 20


class LazyDFA(WholeInputs):
    """A DFA over UTF-8 bytes whose states are built on demand (see the module docstring).

    State 0 is dead. ``byte_classes uint8[256]`` are the construction classes: bytes no
    transition of the NFA tells apart.
    """

    def __init__(
        self,
        nfa: CharNFA,
        patterns: Sequence[str],
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        *,
        step_timeout: float | None = DEFAULT_TIMEOUT,
        step_bytes: int | None = DEFAULT_STEP_BYTES,
    ):
        self._sc = SubsetConstruction(nfa)
        self.patterns = tuple(patterns)
        self.cache_bytes = int(cache_bytes)
        self.step_timeout = step_timeout
        self.step_bytes = step_bytes
        self._deadline: Deadline | None = None
        self._bytes_limit: int | None = None
        self.byte_classes = self._sc.class_of.astype(np.uint8)
        self.byte_classes.setflags(write=False)
        self.num_byte_classes = self._sc.num_classes
        self._cls = self._sc.cls
        self.epoch = 0
        self.clears = 0
        self._distances: Distances | None = None
        self._distances_key: bytes | None = None
        self._reset()

    # -- the state cache ----------------------------------------------------------------------

    def _reset(self) -> None:
        empty = frozenset()
        self._ids: dict[frozenset, int] = {empty: DEAD}
        self._sets: list[frozenset] = [empty]
        self._accept: list[int] = [-1]
        self._distance: dict[int, int] = {}
        # table: int32[capacity, K], _UNKNOWN where not computed; the dead row is all DEAD
        self._table = np.full((64, self.num_byte_classes), _UNKNOWN, dtype=np.int32)
        self._table[DEAD] = DEAD
        self._bytes = 0
        self._sc.forget_unions()
        self.start = self.intern(self._sc.start_set)

    @property
    def num_states(self) -> int:
        """States in the cache now (dead state included)."""
        return len(self._sets)

    @property
    def char_partition(self) -> CharPartition:
        """The pattern's character classes (:mod:`regexlm.automata.char_classes`), made on
        first use."""
        return self._sc.char_partition()

    @property
    def nbytes(self) -> int:
        """Estimated bytes held by the state cache."""
        return int(self._table.nbytes) + self._bytes

    def _state_bytes(self, key: frozenset) -> int:
        return 200 + 40 * len(key)

    def intern(self, key: frozenset) -> int:
        """The id of the state whose position set is ``key``, made if new."""
        sid = self._ids.get(key)
        if sid is None:
            sid = len(self._sets)
            self._ids[key] = sid
            self._sets.append(key)
            self._accept.append(self._sc.accept(key))
            self._bytes += self._state_bytes(key)
            if sid >= self._table.shape[0]:
                grown = np.full(
                    (2 * self._table.shape[0], self.num_byte_classes), _UNKNOWN, dtype=np.int32
                )
                grown[: self._table.shape[0]] = self._table
                self._table = grown
            if self._bytes_limit is not None and self.nbytes > self._bytes_limit:
                raise too_many_walk_bytes(self.step_bytes)  # the state is kept, consistent
        return sid

    def key(self, state: int) -> frozenset:
        """The position set of ``state`` (stable across cache clears, unlike the id)."""
        return self._sets[state]

    def clear(self) -> None:
        """Forget every state; ids change (see :attr:`epoch`), the start is made again."""
        self.epoch += 1
        self.clears += 1
        self._reset()

    # -- transitions --------------------------------------------------------------------------

    @contextmanager
    def time_limit(self, activity: str) -> Iterator[None]:
        """Bound the states made inside the block by ``step_timeout`` CPU seconds and
        ``step_bytes`` bytes (see the module docstring); an enclosing block's bound holds for
        a nested one."""
        if self._deadline is not None:
            yield
            return
        self._deadline = Deadline(self.step_timeout, activity)
        if self.step_bytes is not None:
            self._bytes_limit = self.nbytes + self.step_bytes
        try:
            yield
        finally:
            self._deadline, self._bytes_limit = None, None

    def _fill(self, state: int) -> None:
        if self._deadline is not None:
            self._deadline.check("the transitions of a DFA state")
        self._table[state] = self._sc.row(self._sets[state], self.intern)

    def row(self, state: int) -> np.ndarray:
        """``int32[K]`` the state after each byte class."""
        if self._table[state, 0] == _UNKNOWN:
            self._fill(state)
        return self._table[state]

    def transition_table(self) -> np.ndarray:
        """The transition table ``int32[capacity, K]`` as it is now: -1 where not computed.

        For walks in native code, which call :meth:`fill_row` for an entry of -1."""
        return self._table

    def fill_row(self, state: int) -> np.ndarray:
        """Compute ``state``'s row; return the table, which may have been reallocated."""
        if self._table[state, 0] == _UNKNOWN:
            self._fill(state)
        return self._table

    def step(self, states: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """``int32[n]``: the state after byte class ``classes[i]`` from ``states[i]``.

        Rows not built yet are built first. The cache is never cleared here, so the ids of a
        walk stay valid; callers clear between walks (:meth:`needs_clear`, :meth:`clear`).
        """
        out = self._table[states, classes]
        missing = out == _UNKNOWN
        if missing.any():
            for q in np.unique(states[missing]).tolist():
                self._fill(q)
            out = self._table[states, classes]
        return out

    def needs_clear(self) -> bool:
        """Whether the cache is over its budget (the caller clears between walks)."""
        return self.nbytes > self.cache_bytes

    def next_class(self, state: int, byte_class: int) -> int:
        return int(self.row(state)[byte_class])

    def next(self, state: int, byte: int) -> int:
        return int(self.row(state)[self._cls[byte]])

    # -- distances ------------------------------------------------------------------------

    def byte_distance(self, state: int, usable: np.ndarray | None = None) -> int:
        """Fewest bytes from ``state`` to a match (:data:`UNREACHABLE` if none).

        ``usable`` (``bool[256]``) restricts the bytes that may be used; the cache of results
        is kept for one ``usable`` at a time (the token index always passes the same one).
        """
        key = None if usable is None else np.asarray(usable, dtype=bool).tobytes()
        if self._distances is None or self._distances_key != key:
            self._distances = Distances(self._sc, usable)
            self._distances_key = key
            self._distance.clear()
        found = self._distance.get(state)
        if found is None:
            if self._deadline is not None:
                self._deadline.check("byte distances")
            found = self._distance[state] = self._distances.of_set(self._sets[state])
        return found

    # -- whole inputs -------------------------------------------------------------------------

    def run(self, data: bytes, state: int | None = None) -> int:
        s = self.start if state is None else state
        cls = self._cls
        for b in data:
            s = self.next_class(s, cls[b])
            if s == DEAD:
                return DEAD
        return s

    def __repr__(self) -> str:
        return (
            f"LazyDFA(patterns={self.patterns!r}, cached_states={self.num_states}, "
            f"num_byte_classes={self.num_byte_classes})"
        )


class Distances:
    """Fewest usable bytes from every NFA position to a match.

    NFA states first, all at once: Dijkstra backwards from the match states, where an epsilon
    costs 0 and a character transition the fewest usable bytes that spell one of its
    characters (a search through the state's UTF-8 automaton).
    A point inside a character then costs the bytes left to finish the character plus the
    distance of the NFA state it leads to, found through its UTF-8 automaton (at most three
    more bytes) and memoized.
    """

    def __init__(self, sc: SubsetConstruction, usable: np.ndarray | None):
        self.sc = sc
        ok = np.ones(256, dtype=bool) if usable is None else np.asarray(usable, dtype=bool)
        self.ok = ok
        self.key, self.below = usable_key(ok)
        self.state = self._nfa_distances()
        self.mid: dict[int, int] = {}

    def _label_costs(self, auto) -> list[int]:
        return costs_of_labels(auto, self.key, self.below)

    def _nfa_distances(self) -> list[int]:
        # Dial's algorithm: a bucket per distance. Epsilons cost 0 and are followed at once
        # within the bucket; a character costs 1 to 4 bytes and lands in a later bucket.
        sc = self.sc
        nfa = sc.nfa
        n = nfa.num_states
        eps_into: list[list[int]] = [[] for _ in range(n)]
        chars_into: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        for q, targets in enumerate(nfa.eps):
            for t in targets:
                eps_into[t].append(q)
        for q, auto in enumerate(sc.autos):
            if auto is not None:
                for t, w in zip(sc.targets[q], self._label_costs(auto), strict=True):
                    if w != UNREACHABLE:
                        chars_into[t].append((q, w))
        unreachable = int(UNREACHABLE)
        dist = [unreachable] * n
        matches = [q for q, m in enumerate(nfa.match) if m >= 0]
        for q in matches:
            dist[q] = 0
        buckets: list[list[int]] = [matches]
        d = 0
        while d < len(buckets):
            stack = buckets[d]
            while stack:
                t = stack.pop()
                if dist[t] != d:
                    continue  # settled earlier at a smaller distance
                for q in eps_into[t]:
                    if dist[q] > d:
                        dist[q] = d
                        stack.append(q)
                for q, w in chars_into[t]:
                    nd = d + w
                    if nd < dist[q]:
                        dist[q] = nd
                        while len(buckets) <= nd:
                            buckets.append([])
                        buckets[nd].append(q)
            d += 1
        return dist

    def position(self, p: int) -> int:
        sc = self.sc
        if p < sc.n:
            return self.state[p]
        found = self.mid.get(p)
        if found is None:
            auto, u, tgts = sc.position(p)
            best = int(UNREACHABLE)
            below = self.below
            for lo, hi, t in auto.trans[u]:
                if below[hi + 1] == below[lo]:
                    continue
                if t < 0:
                    rest = self.state[tgts[-1 - t]]
                else:
                    (inside,) = sc.mid(auto, t, tgts)
                    rest = self.position(inside)
                if rest != UNREACHABLE:
                    best = min(best, 1 + rest)
            found = self.mid[p] = best
        return found

    def of_set(self, key: frozenset) -> int:
        return min((self.position(p) for p in key), default=int(UNREACHABLE))


def usable_below(ok: np.ndarray) -> list[int]:
    """``below[b]``: how many usable bytes lie below byte ``b`` (``ok``: ``bool[256]``), so a
    byte range ``[lo, hi]`` holds one iff ``below[hi + 1] > below[lo]``."""
    return [0, *np.cumsum(ok).tolist()]


# usable byte sets seen (one a vocabulary): their key (ok.tobytes()) -> usable_below
_BELOW: dict[bytes, list[int]] = {}
_BELOW_KEPT = 16
# label costs memoized on a UTF-8 automaton, for this many usable byte sets at most
_COSTS_KEPT = 4


def usable_key(ok: np.ndarray) -> tuple[bytes, list[int]]:
    """``(key, below)`` of the usable bytes ``ok`` (``bool[256]``): a key for memos and
    :func:`usable_below`, made once per set (a vocabulary has one)."""
    key = np.asarray(ok, dtype=bool).tobytes()
    below = _BELOW.get(key)
    if below is None:
        if len(_BELOW) >= _BELOW_KEPT:
            _BELOW.clear()
        below = _BELOW[key] = usable_below(np.frombuffer(key, dtype=bool))
    return key, below


def costs_of_labels(auto, key: bytes, below: list[int]) -> list[int]:
    """:func:`label_costs` of ``auto`` for the usable bytes of ``key`` (from
    :func:`usable_key`), memoized on the automaton: UTF-8 automata are shared by the patterns
    that use the same sets (see :func:`regexlm.automata.utf8.utf8_partition_automaton`), so a
    class such as ``[0-9]`` is costed once per vocabulary, not once per pattern. The list is
    shared: do not change it."""
    memo = auto.costs
    if memo is None:
        memo = auto.costs = {}
    found = memo.get(key)
    if found is None:
        if len(memo) >= _COSTS_KEPT:
            memo.clear()
        found = memo[key] = label_costs(auto, below)
    return found


def label_costs(auto, below: list[int]) -> list[int]:
    """Fewest usable bytes (``below`` from :func:`usable_below`) that read a whole character
    of each label of a UTF-8 automaton (:data:`UNREACHABLE` where none can)."""
    costs = [int(UNREACHABLE)] * len(auto.charsets)
    frontier, depth, seen = [0], 0, {0}
    while frontier:
        depth += 1
        nxt = []
        for u in frontier:
            for lo, hi, t in auto.trans[u]:
                if below[hi + 1] == below[lo]:
                    continue
                if t < 0:
                    costs[-1 - t] = min(costs[-1 - t], depth)
                elif t not in seen:
                    seen.add(t)
                    nxt.append(t)
        frontier = nxt
    return costs
